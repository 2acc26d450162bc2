package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
)

// FuzzRequestDifferential reads the same bytes with Request.Parse plus our
// body framing, and with http.ReadRequest plus io.ReadAll of the body plus
// the checks net/http's server makes after ReadRequest. Both must accept
// or reject, except for the classes in classes_test.go; when both accept
// they must agree on method, target, version, every field (lower-case
// name -> values, see normalizeHeaders), framing, body and where the
// message ends.
//
// Leading CRLFs are removed before net/http reads the input: its server
// skips them only after a POST, while we skip up to maxEmptyLines always,
// as RFC 9112 §2.2 recommends.
func FuzzRequestDifferential(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		checkPrefixes(t, data, r.Parse)
		skip := 0
		for bytes.HasPrefix(data[skip:], []byte("\r\n")) {
			skip += 2
		}
		ours, n := ourRequest(data)
		c := &diffCtx{raw: splitHead(data[skip:]), emptyLines: skip / 2, version: [2]int{-1, -1}}
		theirs, req := goRequest(data[skip:], &c.raw)
		theirs.consumed += skip
		if req != nil {
			c.method, c.target, c.version = req.Method, req.RequestURI, [2]int{req.ProtoMajor, req.ProtoMinor}
		}
		if n > 0 {
			c.body = data[n:]
			c.chunks = walkChunks(c.body)
		}
		switch {
		case ours.err == nil && theirs.err == nil:
			normalizeHeaders(&ours, &theirs, false)
			compareOutcomes(t, data, ours, theirs)
		case ours.err != nil && theirs.err == nil:
			if findClass(requestRejects, c, ours.err) == nil {
				t.Fatalf("%q: we reject (%v), net/http accepts, and no class allows it", data, ours.err)
			}
		case ours.err == nil && theirs.err != nil:
			if findClass(requestAccepts, c, nil) == nil {
				t.Fatalf("%q: we accept, net/http rejects (%v), and no class allows it", data, theirs.err)
			}
		}
	})
}

// ourRequest reads a request and its body; n is the head length, 0 if the
// head was rejected.
func ourRequest(data []byte) (outcome, int) {
	var r Request
	n, err := r.Parse(data)
	if err != nil {
		return outcome{err: err}, 0
	}
	body, bn, err := readOurBody(r.Framing(), r.ContentLength, data[n:])
	if err != nil {
		return outcome{err: err}, n
	}
	host := string(r.Host)
	if r.Form == FormAbsolute || r.Form == FormAuthority {
		host = string(r.authority) // net/http's Request.Host is the target's
	}
	o := outcome{
		method: string(r.Method), target: string(r.Target), host: host, minor: r.Minor,
		header: lowerFields(r.Fields), body: body, cl: max(r.ContentLength, 0),
		chunked:  r.Flags.Has(FlagChunked),
		close:    r.Flags.Has(FlagConnClose) || r.Minor == 0 && !r.Flags.Has(FlagConnKeepAlive),
		consumed: n + bn,
	}
	if o.chunked {
		o.cl = -1
	}
	return o, n
}

// goRequest is net/http's reading. The request is returned whenever
// ReadRequest accepted the head, for the predicates.
func goRequest(data []byte, raw *rawHead) (outcome, *http.Request) {
	rd := bytes.NewReader(data)
	br := bufio.NewReader(rd)
	req, err := http.ReadRequest(br)
	if err != nil {
		return outcome{err: err}, nil
	}
	body, err := io.ReadAll(req.Body)
	if err == nil {
		err = serverChecks(req, raw)
	}
	if err != nil {
		return outcome{err: err}, req
	}
	return outcome{
		method: req.Method, target: req.RequestURI, host: req.Host, minor: req.ProtoMinor,
		header: lowerHeader(req.Header), body: body, cl: req.ContentLength,
		chunked: len(req.TransferEncoding) > 0, close: req.Close,
		consumed: len(data) - rd.Len() - br.Buffered(),
	}, req
}

// serverChecks are the checks (*http.conn).readRequest in net/http's
// server.go applies after its internal readRequest: a supported version,
// Host present on HTTP/1.1 (except CONNECT), a Host of valid bytes
// (httpguts.ValidHostHeader), and valid field names and values. The
// exported ReadRequest deletes the Host field from the map, so the Host
// lines come from the raw view, which splits and folds lines as
// net/textproto does.
func serverChecks(req *http.Request, raw *rawHead) error {
	h2 := req.ProtoMajor == 2 && req.ProtoMinor == 0 && req.Method == "PRI" && req.RequestURI == "*"
	if req.ProtoMajor != 1 && !h2 {
		return errors.New("505 unsupported protocol version")
	}
	hosts := raw.values("Host")
	if req.ProtoAtLeast(1, 1) && len(hosts) == 0 && !(h2 && len(req.Header) == 0) && req.Method != "CONNECT" {
		return errors.New("missing required Host header")
	}
	if len(hosts) == 1 && !validHostBytes(hosts[0]) {
		return errors.New("malformed Host header")
	}
	for k, vv := range req.Header {
		if k == "" || bytes.ContainsFunc([]byte(k), func(r rune) bool { return r >= 0x80 || !isTchar(byte(r)) }) {
			return errors.New("invalid header name")
		}
		for _, v := range vv {
			if bytes.ContainsFunc([]byte(v), func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
				return errors.New("invalid header value")
			}
		}
	}
	return nil
}

// validHostBytes is the byte set httpguts.ValidHostHeader allows: the
// characters of RFC 3986 uri-host and port, in any order.
func validHostBytes(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if chars[c]&(cRegName) == 0 && c != '%' && c != ':' && c != '[' && c != ']' || c >= 0x80 {
			return false
		}
	}
	return true
}
