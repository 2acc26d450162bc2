package certs

import (
	"context"
	"time"
)

// DefaultInterval is how often a Watcher looks at the files: well within
// the 10 s in which a rotated certificate must be in use.
const DefaultInterval = 2 * time.Second

// Reloader is material that re-reads its files: *KeyPair and *Pool.
type Reloader interface {
	Reload() error
}

var (
	_ Reloader = (*KeyPair)(nil)
	_ Reloader = (*Pool)(nil)
)

// Watch re-reads every item every interval (DefaultInterval when zero)
// until ctx ends. Reading the contents, rather than watching for events,
// sees a Secret volume's symlink swap and a file rewritten in place alike,
// and costs a few small reads per interval.
func Watch(ctx context.Context, interval time.Duration, items ...Reloader) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, it := range items {
				_ = it.Reload() // logged and counted by the item
			}
		}
	}
}
