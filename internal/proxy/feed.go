package proxy

import (
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/table"
)

// Current returns the routing table in force, its generation (1 for the
// first topology applied in this process, one more for each since) and a
// channel closed when a newer one is applied; t is nil, and next too,
// before the first. Watchers of the topology (/shards?watch=1) wait on
// next, so Apply never waits for them.
func (p *Proxy) Current() (t *table.Table, generation uint64, next <-chan struct{}) {
	snap := p.router.Snapshot()
	if snap == nil {
		return nil, 0, nil
	}
	return snap.Table, snap.Generation, snap.Next()
}

// Explain routes req as the data port would, without sending it (see
// route.Router.Explain); loadBody buffers the body for a body rule.
func (p *Proxy) Explain(d *route.Decision, req keys.Request, s *keys.Scratch, loadBody func() error) error {
	return p.router.Explain(d, req, s, loadBody)
}

// MaxBodyBytes is what a body rule buffers of a request body at most.
func (p *Proxy) MaxBodyBytes() int { return p.maxBody }

// TriedBefore returns the key rules, as written, tried before rule: the
// "tried" of an explained request.
func (p *Proxy) TriedBefore(rule string) []string { return p.router.Keys().Before(rule) }
