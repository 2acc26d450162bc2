package h1

import (
	"strings"
	"testing"
)

// benchRequest is a browser-like request: 405 bytes, 8 fields.
const benchRequest = "GET /api/v1/users/12345/profile?fields=name,email&lang=en HTTP/1.1\r\n" +
	"Host: shard-proxy.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=0123456789abcdef; theme=dark\r\n" +
	"Upgrade-Insecure-Requests: 1\r\n" +
	"\r\n"

// benchResponse is what Go's net/http writes for a small JSON answer.
const benchResponse = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: application/json\r\n" +
	"Date: Mon, 02 Jun 2025 10:00:00 GMT\r\n" +
	"Content-Length: 1234\r\n" +
	"X-Shard: shard-3\r\n" +
	"\r\n"

// benchChunked is a 64 KiB body in 4 KiB chunks, as a streaming server
// would flush it, with a trailer.
var benchChunked = strings.Repeat("1000\r\n"+strings.Repeat("x", 4096)+"\r\n", 16) + "0\r\nX-Sum: 1\r\n\r\n"

func BenchmarkParseRequest(b *testing.B) {
	buf := []byte(benchRequest)
	var r Request
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Parse(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseResponse(b *testing.B) {
	buf := []byte(benchResponse)
	var r Response
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Parse(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkChunked(b *testing.B) {
	buf := []byte(benchChunked)
	var c Chunked
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		c.Reset()
		if _, _, done, err := decodeChunkedNoAlloc(&c, buf); err != nil || !done {
			b.Fatal(done, err)
		}
	}
}
