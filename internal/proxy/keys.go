package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"
)

// DefaultKeyRules is the rule list used when none is configured.
const DefaultKeyRules = "header:X-Shard-Key"

// ruleKind says where a rule takes its key from.
type ruleKind uint8

const (
	ruleHeader ruleKind = iota
	ruleQuery
	ruleCookie
	rulePath
	ruleBody
)

var ruleKinds = map[string]ruleKind{
	"header": ruleHeader,
	"query":  ruleQuery,
	"cookie": ruleCookie,
	"path":   rulePath,
	"body":   ruleBody,
}

// Rule is one parsed --key rule. Rules are immutable once parsed and safe for
// concurrent use.
type Rule struct {
	kind ruleKind
	text string // the rule as written, e.g. "header:X-Shard-Key"
	name string // header, query parameter or cookie name; body field as written
	// path rules: the template split into segments; keyAt is the index of {key}.
	segments []string
	keyAt    int
	// body rules: the field as a gjson path with every special character escaped.
	jsonPath string
}

// String returns the rule as written on the command line.
func (r Rule) String() string { return r.text }

// ParseRules parses a comma-separated --key value such as
// "path:/accounts/{key},header:X-Shard-Key". An empty value means
// DefaultKeyRules.
func ParseRules(spec string) ([]Rule, error) {
	if strings.TrimSpace(spec) == "" {
		spec = DefaultKeyRules
	}
	var rules []Rule
	for _, part := range strings.Split(spec, ",") {
		r, err := parseRule(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseRule(text string) (Rule, error) {
	kindName, arg, ok := strings.Cut(text, ":")
	kind, known := ruleKinds[kindName]
	if !ok || !known {
		return Rule{}, fmt.Errorf("key rule %q: want header:NAME, query:NAME, cookie:NAME, path:TEMPLATE or body:FIELD", text)
	}
	if arg == "" {
		return Rule{}, fmt.Errorf("key rule %q: %s needs a name after the colon", text, kindName)
	}
	r := Rule{kind: kind, text: text, name: arg}
	switch kind {
	case ruleHeader, ruleQuery, ruleCookie:
		if strings.ContainsAny(arg, " \t\r\n") {
			return Rule{}, fmt.Errorf("key rule %q: name must not contain white space", text)
		}
	case rulePath:
		segs, at, err := parseTemplate(arg)
		if err != nil {
			return Rule{}, fmt.Errorf("key rule %q: %w", text, err)
		}
		r.segments, r.keyAt = segs, at
	case ruleBody:
		p, err := jsonPathOf(arg)
		if err != nil {
			return Rule{}, fmt.Errorf("key rule %q: %w", text, err)
		}
		r.jsonPath = p
	}
	return r, nil
}

// parseTemplate splits "/accounts/{key}/orders" into segments. Exactly one
// segment is {key}; any other {name} segment matches any one segment.
func parseTemplate(tmpl string) ([]string, int, error) {
	if !strings.HasPrefix(tmpl, "/") {
		return nil, 0, errors.New("path template must start with /")
	}
	segs := strings.Split(tmpl[1:], "/")
	keyAt := -1
	for i, s := range segs {
		switch {
		case s == "{key}":
			if keyAt >= 0 {
				return nil, 0, errors.New("path template has {key} twice")
			}
			keyAt = i
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && len(s) > 2:
			segs[i] = "{}" // wildcard
		case strings.ContainsAny(s, "{}"):
			return nil, 0, fmt.Errorf("path template segment %q: braces must enclose a whole segment", s)
		case s == "" && i < len(segs)-1:
			return nil, 0, errors.New("path template has an empty segment")
		}
	}
	if keyAt < 0 {
		return nil, 0, errors.New("path template has no {key} segment")
	}
	if segs[len(segs)-1] == "" { // trailing slash adds nothing: prefixes match anyway
		segs = segs[:len(segs)-1]
	}
	return segs, keyAt, nil
}

// jsonPathOf turns a dotted field ("account.id", "items.0.sku") into a gjson
// path that gjson cannot read as a query, modifier or wildcard: every
// character other than a letter, digit, '_' or '-' is escaped.
func jsonPathOf(field string) (string, error) {
	var b strings.Builder
	for i, seg := range strings.Split(field, ".") {
		if seg == "" {
			return "", fmt.Errorf("body field %q has an empty segment", field)
		}
		if i > 0 {
			b.WriteByte('.')
		}
		for _, c := range []byte(seg) {
			if !isPlainFieldByte(c) {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func isPlainFieldByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c >= 0x80
}

// Extractor finds a request's shard key by trying its rules in order. It is
// safe for concurrent use.
type Extractor struct {
	rules []Rule
	tried []string
}

// Scratch holds per-request buffers so that extraction does not allocate.
// A key returned by Extractor.Key may point into it: keep the Scratch until
// the key is no longer needed. The zero value is ready to use.
type Scratch struct {
	args fasthttp.Args
	buf  []byte
}

var scratchPool = sync.Pool{New: func() any { return new(Scratch) }}

// AcquireScratch returns a Scratch from a pool; give it back with ReleaseScratch.
func AcquireScratch() *Scratch { return scratchPool.Get().(*Scratch) }

// ReleaseScratch returns s to the pool; keys taken with it become invalid.
func ReleaseScratch(s *Scratch) { scratchPool.Put(s) }

// NewExtractor returns an Extractor for rules (at least one).
func NewExtractor(rules []Rule) *Extractor {
	e := &Extractor{rules: rules}
	for _, r := range rules {
		e.tried = append(e.tried, r.text)
	}
	return e
}

// Rules returns the rules as written, in the order they are tried.
func (e *Extractor) Rules() []string { return e.tried }

// Key returns the shard key of req, or an error wrapping ErrNoKey or
// ErrBadBody. The key aliases memory of req and s.
func (e *Extractor) Key(req *fasthttp.Request, s *Scratch) ([]byte, error) {
	for i := range e.rules {
		key, err := e.rules[i].extract(req, s)
		if err != nil || len(key) > 0 {
			return key, err
		}
	}
	return nil, &keyError{err: ErrNoKey, tried: e.tried}
}

// KeyString returns the shard key of req as a string, or "" when there is
// none. It is meant for code off the hot path, such as the demo shards.
func (e *Extractor) KeyString(req *fasthttp.Request) string {
	s := AcquireScratch()
	defer ReleaseScratch(s)
	key, _ := e.Key(req, s)
	return string(key)
}

func (r *Rule) extract(req *fasthttp.Request, s *Scratch) ([]byte, error) {
	switch r.kind {
	case ruleHeader:
		return req.Header.Peek(r.name), nil
	case ruleCookie:
		return req.Header.Cookie(r.name), nil
	case ruleQuery:
		// A separate Args keeps req's own query unparsed, so it is forwarded
		// byte for byte rather than re-encoded.
		s.args.ParseBytes(req.URI().QueryString())
		return s.args.Peek(r.name), nil
	case rulePath:
		// The path as received, which is also what the shard receives; only
		// the key segment is percent-decoded, so %2F stays inside a key.
		return r.matchPath(req.URI().PathOriginal(), s), nil
	case ruleBody:
		return r.bodyKey(req.Body(), s)
	}
	return nil, nil
}

// matchPath returns the percent-decoded {key} segment of the raw path when
// the path starts with the template's segments, or nil. A decoded key is
// written to s.buf.
func (r *Rule) matchPath(path []byte, s *Scratch) []byte {
	if len(path) == 0 || path[0] != '/' {
		return nil
	}
	rest := path[1:]
	var key []byte
	for i, want := range r.segments {
		if rest == nil {
			return nil
		}
		seg := rest
		if j := bytes.IndexByte(rest, '/'); j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		} else {
			rest = nil
		}
		switch {
		case i == r.keyAt:
			key = seg
		case want == "{}":
			if len(seg) == 0 {
				return nil
			}
		case string(seg) != want:
			return nil
		}
	}
	if bytes.IndexByte(key, '%') < 0 {
		return key
	}
	s.buf = unescapePath(s.buf[:0], key)
	return s.buf
}

// unescapePath appends seg with %XX escapes decoded; a malformed escape is
// kept as it is. '+' means '+' in a path.
func unescapePath(dst, seg []byte) []byte {
	for i := 0; i < len(seg); i++ {
		if seg[i] == '%' && i+2 < len(seg) && isHex(seg[i+1]) && isHex(seg[i+2]) {
			dst = append(dst, unhex(seg[i+1])<<4|unhex(seg[i+2]))
			i += 2
			continue
		}
		dst = append(dst, seg[i])
	}
	return dst
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// bodyKey reads the rule's field from a JSON body. An empty body yields no
// key (so a later rule may match); a body that is not JSON is an error,
// because guessing would misroute.
func (r *Rule) bodyKey(body []byte, s *Scratch) ([]byte, error) {
	if len(body) == 0 {
		return nil, nil
	}
	// The body outlives this call, so a string view of it is safe and lets
	// gjson return results that point into it instead of copies.
	doc := unsafe.String(unsafe.SliceData(body), len(body))
	if !gjson.Valid(doc) {
		return nil, &keyError{err: ErrBadBody, rule: r.text}
	}
	res := gjson.Get(doc, r.jsonPath)
	switch res.Type {
	case gjson.Number:
		return rawOf(body, res), nil
	case gjson.String:
		raw := rawOf(body, res)
		if len(raw) >= 2 && bytes.IndexByte(raw, '\\') < 0 {
			return raw[1 : len(raw)-1], nil
		}
		s.buf = append(s.buf[:0], res.Str...)
		return s.buf, nil
	}
	return nil, nil
}

// rawOf returns res.Raw as a slice of body when gjson reports where it found
// it, avoiding a copy.
func rawOf(body []byte, res gjson.Result) []byte {
	if res.Index > 0 && res.Index+len(res.Raw) <= len(body) {
		return body[res.Index : res.Index+len(res.Raw)]
	}
	return []byte(res.Raw)
}
