package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/shard-proxy/shard-proxy/internal/admin/h1client"
	"github.com/shard-proxy/shard-proxy/internal/certs"
	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/proxy/workers"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// Defaults of BroadcastConfig.
const (
	// DefaultBroadcastConcurrency is high enough that a broadcast to a
	// StatefulSet of up to 256 shards goes out in one wave: a broadcast
	// then takes about one shard round trip, not one per wave.
	DefaultBroadcastConcurrency = 256
	// BroadcastConnsPerShard bounds the connections broadcasts hold to one
	// shard, in use and idle together: that many broadcasts run at once at
	// full speed, further ones wait for a connection to each shard, so a
	// shard never sees more than this many broadcast requests at once and
	// the proxy never holds more than this many connections per shard for
	// broadcast. The idle pool per shard is as large, so that concurrent
	// broadcasts up to this bound reuse connections instead of dialing
	// again each time (idle ones close after BroadcastIdleTimeout).
	BroadcastConnsPerShard = 32
	// BroadcastIdleTimeout is how long an idle broadcast connection to a
	// shard stays open, so that the next broadcast finds it warm.
	BroadcastIdleTimeout    = 90 * time.Second
	DefaultBroadcastTimeout = 10 * time.Second
	DefaultMaxBodyBytes     = 4 << 20
	// ResultBodyLimit caps each shard's body in the report.
	ResultBodyLimit = 64 << 10
)

// BroadcastConfig configures /broadcast/. The zero value uses the defaults.
type BroadcastConfig struct {
	// Concurrency caps the shards contacted at once.
	Concurrency int
	// Timeout bounds each shard when the request has no ?timeout=.
	Timeout time.Duration
	// MaxBodyBytes caps the request body, which is read once and replayed
	// to every shard.
	MaxBodyBytes int
	// History is how many reports GET /broadcasts keeps, newest first;
	// 0 means DefaultHistory.
	History int
	// HistoryBytes bounds the memory the kept reports and requests take,
	// as estimated by their sizes; the oldest go first, and the newest is
	// always kept. 0 means DefaultHistoryBytes.
	HistoryBytes int
	// Tracer, when set, traces each broadcast: one span with a child per
	// shard (broadcast_trace.go).
	Tracer trace.TracerProvider
}

// Policy says how many shards must answer 2xx for a broadcast to succeed.
type Policy string

// The broadcast policies.
const (
	PolicyAll    Policy = "all"
	PolicyQuorum Policy = "quorum"
	PolicyAny    Policy = "any"
)

func (p Policy) met(succeeded, n int) bool {
	switch p {
	case PolicyQuorum:
		return succeeded > n/2
	case PolicyAny:
		return succeeded >= 1
	default:
		return succeeded == n
	}
}

// ShardResult is one shard's line in a broadcast report: a status and body,
// or an error when no HTTP answer came.
type ShardResult struct {
	Ordinal    int     `json:"ordinal"`
	Shard      string  `json:"shard"`
	Address    string  `json:"address,omitempty"`
	Status     int     `json:"status,omitempty"`
	DurationMS float64 `json:"duration_ms"`
	Body       string  `json:"body,omitempty"`
	Truncated  bool    `json:"truncated,omitempty"`
	Error      string  `json:"error,omitempty"`

	outcome string
}

// failed reports whether the shard did not answer 2xx: what a retry sends
// again.
func (r ShardResult) failed() bool {
	return r.Error != "" || r.Status < 200 || r.Status > 299
}

// BroadcastReport is the body of a /broadcast/ answer, of
// /broadcasts/<id> and of a retry.
type BroadcastReport struct {
	// ID names the broadcast in /broadcasts; see idSource.
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// RetryOf is the ID of the report whose failed shards this one retried.
	RetryOf string `json:"retry_of,omitempty"`
	// IdempotencyKey is what the shards got as Idempotency-Key: the
	// caller's own, else the ID of the first broadcast of the request.
	IdempotencyKey string  `json:"idempotency_key"`
	Policy         Policy  `json:"policy"`
	Method         string  `json:"method"`
	Path           string  `json:"path"`
	Succeeded      int     `json:"succeeded"`
	Failed         int     `json:"failed"`
	DurationMS     float64 `json:"duration_ms"`
	// Retryable is false when the request was too large for the history
	// to keep (see HistoryRequestLimit), so it cannot be sent again.
	Retryable bool          `json:"retryable"`
	Shards    []ShardResult `json:"shards"`
}

type broadcaster struct {
	cfg BroadcastConfig
	// shards sends the requests: a pool of connections per shard (at most
	// BroadcastConnsPerShard), the head written once per broadcast.
	shards  *h1client.Client
	calls   workers.Pool[*shardCall]
	log     *slog.Logger
	total   *prometheus.CounterVec
	results *prometheus.CounterVec
	ids     idSource
	history *history
	// shardTLS reaches TLS shards (tls.go).
	shardTLS *certs.ShardClient
}

func newBroadcaster(cfg BroadcastConfig, reg prometheus.Registerer, log *slog.Logger) *broadcaster {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultBroadcastConcurrency
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultBroadcastTimeout
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.History <= 0 {
		cfg.History = DefaultHistory
	}
	if cfg.HistoryBytes <= 0 {
		cfg.HistoryBytes = DefaultHistoryBytes
	}
	b := &broadcaster{
		cfg:     cfg,
		log:     log,
		history: newHistory(cfg.History, cfg.HistoryBytes),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shard_proxy_broadcasts_total",
			Help: "Broadcasts by outcome: success when the policy was met, failure otherwise.",
		}, []string{"outcome"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shard_proxy_broadcast_shard_results_total",
			Help: "Per-shard results of broadcasts: success, http_error, not_ready, unreachable, timeout, identity_mismatch or tls_error (a TLS shard failed its handshake), or left (a retried shard no longer in the table).",
		}, []string{"shard", "outcome"}),
	}
	if reg != nil {
		reg.MustRegister(b.total, b.results)
	}
	b.total.WithLabelValues("success")
	b.total.WithLabelValues("failure")
	// Redirects are the shard's answer, reported as they are: the client
	// follows none.
	b.calls = workers.Pool[*shardCall]{Run: (*shardCall).run, Idle: 100 * time.Millisecond}
	b.shards = h1client.New(h1client.Config{Dial: b.dial, MaxConns: BroadcastConnsPerShard, IdleTimeout: BroadcastIdleTimeout})
	return b
}

// close releases idle connections to shards.
func (b *broadcaster) close() { b.shards.Close() }

// broadcast serves ANY /broadcast/<path>.
func (s *Server) broadcast(w http.ResponseWriter, r *http.Request) {
	b := s.bcast
	q := r.URL.Query()
	policy, timeout, err := b.params(q)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
		return
	}
	body, ok := b.readBody(w, r)
	if !ok {
		return
	}
	t := s.cfg.Tables.Table() // one snapshot for the whole broadcast
	if t == nil || t.Replicas() == 0 {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "no shards"})
		return
	}
	id, now := b.ids.next()
	req := &shardRequest{
		method: r.Method,
		uri:    forwardedURI(r.URL, q),
		header: shardHeader(r, s.cfg.Auth != nil),
		body:   body,
	}
	if req.header.Get(idempotencyKey) == "" {
		req.header.Set(idempotencyKey, id)
	}
	b.run(w, r, job{id: id, start: now, policy: policy, timeout: timeout, req: req, targets: t.Shards})
}

// idempotencyKey is the header every broadcast carries, so that a shard
// can recognise a request it already handled when it comes again in a
// retry.
const idempotencyKey = "Idempotency-Key"

// job is one broadcast or retry to run: a request, the shards to send it
// to, and how to judge the answers.
type job struct {
	id      string
	start   time.Time
	retryOf string
	policy  Policy
	timeout time.Duration
	req     *shardRequest
	targets []watch.Shard
	// settled are results known without sending: shards that left the
	// table since the report a retry repeats.
	settled []ShardResult
}

// run sends j's request, answers with the report (200 when the policy was
// met, else 502), logs it and keeps it in the history.
func (b *broadcaster) run(w http.ResponseWriter, r *http.Request, j job) {
	ctx, endSpan := b.traceBroadcast(r, j)
	rep := BroadcastReport{
		ID: j.id, Time: j.start.UTC(), RetryOf: j.retryOf, IdempotencyKey: j.req.header.Get(idempotencyKey),
		Policy: j.policy, Method: j.req.method, Path: j.req.uri,
		Shards: append(b.fanOut(ctx, j.targets, *j.req, j.timeout), j.settled...),
	}
	slices.SortStableFunc(rep.Shards, func(a, b ShardResult) int { return a.Ordinal - b.Ordinal })
	for _, res := range rep.Shards {
		if res.outcome == "success" {
			rep.Succeeded++
		} else {
			rep.Failed++
		}
		b.results.WithLabelValues(res.Shard, res.outcome).Inc()
	}
	rep.DurationMS = millis(time.Since(j.start))
	status, outcome := http.StatusOK, "success"
	if !j.policy.met(rep.Succeeded, len(rep.Shards)) {
		status, outcome = http.StatusBadGateway, "failure"
	}
	b.total.WithLabelValues(outcome).Inc()
	rep.Retryable = b.history.add(rep, j.req, j.timeout)
	b.audit(r, rep, outcome)
	endSpan(&rep, status)
	writeJSON(w, status, rep)
}

// params reads ?policy= and ?timeout=; absent, they are all and the
// configured Timeout.
func (b *broadcaster) params(q url.Values) (Policy, time.Duration, error) {
	policy := Policy(q.Get("policy"))
	switch policy {
	case "":
		policy = PolicyAll
	case PolicyAll, PolicyQuorum, PolicyAny:
	default:
		return "", 0, fmt.Errorf("policy %q: want all, quorum or any", policy)
	}
	timeout := b.cfg.Timeout
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return "", 0, fmt.Errorf("timeout %q: want a positive duration such as 2s or 500ms", v)
		}
		timeout = d
	}
	return policy, timeout, nil
}

// readBody reads the request body, at most MaxBodyBytes of it. When it
// cannot, it answers the request (413 or 400) and returns false.
func (b *broadcaster) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(b.cfg.MaxBodyBytes)))
	if err == nil {
		return body, true
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"error": "request body too large", "limit": b.cfg.MaxBodyBytes})
	} else {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "reading request body: " + err.Error()})
	}
	return nil, false
}

// shardRequest is the request replayed to every shard.
type shardRequest struct {
	method string
	uri    string
	header http.Header
	body   []byte
}

// fanOut sends req to every shard of shards, at most Concurrency at once,
// and returns their results in the same order. Shards that are not ready
// are not contacted but reported failed.
func (b *broadcaster) fanOut(ctx context.Context, shards []watch.Shard, req shardRequest, timeout time.Duration) []ShardResult {
	results := make([]ShardResult, len(shards))
	hr, err := h1client.NewRequest(req.method, req.uri, req.header, req.body) // the head, written once
	g := b.shards.Group(ctx, len(shards))
	defer g.Close()
	calls := make([]shardCall, len(shards))
	sem := make(chan struct{}, b.cfg.Concurrency)
	var wg sync.WaitGroup
	for i, sh := range shards {
		results[i] = ShardResult{Ordinal: sh.Ordinal, Shard: sh.Name, Address: sh.Addr}
		switch {
		case !sh.Ready:
			results[i].Error, results[i].outcome = answer.ErrShardNotReady.Error(), "not_ready"
			continue
		case err != nil:
			results[i].Error, results[i].outcome = "building request: "+err.Error(), "unreachable"
			continue
		}
		sem <- struct{}{} // taken before the call starts: at most Concurrency run
		wg.Add(1)
		calls[i] = shardCall{b: b, ctx: ctx, g: g, i: i, sh: sh, req: hr, timeout: timeout, res: &results[i], sem: sem, wg: &wg}
		b.calls.Go(&calls[i])
	}
	wg.Wait()
	return results
}

// shardCall is one shard's part of a broadcast, run by a worker: workers
// are reused between broadcasts, so that a shard request neither starts a
// goroutine nor grows its stack (a copy each time it doubles).
type shardCall struct {
	b       *broadcaster
	ctx     context.Context
	g       *h1client.Group
	i       int
	sh      watch.Shard
	req     *h1client.Request
	timeout time.Duration
	res     *ShardResult
	sem     chan struct{}
	wg      *sync.WaitGroup
}

func (c *shardCall) run() {
	defer c.wg.Done()
	defer func() { <-c.sem }()
	c.b.send(c.ctx, c.g, c.i, c.sh, c.req, c.timeout, c.res)
}

// send delivers req to one shard, exchange i of g, and fills res.
func (b *broadcaster) send(ctx context.Context, g *h1client.Group, i int, sh watch.Shard, req *h1client.Request, timeout time.Duration, res *ShardResult) {
	start := time.Now()
	defer func() { res.DurationMS = millis(time.Since(start)) }()
	var trace []byte
	if b.cfg.Tracer != nil { // not called otherwise: its frame alone would grow the goroutine's stack
		var end func()
		trace, end = b.traceShard(ctx, req.Method, res)
		defer end()
	}
	t := h1client.Target{Addr: sh.Addr, TLS: sh.TLS, TLSName: sh.TLSName}
	a, err := g.Do(i, t, req, trace, start.Add(timeout), ResultBodyLimit)
	switch {
	case err == nil:
		res.Status, res.Body, res.Truncated = a.Status, a.Body, a.Truncated
		if a.Truncated {
			res.Body = trimUTF8(a.Body)
		}
		res.outcome = "success"
		if a.Status < 200 || a.Status > 299 {
			res.outcome = "http_error"
		}
	case errors.Is(err, h1client.ErrTimeout):
		res.Error, res.outcome = answer.ErrShardTimeout.Error(), "timeout"
	default:
		if msg, outcome, ok := tlsFailure(err); ok {
			res.Error, res.outcome = msg, outcome
			return
		}
		res.Error, res.outcome = answer.ErrShardDown.Error()+": "+rootCause(err), "unreachable"
	}
}

// forwardedURI is /<path>?<query> without the broadcast's own parameters.
func forwardedURI(u *url.URL, q url.Values) string {
	path := strings.TrimPrefix(u.EscapedPath(), "/broadcast")
	if path == "" {
		path = "/"
	}
	if !q.Has("policy") && !q.Has("timeout") {
		if u.RawQuery != "" {
			return path + "?" + u.RawQuery
		}
		return path
	}
	// Keep the caller's parameter order and encoding for everything else.
	var kept []string
	for _, part := range strings.Split(u.RawQuery, "&") {
		name, _, _ := strings.Cut(part, "=")
		if name, err := url.QueryUnescape(name); err == nil && (name == "policy" || name == "timeout") {
			continue
		}
		if part != "" {
			kept = append(kept, part)
		}
	}
	if len(kept) == 0 {
		return path
	}
	return path + "?" + strings.Join(kept, "&")
}

// shardHeader is r's header as the shards get it: the proxy's header
// policy (hop-by-hop fields dropped, X-Forwarded-* added) and, when the
// admin plane checks tokens, without the admin token, which is ours and not
// the shards'.
func shardHeader(r *http.Request, dropAuth bool) http.Header {
	h := r.Header.Clone()
	if dropAuth {
		h.Del("Authorization")
	}
	header.Prepare(h, header.Forwarded{ClientIP: header.ClientIP(r.RemoteAddr), TLS: r.TLS != nil, Host: r.Host})
	return h
}

// audit logs one line per broadcast: who, what, and each shard's outcome.
func (b *broadcaster) audit(r *http.Request, rep BroadcastReport, outcome string) {
	if b.log == nil || !b.log.Enabled(r.Context(), slog.LevelInfo) {
		return // a line per shard is not built for nobody (--log-level warn)
	}
	var per strings.Builder
	for i, res := range rep.Shards {
		if i > 0 {
			per.WriteByte(' ')
		}
		if res.Error != "" {
			fmt.Fprintf(&per, "%s=%s", res.Shard, res.outcome)
		} else {
			fmt.Fprintf(&per, "%s=%d", res.Shard, res.Status)
		}
	}
	b.log.Info("broadcast", "id", rep.ID, "retry_of", rep.RetryOf,
		"remote", r.RemoteAddr, "method", rep.Method, "path", rep.Path, "policy", string(rep.Policy),
		"outcome", outcome, "succeeded", rep.Succeeded, "failed", rep.Failed,
		"duration_ms", rep.DurationMS, "shards", per.String())
}

func millis(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// trimUTF8 drops a rune cut in half at the end of b, so a truncated text
// body does not end in a replacement character.
func trimUTF8(b string) string {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRuneInString(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}

// rootCause shortens a client error to its innermost message.
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
