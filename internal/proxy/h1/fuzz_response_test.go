package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

// FuzzResponseDifferential reads the same bytes with Response.Parse plus
// our body framing, and with http.ReadResponse plus io.ReadAll of the
// body. The first byte picks the request method ('H': HEAD, else GET).
// Both must accept or reject, except for the classes in classes_test.go;
// when both accept they must agree on status, version, fields, framing,
// body and where the message ends.
//
// A close-delimited body runs to the end of the input on both sides; a
// 101 answer ends at its head on both sides (we report FramingTunnel).
func FuzzResponseDifferential(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		method := "GET"
		if data[0] == 'H' {
			method = "HEAD"
		}
		data = data[1:]
		var r Response
		checkPrefixes(t, data, r.Parse)
		ours, n := ourResponse(data, method)
		theirs, resp := goResponse(data, method)
		c := &diffCtx{raw: splitHead(data), version: [2]int{-1, -1}}
		if resp != nil {
			c.status, c.version = resp.StatusCode, [2]int{resp.ProtoMajor, resp.ProtoMinor}
		}
		if n > 0 {
			c.body = data[n:]
			c.chunks = walkChunks(c.body)
		}
		switch {
		case ours.err == nil && theirs.err == nil:
			normalizeHeaders(&ours, &theirs, true)
			compareOutcomes(t, data, ours, theirs)
		case ours.err != nil && theirs.err == nil:
			if findClass(responseRejects, c, ours.err) == nil {
				t.Fatalf("%s %q: we reject (%v), net/http accepts, and no class allows it", method, data, ours.err)
			}
		case ours.err == nil && theirs.err != nil:
			if findClass(responseAccepts, c, nil) == nil {
				t.Fatalf("%s %q: we accept, net/http rejects (%v), and no class allows it", method, data, theirs.err)
			}
		}
	})
}

func ourResponse(data []byte, method string) (outcome, int) {
	var r Response
	n, err := r.Parse(data)
	if err != nil {
		return outcome{err: err}, 0
	}
	fr := r.Framing([]byte(method))
	body, bn, err := readOurBody(fr, r.ContentLength, data[n:])
	if err != nil {
		return outcome{err: err}, n
	}
	o := outcome{
		status: r.Status, minor: r.Minor, header: lowerFields(r.Fields), body: body,
		chunked:  r.Flags.Has(FlagChunked),
		close:    fr == FramingClose || r.Flags.Has(FlagConnClose) || r.Minor == 0 && !r.Flags.Has(FlagConnKeepAlive),
		consumed: n + bn,
	}
	// net/http's ContentLength: the declared length to HEAD, 0 when no
	// body is allowed, -1 for chunked or close-delimited.
	switch {
	case method == "HEAD":
		o.cl = r.ContentLength
	case fr == FramingNone || fr == FramingTunnel:
		o.cl = 0
	case fr == FramingLength:
		o.cl = r.ContentLength
	default:
		o.cl = -1
	}
	return o, n
}

func goResponse(data []byte, method string) (outcome, *http.Response) {
	rd := bytes.NewReader(data)
	br := bufio.NewReader(rd)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return outcome{err: err}, nil
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return outcome{err: err}, resp
	}
	return outcome{
		status: resp.StatusCode, minor: resp.ProtoMinor, header: lowerHeader(resp.Header), body: body,
		cl: resp.ContentLength, chunked: len(resp.TransferEncoding) > 0, close: resp.Close,
		consumed: len(data) - rd.Len() - br.Buffered(),
	}, resp
}
