package h1

import (
	"slices"
	"testing"
)

func TestHopByHop(t *testing.T) {
	var r Request
	in := "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret , ,x-other\r\nConnection: Close\r\nX-Secret: 1\r\n\r\n"
	if _, err := r.Parse([]byte(in)); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	tests := []struct {
		name string
		want bool
	}{
		{"Connection", true}, {"KEEP-ALIVE", true}, {"proxy-connection", true}, {"TE", true},
		{"Transfer-Encoding", true}, {"upgrade", true}, {"Proxy-Authenticate", true}, {"proxy-authorization", true},
		{"x-secret", true}, {"X-OTHER", true}, {"close", true},
		{"Trailer", false}, {"Host", false}, {"Content-Length", false}, {"X-Secre", false}, {"", false},
	}
	for _, tt := range tests {
		if got := r.HopByHop([]byte(tt.name)); got != tt.want {
			t.Errorf("HopByHop(%q): got %t, want %t", tt.name, got, tt.want)
		}
	}
	var got []string
	for tok := range r.ConnectionTokens() {
		got = append(got, string(tok))
	}
	if want := []string{"keep-alive", "X-Secret", "x-other", "Close"}; !slices.Equal(got, want) {
		t.Errorf("ConnectionTokens: got %q, want %q", got, want)
	}
	for range r.ConnectionTokens() {
		break // stopping early must not panic
	}
}

// TestHopByHopWithoutConnection: only the static list applies.
func TestHopByHopWithoutConnection(t *testing.T) {
	var r Response
	if _, err := r.Parse([]byte("HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n")); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if r.HopByHop([]byte("X-A")) || !r.HopByHop([]byte("te")) {
		t.Errorf("HopByHop: got X-A=%t te=%t, want false true", r.HopByHop([]byte("X-A")), r.HopByHop([]byte("te")))
	}
}

func TestNoAllocations(t *testing.T) {
	req, resp := []byte(benchRequest), []byte(benchResponse)
	var r Request
	var s Response
	var c Chunked
	body := []byte(benchChunked)
	name := []byte("X-Hop")
	bad := []byte("GET / HTTP/1.1\r\nX : y\r\n\r\n")
	_, _ = r.Parse(req) // warm up: the Fields slice grows once
	_, _ = s.Parse(resp)
	tests := []struct {
		name string
		fn   func()
	}{
		{"Request.Parse", func() { _, _ = r.Parse(req) }},
		{"Response.Parse", func() { _, _ = s.Parse(resp) }},
		{"Request.Parse rejected", func() { _, _ = r.Parse(bad) }},
		{"Chunked", func() { c.Reset(); _, _, _, _ = decodeChunkedNoAlloc(&c, body) }},
		{"HopByHop", func() { _ = r.HopByHop(name) }},
		{"ConnectionTokens", func() {
			for tok := range r.ConnectionTokens() {
				_ = tok
			}
		}},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.fn); got != 0 {
			t.Errorf("%s: got %.1f allocations per run, want 0", tt.name, got)
		}
	}
}

// decodeChunkedNoAlloc runs the scanner over p without collecting data.
func decodeChunkedNoAlloc(c *Chunked, p []byte) (n, payload int, done bool, err error) {
	for len(p) > 0 && !done {
		var k int
		var data []byte
		k, data, done, err = c.Next(p)
		if err != nil {
			return n, payload, done, err
		}
		n, payload, p = n+k, payload+len(data), p[k:]
	}
	return n, payload, done, nil
}

// TestHopByHopFieldsList: the exported list (which net/http front ends
// strip) and the parser's own recognition are the same set.
func TestHopByHopFieldsList(t *testing.T) {
	for _, name := range HopByHopFields {
		if !lookupField([]byte(name)).hopByHop() {
			t.Errorf("%s is in HopByHopFields but the parser does not take it as hop-by-hop", name)
		}
	}
	n := 0
	for id := fieldID(0); id <= idProxyAuthorization; id++ {
		if id.hopByHop() {
			n++
		}
	}
	if n != len(HopByHopFields) {
		t.Errorf("the parser knows %d hop-by-hop fields, HopByHopFields lists %d", n, len(HopByHopFields))
	}
}

// TestEqualFold: ASCII case is ignored on both sides, nothing else is.
func TestEqualFold(t *testing.T) {
	for _, tt := range []struct {
		b, s string
		want bool
	}{{"Content-Length", "content-length", true}, {"X-FORWARDED-FOR", "X-Forwarded-For", true},
		{"upgrade", "UPGRADE", true}, {"host", "hosts", false}, {"ho[t", "ho{t", false},
		{"\xc3\xa9", "\xc3\x89", false}, {"", "", true}} {
		if got := EqualFold([]byte(tt.b), tt.s); got != tt.want {
			t.Errorf("EqualFold(%q, %q) = %v, want %v", tt.b, tt.s, got, tt.want)
		}
	}
}
