package route

import (
	"sync"

	"github.com/shard-proxy/shard-proxy/internal/table"
)

// liveSet tracks what outlives a request: WebSocket tunnels and HTTP/2
// streams (gRPC calls). When the ring changes, those whose key moved to
// another shard are ended; the others are left alone. Safe for concurrent
// use.
type liveSet struct {
	mu sync.Mutex
	m  map[*Live]struct{}
}

// Live is one tracked stream: its key, the shard it is bound to, and how
// to end it.
type Live struct {
	key   string
	shard string
	end   func()
	once  sync.Once
}

// Track registers a long-lived stream of key bound to shard: end runs,
// once, when a ring change gives the key to another shard (on the goroutine
// that applied the change). If that already happened since the stream was
// routed, end runs on the caller's goroutine before Track returns, so the
// caller must hold no lock that end takes. Untrack it when the stream ends.
func (r *Router) Track(key, shard string, end func()) *Live {
	l := &Live{key: key, shard: shard, end: end}
	r.live.mu.Lock()
	if r.live.m == nil {
		r.live.m = map[*Live]struct{}{}
	}
	r.live.m[l] = struct{}{}
	r.live.mu.Unlock()
	// A ring change between routing the stream and tracking it would
	// otherwise be missed.
	if snap := r.snap.Load(); snap != nil {
		if sh, _, ok := snap.Table.Owner([]byte(key)); !ok || sh.Name != shard {
			r.Untrack(l)
			l.once.Do(l.end)
		}
	}
	return l
}

// Untrack forgets a stream that ended; nil is ignored.
func (r *Router) Untrack(l *Live) {
	if l == nil {
		return
	}
	r.live.mu.Lock()
	delete(r.live.m, l)
	r.live.mu.Unlock()
}

// rehome ends the streams whose key t gives to another shard than the one
// they are bound to.
func (l *liveSet) rehome(t *table.Table) {
	l.mu.Lock()
	var moved []*Live
	for s := range l.m {
		if sh, _, ok := t.Owner([]byte(s.key)); !ok || sh.Name != s.shard {
			moved = append(moved, s)
			delete(l.m, s)
		}
	}
	l.mu.Unlock()
	for _, s := range moved {
		s.once.Do(s.end)
	}
}

// LiveCount is how many streams are tracked now.
func (r *Router) LiveCount() int {
	r.live.mu.Lock()
	defer r.live.mu.Unlock()
	return len(r.live.m)
}
