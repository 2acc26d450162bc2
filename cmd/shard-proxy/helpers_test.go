package main

import (
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
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
func waitLog(t *testing.T, l *testutil.Log, msg string, stop <-chan struct{}, timeout time.Duration) map[string]any {
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
	logs   *testutil.Log
	done   chan struct{} // closed when the process has exited and been waited for
	data   string        // host:port of the data plane
	admin  string        // host:port of the admin plane
	client *http.Client
	scheme string // of the admin plane: http or https
}

// startProxy runs the binary with args on loopback ports chosen by the
// kernel, reads the real addresses from the startup log line and waits until
// /readyz answers 200. The process is killed when the test ends, if it has
// not exited by then.
func startProxy(t *testing.T, args ...string) *proxyProc {
	t.Helper()
	return startProxyAdmin(t, testutil.Client(t), "http", args...)
}

// startProxyAdmin is startProxy for an admin plane reached with client at
// scheme (https when it serves TLS).
func startProxyAdmin(t *testing.T, client *http.Client, scheme string, args ...string) *proxyProc {
	t.Helper()
	all := append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(proxyBinary(t), all...)
	cmd.Env = testutil.ChildEnv()
	p := &proxyProc{
		cmd:    cmd,
		logs:   testutil.NewLog(),
		done:   make(chan struct{}),
		client: client,
		scheme: scheme,
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
func (p *proxyProc) adminURL(path string) string { return p.scheme + "://" + p.admin + path }

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

// send sends a request through the data plane. key, if not empty, is the
// X-Shard-Key header.
func (p *proxyProc) send(t *testing.T, method, path, key string, body []byte) testutil.Answer {
	t.Helper()
	req := testutil.NewRequest(t, method, p.dataURL(path), body)
	if key != "" {
		req.Header.Set("X-Shard-Key", key)
	}
	return testutil.Do(t, p.client, req)
}

// adminGet gets path from the admin plane.
func (p *proxyProc) adminGet(t *testing.T, path string) testutil.Answer {
	t.Helper()
	return testutil.Do(t, p.client, testutil.NewRequest(t, http.MethodGet, p.adminURL(path), nil))
}

// shardList is the --shards value for shards, in order.
func shardList(shards []*testutil.Shard) string {
	var urls []string
	for _, s := range shards {
		urls = append(urls, s.URL)
	}
	return strings.Join(urls, ",")
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
