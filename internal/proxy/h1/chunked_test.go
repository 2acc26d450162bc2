package h1

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// decodeChunked feeds in to c in pieces of step bytes (0: whole) and
// returns the payload, the bytes consumed up to done, and the error.
func decodeChunked(c *Chunked, in []byte, step int) (body []byte, n int, done bool, err error) {
	for n < len(in) {
		end := len(in)
		if step > 0 {
			end = min(n+step, len(in))
		}
		p := in[n:end]
		for len(p) > 0 {
			k, data, d, err := c.Next(p)
			body = append(body, data...)
			n += k
			p = p[k:]
			if err != nil || d {
				return body, n, d, err
			}
		}
	}
	return body, n, false, nil
}

type chunkCase struct {
	name string
	in   string
	body string
	err  error // nil: complete and valid
}

var chunkCases = []chunkCase{
	{name: "empty body", in: "0\r\n\r\n", body: ""},
	{name: "one chunk", in: "5\r\nhello\r\n0\r\n\r\n", body: "hello"},
	{name: "several chunks, hex case", in: "a\r\n0123456789\r\nA\r\nabcdefghij\r\n1\r\n!\r\n0\r\n\r\n", body: "0123456789abcdefghij!"},
	{name: "leading zeros", in: "0005\r\nhello\r\n000\r\n\r\n", body: "hello"},
	{name: "sixteen digits", in: "0000000000000005\r\nhello\r\n0\r\n\r\n", body: "hello"},
	{name: "CRLF inside data", in: "4\r\n\r\n\r\n\r\n0\r\n\r\n", body: "\r\n\r\n"},
	{name: "extension", in: "5;a\r\nhello\r\n0;last\r\n\r\n", body: "hello"},
	{name: "extension values", in: "5;a=b;c=\"d;e\\\"f\"\r\nhello\r\n0\r\n\r\n", body: "hello"},
	{name: "BWS in extensions", in: "5 \t; a = b ;c\t=\t\"x\" ; d\r\nhello\r\n0\r\n\r\n", body: "hello"},
	{name: "trailers", in: "5\r\nhello\r\n0\r\nX-Sum: abc\r\nExpires:\r\nX-O: caf\xe9\r\n\r\n", body: "hello"},
	// Rejections.
	{name: "empty size", in: "\r\nhello\r\n", err: errChunkSize},
	{name: "leading space", in: " 5\r\nhello\r\n", err: errChunkSize},
	{name: "0x prefix", in: "0x5\r\nhello\r\n", err: errChunkSize},
	{name: "sign", in: "+5\r\nhello\r\n", err: errChunkSize},
	{name: "non-hex digit", in: "5g\r\nhello\r\n", err: errChunkSize},
	{name: "trailing space", in: "5 \r\nhello\r\n", err: errChunkExt},
	{name: "bare LF after size", in: "5\nhello\r\n", err: errBareLF},
	{name: "bare CR after size", in: "5\rhello\r\n", err: errBareCR},
	{name: "seventeen digits", in: "00000000000000005\r\nhello\r\n", err: errChunkSizeLong},
	{name: "size overflow", in: "8000000000000000\r\n", err: errChunkSizeLong},
	{name: "empty extension", in: "5;\r\nhello\r\n", err: errChunkExt},
	{name: "extension without name", in: "5;=x\r\nhello\r\n", err: errChunkExt},
	{name: "extension without value", in: "5;a=\r\nhello\r\n", err: errChunkExt},
	{name: "extension trailing space", in: "5;a \r\nhello\r\n", err: errChunkExt},
	{name: "extension space in name", in: "5;a b\r\nhello\r\n", err: errChunkExt},
	{name: "extension unterminated quote", in: "5;a=\"x\r\nhello\r\n", err: errChunkExt},
	{name: "extension bad byte", in: "5;a=b\x00\r\nhello\r\n", err: errChunkExt},
	{name: "extension bare LF", in: "5;a=b\nhello\r\n", err: errBareLF},
	{name: "data too long", in: "5\r\nhelloX\r\n", err: errChunkDataEnd},
	{name: "bare LF after data", in: "5\r\nhello\n0\r\n\r\n", err: errChunkDataEnd},
	{name: "missing CRLF before last chunk", in: "5\r\nhello0\r\n\r\n", err: errChunkDataEnd},
	{name: "bare LF ends body", in: "0\r\n\n", err: errBareLF},
	{name: "bare CR ends body", in: "0\r\n\rX", err: errBareCR},
	{name: "trailer obs-fold", in: "0\r\nX: a\r\n b\r\n\r\n", err: errObsFold},
	{name: "trailer bare LF", in: "0\r\nX: a\n\r\n", err: errBareLF},
	{name: "trailer space before colon", in: "0\r\nX : a\r\n\r\n", err: errSpaceBeforeColon},
	{name: "trailer without colon", in: "0\r\nX\r\n\r\n", err: errNoColon},
	{name: "trailer empty name", in: "0\r\n: a\r\n\r\n", err: errEmptyName},
	{name: "trailer NUL", in: "0\r\nX: a\x00\r\n\r\n", err: errFieldValueByte},
	{name: "size line too long", in: "5;a=\"" + strings.Repeat("x", MaxChunkLine) + "\"\r\n", err: errChunkLineLong},
	{name: "trailer too large", in: "0\r\n" + strings.Repeat("X: "+strings.Repeat("y", 1000)+"\r\n", 17) + "\r\n", err: errTrailerTooLarge},
}

func TestChunked(t *testing.T) {
	for _, tc := range chunkCases {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in + "NEXT")
			// Whole, byte by byte, and sizes that cut lines everywhere.
			for _, step := range []int{0, 1, 2, 3, 4, 5, 7, 11, 64, len(in) - 1} {
				var c Chunked
				body, n, done, err := decodeChunked(&c, in, step)
				if err != tc.err {
					t.Fatalf("step %d: got err %v, want %v", step, err, tc.err)
				}
				if tc.err != nil {
					if !errors.Is(err, ErrMalformed) {
						t.Fatalf("errors.Is(%v, ErrMalformed) is false", err)
					}
					if _, _, _, again := c.Next([]byte("0\r\n\r\n")); again != err {
						t.Fatalf("error not sticky: got %v after %v", again, err)
					}
					continue
				}
				if !done || n != len(tc.in) || string(body) != tc.body {
					t.Fatalf("step %d: got done=%t n=%d body=%q, want done n=%d body=%q", step, done, n, body, len(tc.in), tc.body)
				}
			}
		})
	}
}

// TestChunkedEverySplit feeds each valid body in two pieces cut at every
// position, and checks that consumed bytes are exactly the message.
func TestChunkedEverySplit(t *testing.T) {
	for _, tc := range chunkCases {
		if tc.err != nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			for cut := 0; cut <= len(in); cut++ {
				var c Chunked
				var body, raw []byte
				done := false
				for _, p := range [][]byte{in[:cut], in[cut:]} {
					for len(p) > 0 && !done {
						n, data, d, err := c.Next(p)
						if err != nil {
							t.Fatalf("cut %d: %v", cut, err)
						}
						if len(data) > 0 && !bytes.HasSuffix(p[:n], data) {
							t.Fatalf("cut %d: data %q is not the end of the consumed bytes %q", cut, data, p[:n])
						}
						body, raw, done, p = append(body, data...), append(raw, p[:n]...), d, p[n:]
					}
				}
				if !done || string(body) != tc.body || !bytes.Equal(raw, in) {
					t.Fatalf("cut %d: got done=%t body=%q raw=%q", cut, done, body, raw)
				}
			}
		})
	}
}

func TestChunkedIncompleteAndReset(t *testing.T) {
	var c Chunked
	in := []byte("5\r\nhel")
	body, n, done, err := decodeChunked(&c, in, 0)
	if err != nil || done || n != len(in) || string(body) != "hel" {
		t.Fatalf("partial: got body=%q n=%d done=%t err=%v", body, n, done, err)
	}
	if n, data, done, err := c.Next(nil); n != 0 || data != nil || done || err != nil {
		t.Fatalf("Next(nil): got %d %q %t %v", n, data, done, err)
	}
	c.Reset()
	body, _, done, err = decodeChunked(&c, []byte("2\r\nok\r\n0\r\n\r\n"), 1)
	if err != nil || !done || string(body) != "ok" {
		t.Fatalf("after Reset: got body=%q done=%t err=%v", body, done, err)
	}
	if n, _, done, err := c.Next([]byte("more")); n != 0 || !done || err != nil {
		t.Fatalf("after done: got n=%d done=%t err=%v, want 0 true nil", n, done, err)
	}
}
