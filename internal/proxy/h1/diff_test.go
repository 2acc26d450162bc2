package h1

// Shared pieces of the differential fuzz targets: the outcome both sides
// are reduced to, a lenient line view of the input that predicates read,
// strict grammar checks written independently of the parser (regular
// expressions from the RFC ABNF, net/netip for IPv6), and difference
// classes.
//
// A class names inputs on which the two sides may legitimately disagree.
// A "reject" class covers "we reject, net/http accepts": its predicate
// must hold on the input and our error must be one the class names, so a
// class cannot hide a rejection for some other reason. An "accept" class
// covers "we accept, net/http rejects" and carries the written reason why
// accepting is safe. Any disagreement outside the classes fails the target.

import (
	"bytes"
	"errors"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// outcome is one side's reading of a message.
type outcome struct {
	err      error
	method   string // requests
	target   string // requests
	host     string // requests: the Host of the target, else of the field
	status   int    // responses
	minor    int
	header   map[string][]string // lower-case name -> values in order
	body     []byte
	cl       int64 // as net/http reports it: -1 chunked or unknown
	chunked  bool
	close    bool
	consumed int // bytes of input the message took, head and body
}

// diffClass is one allowed difference; see the file comment.
type diffClass struct {
	name   string
	ground string  // RFC section that permits the difference, or the reason
	errs   []error // reject classes: our error must be one of these
	match  func(c *diffCtx) bool
}

// diffCtx is what predicates look at.
type diffCtx struct {
	raw        rawHead // of the input as net/http reads it
	emptyLines int     // CRLFs before the request line
	version    [2]int  // net/http's view of the start line version, -1 if unknown
	method     string  // net/http's view (requests), "" if it rejected
	target     string  // net/http's RequestURI
	status     int     // net/http's status code (responses)
	body       []byte  // input after our head, when we parsed the head
	chunks     rawChunks
}

// findClass returns the class that allows the difference, or nil.
func findClass(classes []diffClass, c *diffCtx, ourErr error) *diffClass {
	for i := range classes {
		cl := &classes[i]
		if !cl.match(c) {
			continue
		}
		if ourErr == nil || slices.ContainsFunc(cl.errs, func(e error) bool { return errors.Is(ourErr, e) }) {
			return cl
		}
	}
	return nil
}

// rawHead is a lenient line view of a head, split the way net/textproto
// splits it: at LF, dropping one CR before it.
type rawHead struct {
	lines  [][]byte // start line first, up to the empty line
	bareLF bool     // a line ended in LF without CR
	fold   bool     // a field line starts with SP or HTAB
	fields []rawField
}

type rawField struct{ name, value string } // name as written, value OWS-trimmed

func splitHead(b []byte) rawHead {
	var h rawHead
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return h
		}
		line, ok := bytes.CutSuffix(b[:i], []byte("\r"))
		h.bareLF = h.bareLF || !ok
		b = b[i+1:]
		if len(line) == 0 {
			return h
		}
		h.lines = append(h.lines, line)
		if len(h.lines) == 1 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			// textproto joins a continuation to the previous value.
			h.fold = true
			if n := len(h.fields); n > 0 {
				h.fields[n-1].value = strings.Trim(h.fields[n-1].value+" "+strings.Trim(string(line), " \t"), " \t")
			}
			continue
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		h.fields = append(h.fields, rawField{string(name), strings.Trim(string(value), " \t")})
	}
}

// values returns the values of the fields named name (case-insensitive,
// exact otherwise: "Host " is not Host).
func (h *rawHead) values(name string) []string {
	var vs []string
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			vs = append(vs, f.value)
		}
	}
	return vs
}

func (h *rawHead) has(name string) bool { return len(h.values(name)) > 0 }

// listHas reports whether a field list contains elem, case-insensitively.
func (h *rawHead) listHas(name string, elems ...string) bool {
	for _, v := range h.values(name) {
		for e := range strings.SplitSeq(v, ",") {
			for _, want := range elems {
				if strings.EqualFold(strings.Trim(e, " \t"), want) {
					return true
				}
			}
		}
	}
	return false
}

// Strict grammar, from the ABNF of RFC 9110, RFC 9112 and RFC 3986.
const (
	reToken = "[!#$%&'*+.^_`|~0-9A-Za-z-]+"
	reQuote = `"(?:[\t !#-\[\]-~]|[^\x00-\x7f]|\\(?:[\t -~]|[^\x00-\x7f]))*"`
	reBWS   = `[ \t]*`
)

var (
	// chunk-size [ chunk-ext ] (RFC 9112 §7.1, §7.1.1)
	chunkLineRE = regexp.MustCompile(`^[0-9A-Fa-f]+(?:` + reBWS + `;` + reBWS + reToken +
		`(?:` + reBWS + `=` + reBWS + `(?:` + reToken + `|` + reQuote + `))?)*$`)
	// field-line without CRLF (RFC 9112 §5, RFC 9110 §5.5)
	fieldLineRE = regexp.MustCompile(`^` + reToken + `:[^\x00-\x08\x0a-\x1f\x7f]*$`)
	// reg-name without pct-encoded (RFC 3986 §3.2.2)
	regNameRE = regexp.MustCompile(`^[A-Za-z0-9._~!$&'()*+,;=-]*$`)
	portRE    = regexp.MustCompile(`^(?::[0-9]*)?$`)
	schemeRE  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)
)

// strictHostPort is uri-host [ ":" port ] with the restrictions the
// package documents (no pct-encoding, IPv6 only inside brackets, no zone).
func strictHostPort(s string, needPort bool) (host string, ok bool) {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		i := strings.IndexByte(s, ']')
		if i < 0 {
			return "", false
		}
		addr, err := netip.ParseAddr(s[1:i])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return "", false
		}
		host, port = s[:i+1], s[i+1:]
	} else if i := strings.IndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i:]
	}
	if !regNameRE.MatchString(host) && !strings.HasPrefix(host, "[") || !portRE.MatchString(port) {
		return "", false
	}
	return host, !needPort || len(port) > 1
}

// rawChunks is a lenient walk of a chunked body that follows chunk
// boundaries the way net/http does.
type rawChunks struct {
	lines   []string // chunk-size lines without CRLF
	trailer []byte   // input after the last-chunk line; nil if not reached
	excess  bool     // net/http's overhead heuristic would trip
}

func walkChunks(b []byte) rawChunks {
	var r rawChunks
	var excess int64
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return r
		}
		line := bytes.TrimSuffix(b[:i], []byte("\r"))
		b = b[i+1:]
		r.lines = append(r.lines, string(line))
		// net/http/internal/chunked.go: trim OWS, cut at ';', parse hex.
		digits, _, _ := bytes.Cut(bytes.TrimRight(line, " \t"), []byte(";"))
		size, ok := parseHex(digits)
		if !ok {
			return r
		}
		excess = max(excess+int64(len(line))+2-16-2*int64(size), 0)
		r.excess = r.excess || excess > 16<<10
		if size == 0 {
			r.trailer = b
			return r
		}
		if uint64(len(b)) < size+2 {
			return r
		}
		b = b[size+2:]
	}
}

func parseHex(d []byte) (uint64, bool) {
	if len(d) == 0 || len(d) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range d {
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			n = n<<4 | uint64(c|0x20-'a'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// compareOutcomes fails t when two accepted readings differ.
func compareOutcomes(t *testing.T, data []byte, ours, theirs outcome) {
	t.Helper()
	eq := func(a, b []string) bool { return slices.Equal(a, b) }
	switch {
	case ours.method != theirs.method || ours.target != theirs.target || ours.status != theirs.status || ours.minor != theirs.minor:
		t.Fatalf("%q: start line: ours %q %q %d 1.%d, net/http %q %q %d 1.%d", data,
			ours.method, ours.target, ours.status, ours.minor, theirs.method, theirs.target, theirs.status, theirs.minor)
	case ours.host != theirs.host:
		t.Fatalf("%q: host: ours %q, net/http %q", data, ours.host, theirs.host)
	case !maps.EqualFunc(ours.header, theirs.header, eq):
		t.Fatalf("%q: fields: ours %q, net/http %q", data, ours.header, theirs.header)
	case !bytes.Equal(ours.body, theirs.body):
		t.Fatalf("%q: body: ours %q, net/http %q", data, ours.body, theirs.body)
	case ours.cl != theirs.cl || ours.chunked != theirs.chunked || ours.close != theirs.close:
		t.Fatalf("%q: framing: ours cl=%d chunked=%t close=%t, net/http cl=%d chunked=%t close=%t", data,
			ours.cl, ours.chunked, ours.close, theirs.cl, theirs.chunked, theirs.close)
	case ours.consumed != theirs.consumed:
		t.Fatalf("%q: message length: ours %d, net/http %d", data, ours.consumed, theirs.consumed)
	}
}

// lowerFields turns our fields into the lower-case multimap.
func lowerFields(fields []Field) map[string][]string {
	m := make(map[string][]string)
	for _, f := range fields {
		k := strings.ToLower(string(f.Name))
		m[k] = append(m[k], string(f.Value))
	}
	return m
}

// lowerHeader turns net/http's canonical-key map into the same shape.
func lowerHeader(h map[string][]string) map[string][]string {
	m := make(map[string][]string, len(h))
	for k, v := range h {
		m[strings.ToLower(k)] = append(m[strings.ToLower(k)], v...)
	}
	return m
}

// normalizeHeaders removes what net/http takes out of or adds to the
// header map, so that the rest compares one to one:
//   - Host, which ReadRequest moves to Request.Host, compared as host;
//   - Transfer-Encoding and Content-Length, compared as framing instead;
//   - Trailer of a chunked message, moved to Request.Trailer by fixTrailer;
//   - Cache-Control: no-cache, added by fixPragmaCacheControl for
//     "Pragma: no-cache";
//   - Connection of an HTTP/1.1 response listing close, deleted by
//     shouldClose (transfer.go).
func normalizeHeaders(ours, theirs *outcome, response bool) {
	for _, m := range []map[string][]string{ours.header, theirs.header} {
		delete(m, "transfer-encoding")
		if !response {
			delete(m, "host")
		}
		delete(m, "content-length")
		if ours.chunked {
			delete(m, "trailer")
		}
	}
	if p := ours.header["pragma"]; len(p) > 0 && p[0] == "no-cache" && ours.header["cache-control"] == nil {
		delete(theirs.header, "cache-control")
	}
	if response && ours.minor == 1 && ours.close && theirs.header["connection"] == nil {
		delete(ours.header, "connection")
	}
}

// readOurBody reads the body by our framing from rest.
func readOurBody(fr Framing, cl int64, rest []byte) ([]byte, int, error) {
	switch fr {
	case FramingLength:
		if int64(len(rest)) < cl {
			return nil, 0, ErrIncomplete
		}
		return rest[:cl], int(cl), nil
	case FramingChunked:
		var c Chunked
		body, n, done, err := decodeChunked(&c, rest, 0)
		if err == nil && !done {
			err = ErrIncomplete
		}
		return body, n, err
	case FramingClose:
		return rest, len(rest), nil
	}
	return nil, 0, nil
}

// first returns the start line, or nil.
func (h *rawHead) first() []byte {
	if len(h.lines) == 0 {
		return nil
	}
	return h.lines[0]
}

// checkPrefixes parses prefixes of data with parse: each must give
// ErrIncomplete or the result of the whole input, and once a prefix gives
// that result every longer one must too. Long inputs are sampled.
func checkPrefixes(t *testing.T, data []byte, parse func([]byte) (int, error)) {
	t.Helper()
	wantN, wantErr := parse(data)
	step := max(1, len(data)/256)
	decided := false
	for k := 0; k <= len(data); k += step {
		n, err := parse(data[:k])
		switch {
		case err == ErrIncomplete && !decided:
		case err == wantErr && n == wantN && (err != nil || k >= n):
			decided = true
		default:
			t.Fatalf("%q: prefix of %d bytes gives n=%d err=%v; the whole input gives n=%d err=%v", data, k, n, err, wantN, wantErr)
		}
	}
}
