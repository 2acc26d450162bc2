// Command tlsidle measures what an idle TLS connection costs a proxy: it
// reads the proxy's resident memory, opens -conns TLS connections to it
// (TLS 1.3; each makes one keep-alive request with a random X-Shard-Key
// and is then left open), waits -settle, reads the memory again and
// prints one line:
//
//	TLSIDLE conns=N held=H rss_before_kib=A rss_after_kib=B per_conn_bytes=P
//
// bench/tls.sh runs it against shard-proxy and HAProxy in the same run.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18480", "the proxy's TLS address")
	pid := flag.Int("pid", 0, "the proxy's process id (its RSS is read)")
	conns := flag.Int("conns", 2000, "idle connections")
	conc := flag.Int("concurrency", 32, "connections being opened at once")
	settle := flag.Duration("settle", 2*time.Second, "wait after the last connection before reading RSS")
	seed := flag.Uint64("seed", 42, "seed of the keys")
	flag.Parse()
	if *pid <= 0 {
		fmt.Fprintln(os.Stderr, "tlsidle: -pid is required")
		os.Exit(2)
	}
	before := rss(*pid)
	var held atomic.Int64
	var mu sync.Mutex
	var open []net.Conn
	var firstErr atomic.Value
	sem := make(chan struct{}, *conc)
	var wg sync.WaitGroup
	rng := rand.New(rand.NewPCG(*seed, 0))
	for i := 0; i < *conns; i++ {
		key := rng.Uint64N(1e9) + 1e9
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := openOne(*addr, key)
			if err != nil {
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			held.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	time.Sleep(*settle)
	after := rss(*pid)
	per := 0
	if h := held.Load(); h > 0 {
		per = int((after - before) * 1024 / h)
	}
	fmt.Printf("TLSIDLE conns=%d held=%d rss_before_kib=%d rss_after_kib=%d per_conn_bytes=%d\n", *conns, held.Load(), before, after, per)
	if e := firstErr.Load(); e != nil {
		fmt.Fprintln(os.Stderr, "tlsidle: first error:", e)
	}
	for _, c := range open {
		c.Close()
	}
}

// openOne opens a TLS connection, makes one request on it and returns it
// open.
func openOne(addr string, key uint64) (net.Conn, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS13})
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nX-Shard-Key: %d\r\n\r\n", addr, key)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		c.Close()
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// rss is the process's resident set in KiB.
func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}
