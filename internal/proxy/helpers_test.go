package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.LeakOptions()...)
}

// running is a Proxy serving on a real loopback listener.
type running struct {
	*Proxy
	url string
	reg *prometheus.Registry
	// tls is the proxy's TLS listener, which dialRaw dials, when the test
	// runs over TLS (rawOverTLS).
	tls *tlsFront
}

// rawOverTLS makes startProxy serve a TLS listener too, and dialRaw dial
// it: the raw-socket suites then run over TLS (TestRawSuiteOverTLS).
var rawOverTLS bool

// rawTLSDials counts the raw connections dialled over TLS.
var rawTLSDials atomic.Int32

// tlsFronts maps a proxy's cleartext URL to its TLS listener, for tests
// that dial by URL.
var tlsFronts sync.Map

// dialProxy dials the proxy at url: over TLS with ALPN proto when the
// test runs over TLS.
func dialProxy(url, proto string) (net.Conn, error) {
	if f, ok := tlsFronts.Load(url); ok {
		rawTLSDials.Add(1)
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: relayWait}, Config: f.(*tlsFront).client(proto)}
		return d.Dial("tcp", f.(*tlsFront).addr)
	}
	return net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), relayWait)
}

// startProxy serves a Proxy for cfg on 127.0.0.1 and applies topo with
// ringCfg (no topology when topo is nil).
func startProxy(t testing.TB, cfg Config, ringCfg ring.Config, topo *watch.Topology) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	cfg.Ring = ringCfg
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{Proxy: p, reg: reg}
	if topo != nil {
		r.apply(t, *topo)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
		<-done
		p.Close()
	})
	r.url = "http://" + ln.Addr().String()
	if rawOverTLS {
		r.tls = serveTLS(t, r, nil)
		tlsFronts.Store(r.url, r.tls)
		t.Cleanup(func() { tlsFronts.Delete(r.url) })
	}
	return r
}

func (r *running) apply(t testing.TB, topo watch.Topology) {
	t.Helper()
	if err := r.Apply(topo); err != nil {
		t.Fatal(err)
	}
}

func mustRules(t testing.TB, spec string) []keys.Rule {
	t.Helper()
	rules, err := keys.ParseRules(spec)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

func names(shards []*testutil.Shard) []string {
	out := make([]string, len(shards))
	for i, s := range shards {
		out[i] = s.Name
	}
	return out
}

func jsonString(v string) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

// metric is the value of the series name with the given label pairs in the
// proxy's registry, 0 when there is none.
func (r *running) metric(name string, labelPairs ...string) float64 {
	families, err := r.reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labelPairs); i += 2 {
				if have[labelPairs[i]] != labelPairs[i+1] {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}
