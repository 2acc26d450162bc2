package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proctest"
)

// Deadlines of the acceptance tests. They bound waits on conditions; a
// passing run meets each condition in milliseconds.
const (
	startTimeout = 15 * time.Second // process start to "shard-proxy starting"
	waitTimeout  = 5 * time.Second  // any other condition
)

// eventually checks cond every 10ms until it holds, failing the test after
// timeout. what describes the condition for the failure message.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLog returns the first JSON log line whose msg is msg, failing the
// test when stop is closed first (the process exited) or timeout passes.
func waitLog(t *testing.T, l *proctest.Log, msg string, stop <-chan struct{}, timeout time.Duration) map[string]any {
	t.Helper()
	rec, err := l.Wait(msg, stop, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// proxyProc is a shard-proxy process started by a test.
type proxyProc struct {
	cmd    *exec.Cmd
	logs   *proctest.Log
	done   chan struct{} // closed when the process has exited and been waited for
	data   string        // host:port of the data plane
	admin  string        // host:port of the admin plane
	client *http.Client
}

// startProxy runs the binary with args on loopback ports chosen by the
// kernel, reads the real addresses from the startup log line and waits until
// /readyz answers 200. The process is killed when the test ends, if it has
// not exited by then.
func startProxy(t *testing.T, args ...string) *proxyProc {
	t.Helper()
	all := append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(proxyBinary(t), all...)
	cmd.Env = childEnv()
	p := &proxyProc{
		cmd:  cmd,
		logs: proctest.NewLog(),
		done: make(chan struct{}),
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{DisableCompression: true},
		},
	}
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting shard-proxy: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		p.client.CloseIdleConnections()
		logs := p.logs.String()
		if strings.Contains(logs, "WARNING: DATA RACE") {
			t.Errorf("the proxy reported a data race:\n%s", logs)
		} else if t.Failed() {
			t.Logf("shard-proxy %s\nstderr:\n%s", strings.Join(all, " "), logs)
		}
	})
	rec := waitLog(t, p.logs, "shard-proxy starting", p.done, startTimeout)
	var ok1, ok2 bool
	p.data, ok1 = rec["listen"].(string)
	p.admin, ok2 = rec["admin_listen"].(string)
	if !ok1 || !ok2 {
		t.Fatalf("startup log line has no listen or admin_listen address: %v", rec)
	}
	eventually(t, waitTimeout, "/readyz answers 200", func() bool {
		resp, err := p.client.Get(p.adminURL("/readyz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// childEnv is the test's environment without SHARD_PROXY_* variables, so
// that only the arguments configure the process. A race-enabled binary by
// default lives on for a second after it exits, with its goroutines still
// running, which would let a request finish that the proxy abandoned:
// atexit_sleep_ms=0 makes exit immediate.
func childEnv() []string {
	var env []string
	gorace := "atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "SHARD_PROXY_"):
		case strings.HasPrefix(kv, "GORACE="):
			gorace = strings.TrimPrefix(kv, "GORACE=") + " " + gorace
		default:
			env = append(env, kv)
		}
	}
	return append(env, "GORACE="+gorace)
}

// kill kills the process unless it has exited, and waits for it.
func (p *proxyProc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proxyProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proxyProc) dataURL(path string) string  { return "http://" + p.data + path }
func (p *proxyProc) adminURL(path string) string { return "http://" + p.admin + path }

// signal sends sig to the process.
func (p *proxyProc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v to shard-proxy: %v", sig, err)
	}
}

// waitExit waits for the process to exit and returns its exit status.
func (p *proxyProc) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("shard-proxy still running %v after it was told to stop", timeout)
		return -1
	}
}

// answer is a response read in full.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// send sends a request through the data plane. key, if not empty, is the
// X-Shard-Key header.
func (p *proxyProc) send(t *testing.T, method, path, key string, body []byte) answer {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, p.dataURL(path), r)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-Shard-Key", key)
	}
	return p.do(t, req)
}

// adminGet gets path from the admin plane.
func (p *proxyProc) adminGet(t *testing.T, path string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.adminURL(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p.do(t, req)
}

func (p *proxyProc) do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// decodeJSON checks that a is JSON and decodes it into v.
func decodeJSON(t *testing.T, a answer, v any) {
	t.Helper()
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json (body %q)", ct, a.body)
	}
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("body %q is not the JSON expected: %v", a.body, err)
	}
}

// received is one request as a test shard saw it.
type received struct {
	key  string // X-Shard-Key
	path string
	body string
}

// testShard is a real HTTP server standing in for one shard. It answers with
// its name and records what it received. A request for /slow announces
// itself on arrived and is held until the test calls release (or the client
// goes away).
type testShard struct {
	name    string
	srv     *httptest.Server
	arrived chan received

	mu          sync.Mutex
	got         []received
	release     chan struct{}
	releaseOnce sync.Once
}

// startShards starts n test shards named shard-0… and stops them when the
// test ends.
func startShards(t *testing.T, n int) []*testShard {
	t.Helper()
	shards := make([]*testShard, n)
	for i := range shards {
		s := &testShard{
			name:    fmt.Sprintf("shard-%d", i),
			arrived: make(chan received, 16),
			release: make(chan struct{}),
		}
		s.srv = httptest.NewServer(s)
		shards[i] = s
		t.Cleanup(func() {
			s.releaseAll()
			s.srv.Close()
		})
	}
	return shards
}

func (s *testShard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc := received{key: r.Header.Get("X-Shard-Key"), path: r.URL.Path, body: string(body)}
	s.mu.Lock()
	s.got = append(s.got, rc)
	s.mu.Unlock()
	if r.URL.Path == "/slow" {
		select {
		case s.arrived <- rc:
		default:
		}
		select {
		case <-s.release:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, s.name)
}

// releaseAll lets every held /slow request finish.
func (s *testShard) releaseAll() { s.releaseOnce.Do(func() { close(s.release) }) }

// keys returns the X-Shard-Key of every request received so far.
func (s *testShard) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for _, r := range s.got {
		keys = append(keys, r.key)
	}
	return keys
}

// requests returns every request received so far.
func (s *testShard) requests() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

// shardList is the --shards value for shards, in order.
func shardList(shards []*testShard) string {
	var urls []string
	for _, s := range shards {
		urls = append(urls, s.srv.URL)
	}
	return strings.Join(urls, ",")
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// refused reports whether a new TCP connection to addr is refused.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
