package route

import (
	"fmt"
	"sync"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/table"
)

// maxChanges is how many applied topologies the proxy remembers.
const maxChanges = 50

// TopologyChange is one applied topology, as /topology reports it.
type TopologyChange struct {
	Time        time.Time `json:"time"`
	Ring        string    `json:"ring"`
	Replicas    int       `json:"replicas"`
	Ready       int       `json:"ready"`
	Fingerprint string    `json:"fingerprint"`
	RingRebuilt bool      `json:"ring_rebuilt"`
	// Changes says what differs from the previous topology, shard by shard.
	Changes []string `json:"changes"`
}

// changeLog keeps the last maxChanges applied topologies. Safe for
// concurrent use.
type changeLog struct {
	mu  sync.Mutex
	log []TopologyChange // oldest first
}

func (l *changeLog) add(c TopologyChange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.log) == maxChanges {
		copy(l.log, l.log[1:])
		l.log = l.log[:maxChanges-1]
	}
	l.log = append(l.log, c)
}

// TopologyChanges returns the applied topologies, newest first.
func (r *Router) TopologyChanges() []TopologyChange {
	r.changes.mu.Lock()
	defer r.changes.mu.Unlock()
	out := make([]TopologyChange, len(r.changes.log))
	for i, c := range r.changes.log {
		out[len(out)-1-i] = c
	}
	return out
}

// describeChange records t, applied after prev (nil for the first).
func describeChange(prev, t *table.Table) TopologyChange {
	c := TopologyChange{
		Time: time.Now().UTC(), Ring: string(t.Config.Algorithm), Replicas: t.Replicas(), Ready: t.Ready(),
		Fingerprint: t.Fingerprint, RingRebuilt: !table.SameRing(prev, t), Changes: []string{},
	}
	if prev == nil {
		c.Changes = append(c.Changes, fmt.Sprintf("first topology: %d shards", len(t.Shards)))
		return c
	}
	if prev.Replicas() != t.Replicas() {
		c.Changes = append(c.Changes, fmt.Sprintf("N %d → %d", prev.Replicas(), t.Replicas()))
	}
	before := make(map[string]int, len(prev.Shards))
	for i, s := range prev.Shards {
		before[s.Name] = i
	}
	for _, s := range t.Shards {
		i, ok := before[s.Name]
		delete(before, s.Name)
		if !ok {
			c.Changes = append(c.Changes, fmt.Sprintf("%s joined (%s)", s.Name, readiness(s.Ready)))
			continue
		}
		switch o := prev.Shards[i]; {
		case o.Ready != s.Ready:
			c.Changes = append(c.Changes, fmt.Sprintf("%s: %s → %s", s.Name, readiness(o.Ready), readiness(s.Ready)))
		case o.Addr != s.Addr:
			c.Changes = append(c.Changes, fmt.Sprintf("%s moved to %s", s.Name, s.Addr))
		}
	}
	for name := range before {
		c.Changes = append(c.Changes, name+" left")
	}
	return c
}

func readiness(ready bool) string {
	if ready {
		return "ready"
	}
	return "not ready"
}
