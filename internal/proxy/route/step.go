package route

import (
	"errors"
	"net/http"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// Proto is the protocol a request came in on (the protocol label of
// requests_total).
type Proto uint8

// Client protocols.
const (
	HTTP1 Proto = iota
	HTTP2
)

var protoNames = [...]string{HTTP1: "http1", HTTP2: "h2"}

// Decision is the record of one request's routing (an HTTP/1.1 exchange,
// an HTTP/2 stream, a gRPC call), whatever front end took it: the key rule
// that matched, the owner, the hold for it, the previous owner, and what
// the client was answered. Route and Wait fill it, Commit and Done count
// it; it is the one record a request's access log line and trace span are
// to be made from (issue "Access log and tracing"), in Done.
type Decision struct {
	// Start is when the request arrived.
	Start time.Time
	// Proto is the protocol the client spoke.
	Proto Proto
	// Rule is the key rule that yielded the key, as written.
	Rule string
	// Key is the shard key. It aliases the front end's memory (its
	// keys.Scratch or request), which must outlive its use.
	Key []byte
	// Snapshot is the one snapshot the request routes with.
	Snapshot *Snapshot
	// Index is the owner's index in Snapshot (-1 before an owner was
	// chosen); Shard and Backend are the owner's.
	Index   int
	Shard   *watch.Shard
	Backend *Backend
	// Previous and PreviousAddr name the key's owner before a reshard,
	// when the key moved (handoff); "" otherwise.
	Previous, PreviousAddr string
	// OwnerWait is how long the request was held for its owner.
	OwnerWait time.Duration
	// Status is what the client was answered: the shard's status, the
	// proxy's own, or answer.StatusClientGone; 0 while unknown.
	Status int
	// Exchange is what the front end alone knows (record.go).
	Exchange

	committed bool // the request went to its owner (Commit)
	traced    bool // the trace context was read (startTrace)
}

// Begin starts a decision for a request that arrived at start.
func (d *Decision) Begin(proto Proto, start time.Time) {
	*d = Decision{Start: start, Proto: proto, Index: -1}
}

// ErrMustWait is Route's answer when the owner is not ready and
// --owner-wait allows holding the request: the front end calls Wait, on
// whatever goroutine may block.
var ErrMustWait = errors.New("the owner is not ready: hold the request")

// Route is the routing step: on the snapshot in force, the request's key,
// then its owner. When a body rule needs the body, loadBody buffers it
// (where the front end reads bodies: nil means it cannot, and Route
// answers keys.ErrNeedBody) and the rules run again. With nil, d names a
// ready owner, with the previous owner when the key moved; the front end
// calls Commit when it sends the request there. A not-ready owner gives
// ErrMustWait when requests may be held, else answer.ErrShardNotReady
// naming the owner (d.Status 503). Any other error is the proxy's answer.
func (r *Router) Route(d *Decision, req keys.Request, s *keys.Scratch, loadBody func() error) error {
	r.startTrace(d, req, s)
	snap := r.snap.Load()
	if snap == nil || len(snap.Backends) == 0 {
		return answer.ErrNoShards
	}
	if err := r.key(d, req, s, loadBody); err != nil {
		if !errors.Is(err, keys.ErrNeedBody) {
			r.metrics.keyErrorFor(err)
		}
		return err
	}
	return r.owner(d, snap)
}

// key sets d's key and the rule that yielded it, buffering the body with
// loadBody when a body rule asks for it.
func (r *Router) key(d *Decision, req keys.Request, s *keys.Scratch, loadBody func() error) error {
	key, rule, err := r.keys.Key(req, s)
	if errors.Is(err, keys.ErrNeedBody) && loadBody != nil {
		if err = loadBody(); err == nil {
			key, rule, err = r.keys.Key(req, s)
		}
	}
	if err != nil {
		return err
	}
	d.Rule, d.Key = rule, key
	return nil
}

// owner chooses the key's owner on snap.
func (r *Router) owner(d *Decision, snap *Snapshot) error {
	sh, i, _ := snap.Table.Owner(d.Key)
	d.Snapshot, d.Index, d.Shard, d.Backend = snap, i, sh, snap.Backends[i]
	if !sh.Ready {
		if r.cfg.OwnerWait > 0 {
			return ErrMustWait
		}
		d.Status = http.StatusServiceUnavailable
		return answer.OfShard(answer.ErrShardNotReady, sh.Name)
	}
	if name, addr, moved := snap.Table.Previous(d.Key, sh); moved {
		d.Previous, d.PreviousAddr = name, addr
	}
	return nil
}

// Commit records that the request goes to its owner now (Route or Wait
// answered nil, and the front end can reach the shard): the hot-key
// sample and the handoff count are taken here, once, and Done times the
// request as one a shard served.
func (r *Router) Commit(d *Decision) {
	d.committed = true
	r.hot.Sample(d.Index, d.Key)
	if d.Previous != "" {
		d.Backend.Metrics.handoff.Inc()
	}
}

// Wait holds a request Route answered ErrMustWait for, up to --owner-wait,
// until a topology change makes the key's owner ready (a pod restarting).
// It is woken by the change itself, not by polling the table; the key is
// looked up again on every change, so a scale that moves the key routes it
// to its new owner. It ends early when done closes or gone says so (the
// client left: answer.ErrClientGone). With nil, d names the ready owner as
// after Route; otherwise answer.ErrShardNotReady (d.Status 503) or
// answer.ErrClientGone.
func (r *Router) Wait(d *Decision, done <-chan struct{}, gone func() bool) error {
	start := time.Now()
	snap, outcome := r.awaitOwner(d.Snapshot, d.Key, done, gone)
	d.OwnerWait = time.Since(start)
	if r.cfg.Tracer != nil && d.Trace.Span != nil {
		r.cfg.Tracer.Waited(d, start, outcome == waitServed)
	}
	switch outcome {
	case waitServed:
		return r.owner(d, snap)
	case waitGone:
		return answer.ErrClientGone
	}
	d.Status = http.StatusServiceUnavailable
	return answer.OfShard(answer.ErrShardNotReady, d.Shard.Name)
}

// Done ends a request's record: requests_total for the owner, when one was
// chosen and the request was answered (d.Status), and the duration when it
// went to the owner (Commit): the proxy's own 503 for a not-ready owner is
// counted, but its hold does not skew the shard's latency. The span ends
// and the access log line is written here, for every request.
func (r *Router) Done(d *Decision) {
	r.record(d)
	if d.Backend == nil || d.Status == 0 {
		return
	}
	d.Backend.Metrics.count(d.Status, d.Proto)
	if d.committed {
		d.Backend.Metrics.duration.Observe(time.Since(d.Start).Seconds())
	}
}
