package load

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
)

// maxInterim bounds the 1xx answers before the final one.
const maxInterim = 16

// h1Answer reads HTTP/1.1 answers with the proxy's own parsers
// (internal/proxy/h1: the head parsed in place in the connection's read
// buffer, the chunked scanner), so the load generator holds shards and
// proxies to the same framing rules as shard-proxy does. A head must fit
// the read buffer (16 KiB); nothing is allocated per answer once warm.
type h1Answer struct {
	resp    h1.Response // reused: its Fields keep their capacity
	chunked h1.Chunked
	status  int
	shard   []byte // the X-Shard field, copied out of the buffer
	keep    bool   // the connection may carry the next request
}

// read reads one whole answer from br, skipping interim (1xx) answers, and
// discards its body. head is true for an answer to HEAD, which has none.
func (a *h1Answer) read(br *bufio.Reader, head bool) error {
	method := []byte("GET")
	if head {
		method = []byte("HEAD")
	}
	for i := 0; ; i++ {
		if err := a.readHead(br, i == 0); err != nil {
			return err
		}
		if !a.resp.Informational() {
			break
		}
		if i == maxInterim {
			return protocolError("more than %d interim answers", maxInterim)
		}
	}
	a.status = a.resp.Status
	// HTTP/1.1 connections persist unless told otherwise; HTTP/1.0 ones
	// are closed here (their keep-alive is not worth the complication).
	a.keep = a.resp.Minor == 1 && !a.resp.Flags.Has(h1.FlagConnClose)
	switch a.resp.Framing(method) {
	case h1.FramingNone:
		return nil
	case h1.FramingLength:
		_, err := br.Discard(int(a.resp.ContentLength))
		return readError(err)
	case h1.FramingChunked:
		return a.discardChunked(br)
	case h1.FramingTunnel:
		return protocolError("unexpected %d answer", a.status)
	}
	// Until close: the body runs to the end of the connection, which
	// cannot be reused.
	a.keep = false
	_, err := io.Copy(io.Discard, br)
	return readError(err)
}

// readHead parses the next head in br's buffer, reading until it is whole,
// then takes the X-Shard field out and drops the head from the buffer.
// first: no byte of this exchange's answer came yet, so a connection
// closed now is errNoAnswer (a keep-alive race the caller may retry).
func (a *h1Answer) readHead(br *bufio.Reader, first bool) error {
	for {
		buf, _ := br.Peek(br.Buffered())
		n, err := a.resp.Parse(buf)
		switch {
		case err == nil:
			a.takeShard()
			_, err = br.Discard(n)
			return err
		case !errors.Is(err, h1.ErrIncomplete):
			return &opError{kind: "protocol", err: err}
		case len(buf) == br.Size():
			return protocolError("an answer's head is longer than %d KiB", br.Size()>>10)
		}
		// One more read: Peek waits for a byte beyond those buffered.
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if first && len(buf) == 0 && (errors.Is(err, io.EOF) || isReset(err)) {
				return errNoAnswer
			}
			return readError(err)
		}
	}
}

// takeShard copies the X-Shard field's value (the last one) into a.shard.
func (a *h1Answer) takeShard() {
	a.shard = a.shard[:0]
	for i := range a.resp.Fields {
		if f := &a.resp.Fields[i]; h1.EqualFold(f.Name, "X-Shard") {
			a.shard = append(a.shard[:0], f.Value...)
		}
	}
}

// discardChunked reads a chunked body and its trailer section, checked
// by the chunked scanner as the proxy checks a shard's.
func (a *h1Answer) discardChunked(br *bufio.Reader) error {
	a.chunked.Reset()
	for {
		p, err := br.Peek(max(br.Buffered(), 1))
		if len(p) == 0 {
			return readError(err)
		}
		n, _, done, err := a.chunked.Next(p)
		if err != nil {
			return &opError{kind: "protocol", err: err}
		}
		if _, err := br.Discard(n); err != nil {
			return readError(err)
		}
		if done {
			return nil
		}
	}
}

func protocolError(format string, args ...any) error {
	return &opError{kind: "protocol", err: fmt.Errorf(format, args...)}
}

func readError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &opError{kind: kindOf(err, "read"), err: err}
}
