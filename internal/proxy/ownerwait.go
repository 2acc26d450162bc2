package proxy

import (
	"time"

	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// Outcomes of holding a request for its owner (owner_waits_total).
const (
	waitServed   = "served"
	waitTimeout  = "timeout"
	waitOverflow = "overflow"
	waitGone     = "gone"
)

// ownerWaitPoll is how often a held HTTP/1.1 request looks whether its
// client has gone (an HTTP/2 stream is told by its context).
const ownerWaitPoll = 200 * time.Millisecond

// awaitOwner holds a request whose owner is not ready, for up to
// OwnerWait, until a topology change makes the key's owner ready (a pod
// restarting). It is woken by the change itself, not by polling the
// table; the key is looked up again on every change, so a scale that
// moves the key routes it to its new owner. It returns the snapshot and
// ring index to forward with, or ok=false with the outcome.
func (p *Proxy) awaitOwner(snap *snapshot, key []byte, done <-chan struct{}, gone func() bool) (*snapshot, int, string) {
	if p.cfg.OwnerWait <= 0 {
		return nil, -1, waitTimeout
	}
	if p.waiting.Add(1) > int64(p.cfg.OwnerWaitMax) {
		p.waiting.Add(-1)
		p.metrics.ownerWaits.WithLabelValues(waitOverflow).Inc()
		return nil, -1, waitOverflow
	}
	defer p.waiting.Add(-1)
	start := time.Now()
	timer := time.NewTimer(p.cfg.OwnerWait)
	defer timer.Stop()
	var tick <-chan time.Time
	if gone != nil {
		t := time.NewTicker(ownerWaitPoll)
		defer t.Stop()
		tick = t.C
	}
	outcome, i := p.holdUntil(&snap, key, timer.C, tick, done, gone)
	p.metrics.ownerWaitSeconds.Observe(time.Since(start).Seconds())
	p.metrics.ownerWaits.WithLabelValues(outcome).Inc()
	return snap, i, outcome
}

// holdUntil waits for the next snapshots until the key's owner is ready,
// or the timer fires, or the client goes.
func (p *Proxy) holdUntil(snap **snapshot, key []byte, timeout <-chan time.Time, tick <-chan time.Time,
	done <-chan struct{}, gone func() bool) (string, int) {
	for {
		select {
		case <-(*snap).next:
			*snap = p.snap.Load()
			if s, i, ok := (*snap).table.Owner(key); ok && s.Ready {
				return waitServed, i
			}
		case <-timeout:
			return waitTimeout, -1
		case <-tick:
			if gone() {
				return waitGone, -1
			}
		case <-done:
			return waitGone, -1
		}
	}
}

// ownerOf is the owner of key on snap: shard and ring index.
func ownerOf(snap *snapshot, key []byte) (*watch.Shard, int) {
	s, i, _ := snap.table.Owner(key)
	return s, i
}
