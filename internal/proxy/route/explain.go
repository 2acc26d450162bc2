package route

import (
	"errors"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
)

// Next returns a channel closed when a newer snapshot replaces s: a
// watcher of the topology waits on it, as held requests do.
func (s *Snapshot) Next() <-chan struct{} { return s.next }

// Explain takes req's routing step as Route does, on the snapshot in
// force, without sending, holding or counting the request (the admin
// plane's /explain): with nil, d names the key, the rule that yielded it,
// the owner and, when the key moved, the previous owner. An owner that is
// not ready is named too (d.Shard.Ready is false): the data port holds
// such a request up to --owner-wait, then answers answer.ErrShardNotReady.
// Any error is the answer the data port gives.
func (r *Router) Explain(d *Decision, req keys.Request, s *keys.Scratch, loadBody func() error) error {
	snap := r.snap.Load()
	if snap == nil || len(snap.Backends) == 0 {
		return answer.ErrNoShards
	}
	if err := r.key(d, req, s, loadBody); err != nil {
		return err
	}
	err := r.owner(d, snap)
	if errors.Is(err, ErrMustWait) || errors.Is(err, answer.ErrShardNotReady) {
		d.Status = 0
		d.Previous, d.PreviousAddr, _ = snap.Table.Previous(d.Key, d.Shard)
		return nil
	}
	return err
}
