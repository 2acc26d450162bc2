package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// Deadlines for the proxy process. They bound waits on conditions; a
// passing run meets each in well under a second.
const (
	startTimeout = 60 * time.Second // exec to "shard-proxy starting" and /readyz 200
	stopTimeout  = 20 * time.Second // SIGTERM to exit
)

// proxyBuild builds the binary once per test binary, on first use, so that
// -short runs and skipped environments never pay for it; with -race when
// the tests run with it.
var proxyBuild = &testutil.Builder{Pkg: "../../cmd/shard-proxy"}

// proxy is one running shard-proxy process.
type proxy struct {
	name  string
	data  string // http://127.0.0.1:port of the data plane
	admin string // http://127.0.0.1:port of the admin plane
	logs  *testutil.Log

	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited
	err      error         // its exit error, valid after exited
	exitedAt time.Time     // valid after exited

	client   *http.Client // for both planes: keep-alive, bounded
	stopOnce sync.Once
}

// startProxy runs the proxy out of cluster against the StatefulSet "web" of
// namespace ns, with kubeconfig, and waits until /readyz answers 200. extra
// flags come last and win. The process gets SIGTERM when the test ends, and
// the test fails if it does not exit cleanly or the race detector spoke.
func startProxy(t *testing.T, name, kubeconfig, ns string, extra ...string) *proxy {
	t.Helper()
	p := launchProxy(t, name, kubeconfig, ns, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last error
	for {
		if last = p.readyz(ctx); last == nil {
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("proxy %s exited before it was ready: %v", name, p.err)
		case <-ctx.Done():
			t.Fatalf("proxy %s not ready after %v: %v", name, startTimeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// launchProxy is startProxy without waiting for readiness: it returns once
// the proxy has logged its addresses.
func launchProxy(t *testing.T, name, kubeconfig, ns string, extra ...string) *proxy {
	t.Helper()
	args := append([]string{
		"--kube-service", "web", "--namespace", ns, "--kubeconfig", kubeconfig, "--port", "http",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--log-format", "json", "--upstream-timeout", "2s", "--shutdown-timeout", "5s",
	}, extra...)
	p := &proxy{
		name:   name,
		logs:   testutil.NewLog(),
		exited: make(chan struct{}),
		client: testutil.Client(t),
	}
	p.cmd = exec.Command(proxyBuild.Path(t), args...)
	p.cmd.Env = testutil.ChildEnv()
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	// Pdeathsig: no proxy outlives a test binary that dies without cleanups.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting proxy %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.exitedAt = time.Now()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })

	rec := p.waitLog(t, startTimeout, "shard-proxy starting")
	listen, _ := rec["listen"].(string)
	adminListen, _ := rec["admin_listen"].(string)
	if listen == "" || adminListen == "" {
		t.Fatalf("proxy %s: start line without listen/admin_listen: %v", name, rec)
	}
	p.data, p.admin = "http://"+listen, "http://"+adminListen
	t.Logf("proxy %s: data %s, admin %s", name, p.data, p.admin)
	return p
}

// stop sends SIGTERM and checks that the proxy exits cleanly, without a
// data race; it runs at cleanup, or earlier if the test calls it.
func (p *proxy) stop(t *testing.T) {
	p.stopOnce.Do(func() { p.stopNow(t) })
}

func (p *proxy) stopNow(t *testing.T) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("proxy %s did not exit within %v of SIGTERM", p.name, stopTimeout)
	}
	p.client.CloseIdleConnections()
	if p.err != nil {
		t.Errorf("proxy %s exited with %v", p.name, p.err)
	}
	if strings.Contains(p.logs.String(), "WARNING: DATA RACE") {
		t.Errorf("proxy %s: the race detector found a data race (see its log below)", p.name)
	}
	if t.Failed() {
		t.Logf("proxy %s: last lines of its log:\n%s", p.name, p.logs.Tail(60))
	}
}

// waitLog waits for the first JSON log line whose msg is msg and returns it.
func (p *proxy) waitLog(t *testing.T, timeout time.Duration, msg string) map[string]any {
	t.Helper()
	rec, err := p.logs.Wait(msg, p.exited, timeout)
	if err != nil {
		select {
		case <-p.exited:
			err = fmt.Errorf("%w (%v)", err, p.err)
		default:
		}
		t.Fatalf("proxy %s: %v; log:\n%s", p.name, err, p.logs.Tail(40))
	}
	return rec
}

// The admin plane's answers, as the README documents them.
type shardsAnswer struct {
	Ring        string      `json:"ring"`
	Replicas    int         `json:"replicas"`
	Ready       int         `json:"ready"`
	Fingerprint string      `json:"fingerprint"`
	HandoffFrom int         `json:"handoff_from"`
	Shards      []shardInfo `json:"shards"`
}

type shardInfo struct {
	Ordinal  int    `json:"ordinal"`
	Name     string `json:"name"`
	Address  string `json:"address"`
	Ready    bool   `json:"ready"`
	Protocol string `json:"protocol"`
	OwnsKeys bool   `json:"owns_keys"`
	TLS      string `json:"tls"`
	TLSName  string `json:"tls_name"`
}

type locateAnswer struct {
	Key     string `json:"key"`
	Ordinal int    `json:"ordinal"`
	Shard   string `json:"shard"`
	Address string `json:"address"`
	Ready   bool   `json:"ready"`
}

type broadcastReport struct {
	Policy    string        `json:"policy"`
	Method    string        `json:"method"`
	Path      string        `json:"path"`
	Succeeded int           `json:"succeeded"`
	Failed    int           `json:"failed"`
	Shards    []shardResult `json:"shards"`
}

type shardResult struct {
	Ordinal int    `json:"ordinal"`
	Shard   string `json:"shard"`
	Address string `json:"address"`
	Status  int    `json:"status"`
	Body    string `json:"body"`
	Error   string `json:"error"`
}

// errorAnswer is the JSON body of the data plane's own errors.
type errorAnswer struct {
	Error string `json:"error"`
	Shard string `json:"shard"`
}

func (p *proxy) readyz(ctx context.Context) error {
	a, err := p.do(ctx, http.MethodGet, p.admin+"/readyz", nil, nil)
	if err != nil {
		return err
	}
	if a.Status != http.StatusOK {
		return fmt.Errorf("/readyz: %v", a)
	}
	return nil
}

// shards returns the proxy's /shards.
func (p *proxy) shards(ctx context.Context) (shardsAnswer, error) {
	var a shardsAnswer
	return a, p.adminJSON(ctx, "/shards", &a)
}

// locate returns the proxy's /locate for key.
func (p *proxy) locate(ctx context.Context, key string) (locateAnswer, error) {
	var a locateAnswer
	return a, p.adminJSON(ctx, "/locate?key="+url.QueryEscape(key), &a)
}

func (p *proxy) adminJSON(ctx context.Context, path string, v any) error {
	a, err := p.do(ctx, http.MethodGet, p.admin+path, nil, nil)
	if err != nil {
		return err
	}
	if a.Status != http.StatusOK {
		return fmt.Errorf("GET %s: %v", path, a)
	}
	if err := json.Unmarshal(a.Body, v); err != nil {
		return fmt.Errorf("GET %s: %w: %s", path, err, a.Body)
	}
	return nil
}

// broadcast sends method to /broadcast/<pathQuery> on the admin plane.
func (p *proxy) broadcast(ctx context.Context, method, pathQuery, body string) (int, broadcastReport, error) {
	var rep broadcastReport
	a, err := p.do(ctx, method, p.admin+"/broadcast/"+strings.TrimPrefix(pathQuery, "/"),
		http.Header{"Content-Type": {"application/json"}}, strings.NewReader(body))
	if err != nil {
		return 0, rep, err
	}
	if err := json.Unmarshal(a.Body, &rep); err != nil {
		return a.Status, rep, fmt.Errorf("broadcast report: %w: %s", err, a.Body)
	}
	return a.Status, rep, nil
}

func (p *proxy) do(ctx context.Context, method, u string, h http.Header, body io.Reader) (testutil.Answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return testutil.Answer{}, err
	}
	maps.Copy(req.Header, h)
	return testutil.Read(p.client, req)
}

// send sends GET /accounts/<key> with the key in X-Shard-Key, the
// proxy's default key rule, through the data plane.
func (p *proxy) send(ctx context.Context, key string) (testutil.Answer, error) {
	return p.sendClient(ctx, p.client, key)
}

func (p *proxy) sendClient(ctx context.Context, c *http.Client, key string) (testutil.Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.data+"/accounts/"+url.PathEscape(key), nil)
	if err != nil {
		return testutil.Answer{}, err
	}
	req.Header.Set("X-Shard-Key", key)
	return testutil.Read(c, req)
}

// waitShards polls /shards until cond accepts it and returns that answer.
func (p *proxy) waitShards(t *testing.T, timeout time.Duration, what string, cond func(shardsAnswer) error) shardsAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		a, err := p.shards(ctx)
		if err == nil {
			if last = cond(a); last == nil {
				return a
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("proxy %s: %s: not true after %v: %v", p.name, what, timeout, last)
		case <-p.exited:
			t.Fatalf("proxy %s exited: %v", p.name, p.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
