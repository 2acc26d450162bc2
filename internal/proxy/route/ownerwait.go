package route

import (
	"time"
)

// Outcomes of holding a request for its owner (owner_waits_total).
const (
	waitServed   = "served"
	waitTimeout  = "timeout"
	waitOverflow = "overflow"
	waitGone     = "gone"
)

// ownerWaitPoll is how often a held request whose front end has no done
// channel (HTTP/1.1) looks whether its client has gone.
const ownerWaitPoll = 200 * time.Millisecond

// awaitOwner holds a request whose owner on snap is not ready, for up to
// OwnerWait, and returns the snapshot on which it became ready, with the
// outcome.
func (r *Router) awaitOwner(snap *Snapshot, key []byte, done <-chan struct{}, gone func() bool) (*Snapshot, string) {
	if r.waiting.Add(1) > int64(r.cfg.OwnerWaitMax) {
		r.waiting.Add(-1)
		r.metrics.ownerWaits.WithLabelValues(waitOverflow).Inc()
		return snap, waitOverflow
	}
	defer r.waiting.Add(-1)
	start := time.Now()
	timer := time.NewTimer(r.cfg.OwnerWait)
	defer timer.Stop()
	var tick <-chan time.Time
	if gone != nil || r.cfg.ShardTLS != nil {
		// Also how often an owner whose address showed another shard is
		// looked at again (Backend.usable re-checks after recheckIdentity).
		t := time.NewTicker(ownerWaitPoll)
		defer t.Stop()
		tick = t.C
	}
	outcome := r.holdUntil(&snap, key, timer.C, tick, done, gone)
	r.metrics.ownerWaitSeconds.Observe(time.Since(start).Seconds())
	r.metrics.ownerWaits.WithLabelValues(outcome).Inc()
	return snap, outcome
}

// holdUntil waits for the next snapshots until the key's owner is ready,
// or the timer fires, or the client goes.
func (r *Router) holdUntil(snap **Snapshot, key []byte, timeout <-chan time.Time, tick <-chan time.Time,
	done <-chan struct{}, gone func() bool) string {
	for {
		select {
		case <-(*snap).next:
			*snap = r.snap.Load()
			if ownerServes(*snap, key) {
				return waitServed
			}
		case <-timeout:
			return waitTimeout
		case <-tick:
			if gone != nil && gone() {
				return waitGone
			}
			if r.cfg.ShardTLS != nil && ownerServes(*snap, key) {
				return waitServed
			}
		case <-done:
			return waitGone
		}
	}
}

// ownerServes tells whether key's owner on snap can take a request: it is
// ready and, speaking TLS, proved its identity (checked here, blocking).
func ownerServes(snap *Snapshot, key []byte) bool {
	s, i, ok := snap.Table.Owner(key)
	return ok && s.Ready && snap.Backends[i].usable()
}

// Waiting is how many requests are held for their owner now.
func (r *Router) Waiting() int64 { return r.waiting.Load() }
