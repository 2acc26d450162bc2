package keys

import (
	"cmp"
	"errors"
	"sync"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
)

// Request is what key rules read from a request, whatever protocol it came
// in on (HTTP/1.1, HTTP/2, a net/http request).
type Request interface {
	// HeaderValues appends the values of every field named name (matched
	// case-insensitively) to dst, in order, and returns it.
	HeaderValues(dst [][]byte, name string) [][]byte
	// PathQuery returns the path and the query (without '?') as received,
	// still percent-encoded.
	PathQuery() (path, query []byte)
	// Body returns the buffered body, or nil when none was buffered.
	Body() []byte
}

// Extractor finds a request's shard key by trying its rules in order. It is
// safe for concurrent use.
type Extractor struct {
	rules []Rule
	tried []string
	// NeedsBody tells whether some rule reads the body, which a front end
	// must then buffer (up to its limit) before asking for the key.
	needsBody bool
	maxDepth  int // of the JSON a body rule reads
}

// Scratch holds per-request buffers so that extraction does not allocate.
// A key returned by Extractor.Key may point into it: keep the Scratch until
// the key is no longer needed. The zero value is ready to use.
type Scratch struct {
	vals [][]byte
	buf  []byte
	cmp  []byte
}

var scratchPool = sync.Pool{New: func() any { return new(Scratch) }}

// AcquireScratch returns a Scratch from a pool; give it back with ReleaseScratch.
func AcquireScratch() *Scratch { return scratchPool.Get().(*Scratch) }

// HeaderValues returns the values of req's fields named name, in s (valid
// until s is used again): a caller that reads a field other than the
// key's (the routing step's traceparent) without allocating.
func (s *Scratch) HeaderValues(req Request, name string) [][]byte {
	s.vals = req.HeaderValues(s.vals[:0], name)
	return s.vals
}

// ReleaseScratch returns s to the pool; keys taken with it become invalid.
func ReleaseScratch(s *Scratch) {
	clear(s.vals) // drop references into request buffers
	s.vals = s.vals[:0]
	scratchPool.Put(s)
}

// DefaultMaxBodyDepth is the deepest JSON nesting a body rule reads.
const DefaultMaxBodyDepth = 64

// NewExtractor returns an Extractor for rules (at least one). A body rule
// reads JSON nested at most maxBodyDepth deep (0: DefaultMaxBodyDepth).
func NewExtractor(rules []Rule, maxBodyDepth int) *Extractor {
	e := &Extractor{rules: rules, maxDepth: cmp.Or(max(maxBodyDepth, 0), DefaultMaxBodyDepth)}
	for _, r := range rules {
		e.tried = append(e.tried, r.text)
		e.needsBody = e.needsBody || r.kind == ruleBody
	}
	return e
}

// NeedsBody tells whether a rule reads the body.
func (e *Extractor) NeedsBody() bool { return e.needsBody }

// Key returns the shard key of req and the rule that yielded it (as
// written), or an error wrapping answer.ErrNoKey, answer.ErrAmbiguousKey or
// answer.ErrBadBody; ErrNeedBody when a body rule is reached before the
// body was buffered. The key aliases memory of req and s.
func (e *Extractor) Key(req Request, s *Scratch) (key []byte, rule string, err error) {
	// The values a rule collected point into the request: dropped when it
	// is done (the key, which may point there too, is the caller's).
	defer func() { clear(s.vals) }()
	for i := range e.rules {
		key, err := e.rules[i].extract(req, e.maxDepth, s)
		if err != nil || len(key) > 0 {
			return key, e.rules[i].text, err
		}
	}
	return nil, "", answer.KeyError(answer.ErrNoKey, "", e.tried)
}

// ErrNeedBody: a body rule was reached before the body was buffered; the
// front end buffers it (up to its limit) and asks again.
var ErrNeedBody = errors.New("the key rule needs the body")

// KeyString returns the shard key of req as a string, or "" when there is
// none or it is ambiguous. It is meant for code off the hot path, such as
// the demo shards.
func (e *Extractor) KeyString(req Request) string {
	s := AcquireScratch()
	defer ReleaseScratch(s)
	key, _, _ := e.Key(req, s)
	return string(key)
}

func (r *Rule) extract(req Request, maxDepth int, s *Scratch) ([]byte, error) {
	switch r.kind {
	case ruleHeader:
		s.vals = req.HeaderValues(s.vals[:0], r.name)
		return r.single(s.vals)
	case ruleCookie:
		s.vals = req.HeaderValues(s.vals[:0], "Cookie")
		return r.cookie(s)
	case ruleQuery:
		_, q := req.PathQuery()
		return r.query(q, s)
	case rulePath:
		p, _ := req.PathQuery()
		return r.matchPath(p, s)
	case ruleBody:
		return r.bodyKey(req.Body(), maxDepth, s)
	}
	return nil, nil
}

// bodyKey reads the rule's field from a JSON body (jsonKey). An empty body
// yields no key (so a later rule may match); a body that is not JSON, or
// nested deeper than maxDepth, or that a JSON decoder could read two ways
// is refused, because guessing would misroute.
func (r *Rule) bodyKey(body []byte, maxDepth int, s *Scratch) ([]byte, error) {
	if body == nil {
		return nil, ErrNeedBody
	}
	if len(body) == 0 {
		return nil, nil
	}
	var err error
	s.buf, err = jsonKey(body, r.fieldPath, maxDepth, s.buf)
	switch {
	case err == nil:
		return s.buf, nil
	case errors.Is(err, errJSONTooDeep):
		return nil, answer.KeyError(answer.ErrBodyTooDeep, r.text, nil)
	case errors.Is(err, errJSONAmbiguous):
		return nil, r.ambiguous()
	case errors.Is(err, errJSONBadKey):
		return nil, r.invalid()
	}
	return nil, answer.KeyError(answer.ErrBadBody, r.text, nil)
}
