package proxy

import (
	"net/http"
	"sync"

	"github.com/shard-proxy/shard-proxy/internal/table"
)

// ErrOwnerMoved ends a long-lived stream whose key now belongs to another
// shard: the client reconnects, and lands on the new owner.
var ErrOwnerMoved = &Error{Status: http.StatusServiceUnavailable, msg: "shard owner changed"}

// liveSet tracks what outlives a request: WebSocket tunnels and HTTP/2
// streams (gRPC calls). When the ring changes, those whose key moved to
// another shard are ended; the others are left alone. Safe for concurrent
// use.
type liveSet struct {
	mu sync.Mutex
	m  map[*liveStream]struct{}
}

// liveStream is one tracked stream: its key, the shard it is bound to, and
// how to end it.
type liveStream struct {
	key   string
	shard string
	end   func()
	once  sync.Once
}

func (l *liveSet) add(key, shard string, end func()) *liveStream {
	s := &liveStream{key: key, shard: shard, end: end}
	l.mu.Lock()
	if l.m == nil {
		l.m = map[*liveStream]struct{}{}
	}
	l.m[s] = struct{}{}
	l.mu.Unlock()
	return s
}

func (l *liveSet) remove(s *liveStream) {
	l.mu.Lock()
	delete(l.m, s)
	l.mu.Unlock()
}

// rehome ends the streams whose key t gives to another shard than the one
// they are bound to.
func (l *liveSet) rehome(t *table.Table) {
	l.mu.Lock()
	var moved []*liveStream
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

// endIfMoved ends s at once if its key already belongs to another shard:
// a ring change between routing the stream and tracking it would
// otherwise be missed.
func (p *Proxy) endIfMoved(s *liveStream) {
	snap := p.snap.Load()
	if snap == nil {
		return
	}
	if sh, _, ok := snap.table.Owner([]byte(s.key)); !ok || sh.Name != s.shard {
		p.live.remove(s)
		s.once.Do(s.end)
	}
}
