package admin

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// Bounds of the broadcast history.
const (
	// DefaultHistory is how many broadcast reports /broadcasts keeps.
	DefaultHistory = 100
	// DefaultHistoryBytes bounds the kept reports and requests together,
	// so that 100 broadcasts to many shards with large answers cannot take
	// 100 × N × ResultBodyLimit of memory.
	DefaultHistoryBytes = 16 << 20
	// HistoryBodyLimit caps each shard's body in a kept report (a live
	// answer keeps up to ResultBodyLimit); a cut body is marked truncated.
	HistoryBodyLimit = 4 << 10
	// HistoryRequestLimit caps the request (body and header fields) kept
	// for a retry; a larger one is reported but cannot be retried.
	HistoryRequestLimit = 64 << 10
)

// shardResultOverhead is what one ShardResult costs beyond its strings,
// roughly: the history's size estimate adds it per shard.
const shardResultOverhead = 128

// history keeps the last broadcast reports, with their requests for
// retries. Safe for concurrent use.
type history struct {
	max, maxBytes int

	mu      sync.Mutex
	entries []*entry // oldest first
	bytes   int
}

// entry is one kept report.
type entry struct {
	report BroadcastReport // shard bodies cut at HistoryBodyLimit
	// req is nil when the request was over HistoryRequestLimit; reqSize
	// says how large it was.
	req     *shardRequest
	reqSize int
	timeout time.Duration
	size    int
}

func newHistory(max, maxBytes int) *history {
	return &history{max: max, maxBytes: maxBytes}
}

// add keeps rep, and req if it is small enough to be sent again, evicting
// the oldest reports past the count and byte bounds. It returns whether
// req was kept, that is whether rep can be retried.
func (h *history) add(rep BroadcastReport, req *shardRequest, timeout time.Duration) bool {
	e := &entry{reqSize: requestSize(req), timeout: timeout}
	if e.reqSize <= HistoryRequestLimit {
		e.req = req // never modified once sent: safe to share with the retries
	}
	rep.Retryable = e.req != nil
	e.report, e.size = keptReport(rep)
	if e.req != nil {
		e.size += e.reqSize
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.entries = append(h.entries, e)
	h.bytes += e.size
	for len(h.entries) > h.max || (h.bytes > h.maxBytes && len(h.entries) > 1) {
		h.bytes -= h.entries[0].size
		h.entries = slices.Delete(h.entries, 0, 1)
	}
	return rep.Retryable
}

// get returns the entry of id.
func (h *history) get(id string) (*entry, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := slices.IndexFunc(h.entries, func(e *entry) bool { return e.report.ID == id })
	if i < 0 {
		return nil, false
	}
	return h.entries[i], true
}

// list summarises the kept reports, newest (highest ID) first.
func (h *history) list() []BroadcastSummary {
	h.mu.Lock()
	sums := make([]BroadcastSummary, len(h.entries))
	for i, e := range h.entries {
		sums[i] = summarize(e.report)
	}
	h.mu.Unlock()
	// Reports are kept as broadcasts end; IDs follow their start.
	slices.SortFunc(sums, func(a, b BroadcastSummary) int { return strings.Compare(b.ID, a.ID) })
	return sums
}

// keptReport is rep as the history keeps it, bodies cut to
// HistoryBodyLimit, and its estimated size in bytes.
func keptReport(rep BroadcastReport) (BroadcastReport, int) {
	rep.Shards = slices.Clone(rep.Shards)
	size := len(rep.ID) + len(rep.RetryOf) + len(rep.IdempotencyKey) + len(rep.Method) + len(rep.Path) + shardResultOverhead
	for i := range rep.Shards {
		res := &rep.Shards[i]
		if len(res.Body) > HistoryBodyLimit {
			res.Body, res.Truncated = strings.Clone(trimUTF8(res.Body[:HistoryBodyLimit])), true // a copy: the whole body is not kept
		}
		size += len(res.Shard) + len(res.Address) + len(res.Body) + len(res.Error) + shardResultOverhead
	}
	return rep, size
}

// requestSize is what keeping req costs: its body and header fields.
func requestSize(req *shardRequest) int {
	n := len(req.method) + len(req.uri) + len(req.body)
	for k, vs := range req.header {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // ": " and CRLF, as on the wire
		}
	}
	return n
}

// BroadcastSummary is one line of GET /broadcasts.
type BroadcastSummary struct {
	ID         string    `json:"id"`
	Time       time.Time `json:"time"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Policy     Policy    `json:"policy"`
	Succeeded  int       `json:"succeeded"`
	Failed     int       `json:"failed"`
	DurationMS float64   `json:"duration_ms"`
	RetryOf    string    `json:"retry_of,omitempty"`
	Retryable  bool      `json:"retryable"`
}

// BroadcastsAnswer is the body of GET /broadcasts.
type BroadcastsAnswer struct {
	Broadcasts []BroadcastSummary `json:"broadcasts"`
}

func summarize(r BroadcastReport) BroadcastSummary {
	return BroadcastSummary{ID: r.ID, Time: r.Time, Method: r.Method, Path: r.Path, Policy: r.Policy,
		Succeeded: r.Succeeded, Failed: r.Failed, DurationMS: r.DurationMS, RetryOf: r.RetryOf, Retryable: r.Retryable}
}

// idSource hands out broadcast IDs such as
// 20260314T091502.123Z-0007-3fa9c1d2: the start time in UTC to the
// millisecond, a counter within that millisecond and 32 random bits. They
// are URL-safe, and they sort as the broadcasts of one process started:
// the time never goes back (a clock stepped back repeats the last
// millisecond) and the counter has a fixed width (a full millisecond moves
// on to the next). The random part keeps two replicas of the proxy from
// sending shards the same Idempotency-Key for different broadcasts. Safe
// for concurrent use; the zero value is ready.
type idSource struct {
	// clock is the time source; nil means time.Now.
	clock func() time.Time

	mu     sync.Mutex
	lastMS int64
	seq    int
}

const idSeqMax = 9999

// next returns a new ID and the time the broadcast starts.
func (s *idSource) next() (string, time.Time) {
	now := time.Now()
	if s.clock != nil {
		now = s.clock()
	}
	s.mu.Lock()
	ms := max(now.UnixMilli(), s.lastMS)
	switch {
	case ms > s.lastMS:
		s.seq = 0
	case s.seq == idSeqMax:
		ms, s.seq = ms+1, 0
	default:
		s.seq++
	}
	s.lastMS = ms
	seq := s.seq
	s.mu.Unlock()
	stamp := time.UnixMilli(ms).UTC().Format("20060102T150405.000Z")
	return fmt.Sprintf("%s-%04d-%08x", stamp, seq, rand.Uint32()), now
}
