package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shard-proxy/shard-proxy/client"
	"github.com/shard-proxy/shard-proxy/internal/admin"
	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.LeakOptions()...) }

// rig is a proxy serving its data port and its admin plane on real
// loopback sockets, over real shard servers.
type rig struct {
	px     *proxy.Proxy
	srv    *admin.Server
	shards []*testutil.Shard
	data   string // http://host:port of the data port
	admin  string // http://host:port of the admin port
	token  string

	mu   sync.Mutex
	hs   *http.Server
	addr string
}

type rigConfig struct {
	ring  ring.Algorithm
	keys  string
	n     int
	token bool
}

func startRig(t testing.TB, rc rigConfig) *rig {
	t.Helper()
	rules, err := keys.ParseRules(rc.keys)
	if err != nil {
		t.Fatal(err)
	}
	px, err := proxy.New(proxy.Config{Ring: ring.Config{Algorithm: rc.ring}, Keys: rules, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	r := &rig{px: px, shards: testutil.StartShards(t, max(rc.n, 1), "web")}
	r.apply(t, testutil.Topology(r.shards))
	ln := listen(t, "127.0.0.1:0")
	go func() { _ = px.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = px.Shutdown(ctx)
	})
	r.data = "http://" + ln.Addr().String()
	cfg := admin.Config{Tables: px, Logger: slog.New(slog.DiscardHandler)}
	if rc.token {
		r.token = "s3cret"
		file := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(file, []byte(r.token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if cfg.Auth, err = admin.NewTokenAuth(file, nil); err != nil {
			t.Fatal(err)
		}
	}
	r.srv = admin.New(cfg)
	r.startAdmin(t, "127.0.0.1:0")
	t.Cleanup(func() {
		r.stopAdmin()
		r.srv.Close()
	})
	return r
}

func listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startAdmin serves the admin plane at addr (again, after stopAdmin).
func (r *rig) startAdmin(t testing.TB, addr string) {
	t.Helper()
	ln := listen(t, addr)
	hs := &http.Server{Handler: r.srv}
	go func() { _ = hs.Serve(ln) }()
	r.mu.Lock()
	r.hs, r.addr = hs, ln.Addr().String()
	r.mu.Unlock()
	r.admin = "http://" + r.addr
}

// stopAdmin closes the admin port and every connection to it (watches).
func (r *rig) stopAdmin() {
	r.mu.Lock()
	hs := r.hs
	r.hs = nil
	r.mu.Unlock()
	if hs != nil {
		_ = hs.Close()
	}
}

func (r *rig) apply(t testing.TB, topo watch.Topology) {
	t.Helper()
	if err := r.px.Apply(topo); err != nil {
		t.Fatal(err)
	}
}

// newClient starts a client of the rig that ends with the test.
func newClient(t *testing.T, url string, cfg client.Config) *client.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := client.New(ctx, url, cfg)
	if err != nil {
		cancel()
		t.Fatalf("client.New(%s): %v", url, err)
	}
	t.Cleanup(func() {
		cancel()
		<-c.Done()
	})
	return c
}

// waitGeneration waits until the client routes by generation gen, and
// returns how long that took.
func waitGeneration(t *testing.T, c *client.Client, gen uint64, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		ch := c.Changed()
		if c.Topology().Generation >= gen {
			return time.Since(start)
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("the client is at generation %d after %v, want %d (watch error: %v)", c.Topology().Generation, within, gen, c.WatchErr())
		}
	}
}

// generation is the generation of the proxy's table in force.
func (r *rig) generation() uint64 {
	_, gen, _ := r.px.Current()
	return gen
}

func isShardErr(err, target error, shard string) bool {
	var se *client.ShardError
	return errors.Is(err, target) && errors.As(err, &se) && se.Shard == shard
}
