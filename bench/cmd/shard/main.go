// Command shard is the shard of "run.sh memory": one process serving the
// same handlers on several loopback ports, each answer naming its port in
// X-Backend (as the nginx shards of the side-by-side runs do), so the
// sanity check can tell which shard answered.
//
//	GET  /                                      "ok"
//	GET  /stream?chunks=10&gap=200ms&size=64    chunked body, one chunk every gap
//	GET  /sse?events=10&gap=200ms               text/event-stream, one event every gap
//	GET  /download?bytes=N                      N bytes with Content-Length
//	POST /upload                                reads and discards the body; "received N"
//	GET  /huge-cl?bytes=68719476736&send=65536&stall=3s
//	                                            declares Content-Length bytes, sends send
//	                                            bytes, stalls, then closes the connection
//	GET  /hang?for=5s                           "ok" after a while
//	GET  /_stall?mode=slow&delay=5s             from now on, this port answers every request
//	                                            (but /_stall) after delay: a slow shard
//	GET  /_stall?mode=blackhole                 this port reads every request and never
//	                                            answers; a request it holds is closed
//	                                            unanswered when the mode changes
//	GET  /_stall?mode=off                       back to normal
//
// /_stall acts on its own port only, so memload can stall one shard of
// four; the other ports go on answering at once.
//
// Every handler takes any method; the proxies decide nothing by it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081,127.0.0.1:18082,127.0.0.1:18083,127.0.0.1:18084",
		"comma-separated addresses, one shard each")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("shard: ")

	for _, addr := range strings.Split(*listen, ",") {
		addr = strings.TrimSpace(addr)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(addr)
		srv := &http.Server{
			Handler:           handler(port),
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       10 * time.Minute,
			ErrorLog:          log.New(io.Discard, "", 0),
		}
		go func() {
			if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
				log.Fatal(err)
			}
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}

// fill is what download and huge-cl bodies are made of.
var fill = func() []byte {
	b := make([]byte, 256<<10)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}()

func handler(port string) http.Handler {
	st := &stall{changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/", small)
	mux.HandleFunc("/stream", stream)
	mux.HandleFunc("/sse", sse)
	mux.HandleFunc("/download", download)
	mux.HandleFunc("/upload", upload)
	mux.HandleFunc("/huge-cl", func(w http.ResponseWriter, r *http.Request) { hugeCL(w, r, port) })
	mux.HandleFunc("/hang", hang)
	mux.HandleFunc("/_stall", st.set)
	return backendHeader(port, st.wrap(mux))
}

// stall is what /_stall set on one port: off, a slow shard or a black hole.
type stall struct {
	mu      sync.Mutex
	mode    string
	delay   time.Duration
	changed chan struct{} // closed (and replaced) when the mode changes
}

func (s *stall) set(w http.ResponseWriter, r *http.Request) {
	mode := r.URL.Query().Get("mode")
	switch mode {
	case "off", "slow", "blackhole":
	default:
		http.Error(w, "mode: want off, slow or blackhole", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.mode, s.delay = mode, durArg(r, "delay", 5*time.Second)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	fmt.Fprintf(w, "mode %s\n", mode)
}

func (s *stall) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_stall" {
			h.ServeHTTP(w, r)
			return
		}
		s.mu.Lock()
		mode, delay, changed := s.mode, s.delay, s.changed
		s.mu.Unlock()
		switch mode {
		case "slow":
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		case "blackhole":
			// Read, never write: wait for the proxy to give up or for
			// the mode to change, then close without a byte.
			select {
			case <-changed:
			case <-r.Context().Done():
			}
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hang: holds the request ?for= long (or until the client leaves), then
// "ok": a shard that thinks.
func hang(w http.ResponseWriter, r *http.Request) {
	select {
	case <-time.After(durArg(r, "for", 5*time.Second)):
	case <-r.Context().Done():
		return
	}
	small(w, r)
}

// small: "ok".
func small(w http.ResponseWriter, r *http.Request) {
	// A small request may carry a body; drain it so the connection is
	// kept alive.
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", "2")
	io.WriteString(w, "ok")
}

// stream: ?chunks= chunks of ?size= bytes, ?gap= apart, each flushed.
func stream(w http.ResponseWriter, r *http.Request) {
	n, gap, size := intArg(r, "chunks", 10), durArg(r, "gap", 200*time.Millisecond), intArg(r, "size", 64)
	w.Header().Set("Content-Type", "text/plain")
	chunk := make([]byte, max(size, 8))
	for i := range chunk {
		chunk[i] = 'x'
	}
	chunk[len(chunk)-1] = '\n'
	for i := 0; i < n; i++ {
		if i > 0 {
			time.Sleep(gap)
		}
		copy(chunk, fmt.Sprintf("%06d ", i))
		if _, err := w.Write(chunk); err != nil {
			return
		}
		// No Content-Length and a flush: net/http sends each write
		// as one chunk of a chunked body.
		http.NewResponseController(w).Flush()
	}
}

// sse: ?events= server-sent events, ?gap= apart.
func sse(w http.ResponseWriter, r *http.Request) {
	n, gap := intArg(r, "events", 10), durArg(r, "gap", 200*time.Millisecond)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	for i := 0; i < n; i++ {
		if i > 0 {
			time.Sleep(gap)
		}
		if _, err := fmt.Fprintf(w, "id: %d\nevent: tick\ndata: {\"seq\":%d}\n\n", i, i); err != nil {
			return
		}
		http.NewResponseController(w).Flush()
	}
}

// download: ?bytes= bytes with Content-Length.
func download(w http.ResponseWriter, r *http.Request) {
	n := int64Arg(r, "bytes", 64<<20)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	writeN(w, n)
}

// upload reads the body and answers how much it got (X-Received).
func upload(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		// The proxy gave up on the body; nothing sensible to answer.
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Received", strconv.FormatInt(n, 10))
	fmt.Fprintf(w, "received %d\n", n)
}

// hugeCL declares Content-Length: ?bytes=, sends ?send= bytes, stalls
// ?stall= and closes.
func hugeCL(w http.ResponseWriter, r *http.Request, port string) {
	declared := int64Arg(r, "bytes", 64<<30)
	send := int64Arg(r, "send", 64<<10)
	stall := durArg(r, "stall", 3*time.Second)
	// Hijack: net/http would refuse to write less than it declared
	// and would not let a handler close mid-body on its own terms.
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nX-Backend: %s\r\n\r\n", declared, port)
	writeN(buf, min(send, declared))
	buf.Flush()
	time.Sleep(stall)
}

func backendHeader(port string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", port)
		h.ServeHTTP(w, r)
	})
}

func writeN(w io.Writer, n int64) {
	for n > 0 {
		k := min(n, int64(len(fill)))
		if _, err := w.Write(fill[:k]); err != nil {
			return
		}
		n -= k
	}
	if bw, ok := w.(*bufio.ReadWriter); ok {
		bw.Flush()
	}
}

func intArg(r *http.Request, name string, def int) int {
	return int(int64Arg(r, name, int64(def)))
}

func int64Arg(r *http.Request, name string, def int64) int64 {
	if v, err := strconv.ParseInt(r.URL.Query().Get(name), 10, 64); err == nil && v >= 0 {
		return v
	}
	return def
}

func durArg(r *http.Request, name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(r.URL.Query().Get(name)); err == nil && v >= 0 {
		return v
	}
	return def
}
