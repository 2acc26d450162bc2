package load

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Limits of an answer's head and chunk lines. A line longer than the
// connection's read buffer (16 KiB) is refused too.
const (
	maxHeaderLines = 256
	maxInterim     = 16 // 1xx answers before the final one
)

// h1Answer is one HTTP/1.1 answer as the load generator reads it: the
// status, the X-Shard field, how the body is framed (RFC 9112 section 6),
// and whether the connection stays open.
type h1Answer struct {
	status  int
	shard   []byte
	keep    bool
	length  int64 // Content-Length, -1 when absent
	chunked bool
	started bool // a byte of the answer arrived
}

// read reads one whole answer from br, skipping interim (1xx) answers, and
// discards its body. head is true for an answer to HEAD, which has none.
func (a *h1Answer) read(br *bufio.Reader, head bool) error {
	for i := 0; ; i++ {
		if err := a.readHead(br); err != nil {
			return err
		}
		if a.status >= 200 {
			break
		}
		if a.status == 101 || i == maxInterim {
			return protocolError("unexpected %d answer", a.status)
		}
	}
	switch {
	case head || a.status == 204 || a.status == 304:
		return nil
	case a.chunked:
		return discardChunked(br)
	case a.length >= 0:
		_, err := br.Discard(int(a.length))
		return readError(err)
	}
	// Neither length nor chunks: the body runs to the end of the
	// connection, which cannot be reused.
	a.keep = false
	_, err := io.Copy(io.Discard, br)
	return readError(err)
}

// readHead reads a status line and the fields after it.
func (a *h1Answer) readHead(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 && !a.started && (errors.Is(err, io.EOF) || isReset(err)) {
			return errNoAnswer
		}
		return readError(err)
	}
	a.started = true
	if err := a.parseStatus(trimEOL(line)); err != nil {
		return err
	}
	a.shard, a.length, a.chunked = a.shard[:0], -1, false
	for n := 0; ; n++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return readError(err)
		}
		line = trimEOL(line)
		if len(line) == 0 {
			return nil
		}
		if n == maxHeaderLines {
			return protocolError("more than %d header lines", maxHeaderLines)
		}
		if err := a.field(line); err != nil {
			return err
		}
	}
}

// parseStatus parses "HTTP/1.x NNN reason".
func (a *h1Answer) parseStatus(line []byte) error {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return protocolError("malformed status line %q", clip(line))
	}
	s := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return protocolError("malformed status line %q", clip(line))
		}
		s = s*10 + int(c-'0')
	}
	if s < 100 {
		return protocolError("status %d", s)
	}
	a.status = s
	// HTTP/1.1 connections persist unless told otherwise; HTTP/1.0 ones
	// are closed here (their keep-alive is not worth the complication).
	a.keep = line[7] == '1'
	return nil
}

// field takes in one header field.
func (a *h1Answer) field(line []byte) error {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return protocolError("malformed header line %q", clip(line))
	}
	name, value := line[:i], bytes.TrimSpace(line[i+1:])
	switch {
	case bytes.EqualFold(name, []byte("X-Shard")):
		a.shard = append(a.shard[:0], value...)
	case bytes.EqualFold(name, []byte("Content-Length")):
		n, ok := parseLength(value)
		if !ok || (a.length >= 0 && a.length != n) {
			return protocolError("bad Content-Length %q", clip(value))
		}
		a.length = n
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		if !bytes.EqualFold(lastToken(value), []byte("chunked")) {
			return protocolError("Transfer-Encoding %q without chunked last", clip(value))
		}
		a.chunked = true
	case bytes.EqualFold(name, []byte("Connection")):
		if containsToken(value, "close") {
			a.keep = false
		}
	}
	if a.chunked && a.length >= 0 {
		// RFC 9112 section 6.3: chunked wins, and the connection must
		// not be reused.
		a.length, a.keep = -1, false
	}
	return nil
}

// discardChunked reads a chunked body and its trailer section.
func discardChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return readError(err)
		}
		line = trimEOL(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, ok := parseHex(bytes.TrimSpace(line))
		if !ok {
			return protocolError("malformed chunk size line %q", clip(line))
		}
		if n == 0 {
			return discardTrailers(br)
		}
		if _, err := br.Discard(int(n)); err != nil {
			return readError(err)
		}
		crlf, err := br.ReadSlice('\n')
		if err != nil {
			return readError(err)
		}
		if len(trimEOL(crlf)) != 0 {
			return protocolError("chunk not followed by CRLF")
		}
	}
}

func discardTrailers(br *bufio.Reader) error {
	for n := 0; n <= maxHeaderLines; n++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return readError(err)
		}
		if len(trimEOL(line)) == 0 {
			return nil
		}
	}
	return protocolError("more than %d trailer lines", maxHeaderLines)
}

func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | int64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case 'A' <= c && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

func lastToken(v []byte) []byte {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return bytes.TrimSpace(v)
}

func containsToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(tok)) {
			return true
		}
	}
	return false
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func protocolError(format string, args ...any) error {
	return &opError{kind: "protocol", err: fmt.Errorf(format, args...)}
}

func readError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bufio.ErrBufferFull):
		return protocolError("a line of the answer is longer than 16 KiB")
	case errors.Is(err, io.EOF):
		err = io.ErrUnexpectedEOF
	}
	return &opError{kind: kindOf(err, "read"), err: err}
}
