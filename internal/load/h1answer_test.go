package load

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestH1AnswerRead reads answers of every framing, whole and one byte at
// a time: the status, the X-Shard field and whether the connection stays
// open come out right, the body is consumed up to the next answer (a
// second answer after each kept connection is read too), and what the
// proxy's parsers reject is a protocol error.
func TestH1AnswerRead(t *testing.T) {
	const next = "HTTP/1.1 202 Accepted\r\nX-Shard: web-9\r\nContent-Length: 0\r\n\r\n"
	cases := []struct {
		name, raw string
		head      bool
		status    int
		shard     string
		keep      bool
		kind      string // the error's kind; "" for none
	}{
		{name: "length", raw: "HTTP/1.1 200 OK\r\nx-shard: web-1\r\nContent-Length: 5\r\n\r\nhello", status: 200, shard: "web-1", keep: true},
		{name: "chunked with trailer", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Shard: web-2\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", status: 200, shard: "web-2", keep: true},
		{name: "interim then final", raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nX-Shard: web-3\r\nContent-Length: 0\r\n\r\n", status: 201, shard: "web-3", keep: true},
		{name: "HEAD has no body", raw: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", head: true, status: 200, keep: true},
		{name: "204", raw: "HTTP/1.1 204 No Content\r\nX-Shard: web-4\r\n\r\n", status: 204, shard: "web-4", keep: true},
		{name: "connection close", raw: "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno", status: 503, keep: false},
		{name: "HTTP/1.0", raw: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, keep: false},
		{name: "until close", raw: "HTTP/1.1 200 OK\r\nX-Shard: web-5\r\n\r\nthe rest of the stream", status: 200, shard: "web-5", keep: false},
		{name: "length and chunked", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", kind: "protocol"},
		{name: "bad chunk size", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", kind: "protocol"},
		{name: "bare LF", raw: "HTTP/1.1 200 OK\nContent-Length: 0\n\n", kind: "protocol"},
		{name: "101", raw: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", kind: "protocol"},
		{name: "short body", raw: "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhalf", kind: "read"},
		{name: "cut head", raw: "HTTP/1.1 200 OK\r\nContent-Len", kind: "read"},
		{name: "head over 16 KiB", raw: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 17<<10) + "\r\n\r\n", kind: "protocol"},
	}
	for _, c := range cases {
		for _, oneByte := range []bool{false, true} {
			raw := c.raw
			if c.keep && c.kind == "" {
				raw += next
			}
			var rd io.Reader = strings.NewReader(raw)
			if oneByte {
				rd = iotest.OneByteReader(rd)
			}
			br := bufio.NewReaderSize(rd, 16<<10)
			var a h1Answer
			err := a.read(br, c.head)
			if c.kind != "" {
				var oe *opError
				if !errors.As(err, &oe) || oe.kind != c.kind {
					t.Errorf("%s (one byte %v): error %v, want kind %s", c.name, oneByte, err, c.kind)
				}
				continue
			}
			if err != nil || a.status != c.status || string(a.shard) != c.shard || a.keep != c.keep {
				t.Errorf("%s (one byte %v): err %v, status %d, shard %q, keep %v; want %d %q %v",
					c.name, oneByte, err, a.status, a.shard, a.keep, c.status, c.shard, c.keep)
				continue
			}
			if !c.keep {
				continue
			}
			if err := a.read(br, false); err != nil || a.status != 202 || string(a.shard) != "web-9" {
				t.Errorf("%s (one byte %v): the next answer: err %v, status %d, shard %q", c.name, oneByte, err, a.status, a.shard)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("%s (one byte %v): bytes left after the next answer", c.name, oneByte)
			}
		}
	}
}

// TestH1AnswerNoAnswer: a connection closed before any byte of the
// answer is errNoAnswer (the keep-alive race Do retries), and one closed
// within the answer is not.
func TestH1AnswerNoAnswer(t *testing.T) {
	var a h1Answer
	if err := a.read(bufio.NewReader(strings.NewReader("")), false); !errors.Is(err, errNoAnswer) {
		t.Errorf("nothing at all: %v, want errNoAnswer", err)
	}
	err := a.read(bufio.NewReader(strings.NewReader("HTTP/1.1 100 Continue\r\n\r\n")), false)
	if err == nil || errors.Is(err, errNoAnswer) {
		t.Errorf("closed after an interim answer: %v, want a read error", err)
	}
}

// TestH1AnswerAllocations: reading an answer allocates nothing once the
// reader is warm (its Fields and the shard buffer keep their capacity).
func TestH1AnswerAllocations(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\nX-Shard: web-1\r\nDate: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
	sr := strings.NewReader(raw)
	br := bufio.NewReaderSize(sr, 16<<10)
	var a h1Answer
	n := testing.AllocsPerRun(100, func() {
		sr.Reset(raw)
		br.Reset(sr)
		if err := a.read(br, false); err != nil || string(a.shard) != "web-1" {
			t.Fatalf("err %v, shard %q", err, a.shard)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per answer, want 0", n)
	}
}

// BenchmarkH1AnswerRead reads a typical shard answer (nginx's head, a
// short body) from a warm reader.
func BenchmarkH1AnswerRead(b *testing.B) {
	raw := "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 07 Dec 2026 22:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\nX-Shard: web-1\r\n\r\nok"
	sr := strings.NewReader(raw)
	br := bufio.NewReaderSize(sr, 16<<10)
	var a h1Answer
	b.ReportAllocs()
	for b.Loop() {
		sr.Reset(raw)
		br.Reset(sr)
		if err := a.read(br, false); err != nil {
			b.Fatal(err)
		}
	}
}
