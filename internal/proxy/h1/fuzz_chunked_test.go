package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http/httputil"
	"net/textproto"
	"testing"
)

// FuzzChunkedDifferential decodes the same bytes with Chunked (whole, one
// byte at a time, and three at a time, which must all agree) and with
// httputil.NewChunkedReader followed by the trailer handling of net/http's
// body reader. Both must accept or reject, except for bodyRejects and
// bodyAccepts in classes_test.go; when both accept they must agree on the
// payload and on where the body ends.
func FuzzChunkedDifferential(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		ours := ourChunked(data, 0)
		for _, step := range []int{1, 3} {
			if o := ourChunked(data, step); !errors.Is(o.err, ours.err) || !bytes.Equal(o.body, ours.body) || o.consumed != ours.consumed {
				t.Fatalf("%q: fed %d at a time: got %q %d %v, whole: %q %d %v", data, step, o.body, o.consumed, o.err, ours.body, ours.consumed, ours.err)
			}
		}
		theirs := goChunked(data)
		c := &diffCtx{body: data, chunks: walkChunks(data)}
		switch {
		case ours.err == nil && theirs.err == nil:
			if !bytes.Equal(ours.body, theirs.body) || ours.consumed != theirs.consumed {
				t.Fatalf("%q: ours %q (%d bytes), net/http %q (%d bytes)", data, ours.body, ours.consumed, theirs.body, theirs.consumed)
			}
		case ours.err != nil && theirs.err == nil:
			if findClass(bodyRejects, c, ours.err) == nil {
				t.Fatalf("%q: we reject (%v), net/http accepts, and no class allows it", data, ours.err)
			}
		case ours.err == nil && theirs.err != nil:
			if findClass(bodyAccepts, c, nil) == nil {
				t.Fatalf("%q: we accept, net/http rejects (%v), and no class allows it", data, theirs.err)
			}
		}
	})
}

func ourChunked(data []byte, step int) outcome {
	var c Chunked
	body, n, done, err := decodeChunked(&c, data, step)
	if err == nil && !done {
		err = ErrIncomplete
	}
	return outcome{err: err, body: body, consumed: n}
}

func goChunked(data []byte) outcome {
	rd := bytes.NewReader(data)
	br := bufio.NewReader(rd)
	body, err := io.ReadAll(httputil.NewChunkedReader(br))
	if err == nil {
		err = goTrailer(br)
	}
	return outcome{err: err, body: body, consumed: len(data) - rd.Len() - br.Buffered()}
}

// goTrailer does what net/http's (*body).readTrailer (transfer.go) does
// once the chunked reader has seen the last chunk: a lone CRLF ends the
// body; otherwise the trailer section must end within the read buffer and
// is read by textproto.ReadMIMEHeader.
func goTrailer(br *bufio.Reader) error {
	buf, err := br.Peek(2)
	if bytes.Equal(buf, []byte("\r\n")) {
		_, err = br.Discard(2)
		return err
	}
	if len(buf) < 2 {
		return io.ErrUnexpectedEOF
	}
	if err != nil {
		return err
	}
	for n := 4; ; n++ { // seeUpcomingDoubleCRLF
		buf, err := br.Peek(n)
		if bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
			break
		}
		if err != nil {
			return errors.New("suspiciously long trailer after chunked body")
		}
	}
	_, err = textproto.NewReader(br).ReadMIMEHeader()
	return err
}
