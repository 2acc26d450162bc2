package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// keyFor finds a key that the modulus ring over n shards gives to ordinal i.
func keyFor(i int) string { return fmt.Sprint(i) }

func TestErrorAnswers(t *testing.T) {
	shards := testutil.StartShards(t, 3, "web")
	shards[2].Hold() // slow shard: answers only after the test ends
	topo := testutil.Topology(shards)
	topo.Shards[1].Ready = false
	p := startProxy(t, Config{
		Keys:            mustRules(t, "body:account.id,header:X-Shard-Key"),
		MaxBodyBytes:    1024,
		UpstreamTimeout: 300 * time.Millisecond,
	}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := testutil.Client(t)

	tests := []struct {
		name       string
		req        func() *http.Request
		wantStatus int
		wantJSON   map[string]any
		wantShard  string
		wantRetry  bool
	}{
		{
			name:       "no rule yields a key",
			req:        func() *http.Request { return testutil.NewRequest(t, "GET", p.url+"/x", nil) },
			wantStatus: 400,
			wantJSON:   map[string]any{"error": "no shard key", "tried": []any{"body:account.id", "header:X-Shard-Key"}},
		},
		{
			name: "body over the limit",
			req: func() *http.Request {
				return testutil.NewRequest(t, "POST", p.url+"/x", bytes.Repeat([]byte("a"), 2048))
			},
			wantStatus: 413,
			wantJSON:   map[string]any{"error": "request body too large", "limit": float64(1024)},
		},
		{
			name: "body rule on a body that is not JSON",
			req: func() *http.Request {
				r := testutil.NewRequest(t, "POST", p.url+"/x", []byte("account=7"))
				r.Header.Set("X-Shard-Key", "0") // a later rule must not paper over the bad body
				return r
			},
			wantStatus: 400,
			wantJSON:   map[string]any{"error": "request body is not valid JSON", "rule": "body:account.id"},
		},
		{
			name: "owner not ready",
			req: func() *http.Request {
				return testutil.NewRequest(t, "POST", p.url+"/x", []byte(`{"account":{"id":1}}`))
			},
			wantStatus: 503,
			wantJSON:   map[string]any{"error": "shard not ready", "shard": "web-1"},
			wantShard:  "web-1",
			wantRetry:  true,
		},
		{
			name: "owner too slow",
			req: func() *http.Request {
				return testutil.NewRequest(t, "POST", p.url+"/x", []byte(`{"account":{"id":2}}`))
			},
			wantStatus: 504,
			wantJSON:   map[string]any{"error": "shard timeout", "shard": "web-2"},
			wantShard:  "web-2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := testutil.Do(t, c, tt.req())
			if a.Status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", a.Status, tt.wantStatus, a.Body)
			}
			if ct := a.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			got := a.JSON(t)
			for k, want := range tt.wantJSON {
				if fmt.Sprint(got[k]) != fmt.Sprint(want) {
					t.Errorf("body[%q] = %v, want %v (body %s)", k, got[k], want, a.Body)
				}
			}
			if got := a.Header.Get(header.Shard); got != tt.wantShard {
				t.Errorf("X-Shard %q, want %q", got, tt.wantShard)
			}
			if got := a.Header.Get("Retry-After") == "1"; got != tt.wantRetry {
				t.Errorf("Retry-After present = %v, want %v", got, tt.wantRetry)
			}
		})
	}
	// Still serving: the ready, fast shard answers.
	a := testutil.Do(t, c, testutil.NewRequest(t, "POST", p.url+"/x", []byte(`{"account":{"id":3}}`)))
	if a.Status != 200 || a.Header.Get(header.Shard) != "web-0" {
		t.Fatalf("after the errors: status %d from %q, want 200 from web-0", a.Status, a.Header.Get(header.Shard))
	}
	if got := p.metric("shard_proxy_key_errors_total", "reason", "no_key"); got != 1 {
		t.Errorf("key_errors_total{reason=no_key} = %v, want 1", got)
	}
	if got := p.metric("shard_proxy_key_errors_total", "reason", "body_too_large"); got != 1 {
		t.Errorf("key_errors_total{reason=body_too_large} = %v, want 1", got)
	}
	if got := p.metric("shard_proxy_requests_total", "shard", "web-2", "code", "504", "protocol", "http1"); got != 1 {
		t.Errorf(`requests_total{shard="web-2",code="504"} = %v, want 1`, got)
	}
}

func TestNoShards(t *testing.T) {
	c := testutil.Client(t)
	p := startProxy(t, Config{}, ring.Config{}, nil)
	check := func(when string) {
		r := testutil.NewRequest(t, "GET", p.url+"/", nil)
		r.Header.Set("X-Shard-Key", "k")
		a := testutil.Do(t, c, r)
		if a.Status != 503 || a.JSON(t)["error"] != "no shards" {
			t.Errorf("%s: status %d body %s, want 503 no shards", when, a.Status, a.Body)
		}
	}
	check("before any topology")
	p.apply(t, watch.Topology{})
	check("with N = 0")
}

// A dead shard costs only its own keys.
func TestDownShardFailsOnlyItsKeys(t *testing.T) {
	shards := testutil.StartShards(t, 3, "web")
	topo := testutil.Topology(shards)
	topo.Shards[1].Addr = testutil.DeadAddr(t)
	p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := testutil.Client(t)
	for i := range 30 {
		r := testutil.NewRequest(t, "GET", p.url+"/", nil)
		r.Header.Set("X-Shard-Key", keyFor(i))
		a := testutil.Do(t, c, r)
		owner := fmt.Sprintf("web-%d", i%3)
		if a.Header.Get(header.Shard) != owner {
			t.Fatalf("key %d: X-Shard %q, want %q", i, a.Header.Get(header.Shard), owner)
		}
		switch {
		case i%3 == 1 && (a.Status != 502 || a.JSON(t)["error"] != "shard unreachable"):
			t.Errorf("key %d on the dead shard: status %d body %s, want 502 shard unreachable", i, a.Status, a.Body)
		case i%3 != 1 && a.Status != 200:
			t.Errorf("key %d on a live shard: status %d body %s", i, a.Status, a.Body)
		}
	}
}

func TestForwardingFidelity(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	shards[0].Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Private", "hop")
		w.Header().Set("Connection", "X-Private")
		w.Header().Set("X-Backend", "yes")
		w.WriteHeader(201)
		fmt.Fprint(w, "created")
	})
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{Keys: mustRules(t, "body:id")}, ring.Config{}, &topo)
	body := []byte("{\"id\": \"a\\u0062c\",\n  \"blob\": \"\u00e9\\n\", \"pad\": [1,2,3]}  ")
	uri := "/a%2Fb/c;x?q=1+2&r=%20&r=dup"

	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := "POST " + uri + " HTTP/1.1\r\nHost: api.example\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n" +
		"Keep-Alive: timeout=9\r\nProxy-Authorization: Basic x\r\nTE: trailers\r\nX-Forwarded-For: 203.0.113.9\r\n" +
		"X-End: kept\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + string(body)
	if _, err := conn.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufioReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	if resp.StatusCode != 201 || resp.Header.Get(header.Shard) != "web-0" || resp.Header.Get("X-Backend") != "yes" {
		t.Errorf("answer: status %d X-Shard %q X-Backend %q", resp.StatusCode, resp.Header.Get(header.Shard), resp.Header.Get("X-Backend"))
	}
	for _, h := range []string{"Keep-Alive", "X-Private"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("response hop-by-hop header %s = %q reached the client", h, v)
		}
	}
	got := shards[0].Requests()
	if len(got) != 1 {
		t.Fatalf("shard got %d requests, want 1", len(got))
	}
	r := got[0]
	if r.URI != uri {
		t.Errorf("request URI %q, want %q byte for byte", r.URI, uri)
	}
	if !bytes.Equal(r.Body, body) {
		t.Errorf("body %q, want %q byte for byte", r.Body, body)
	}
	if r.Host != "api.example" {
		t.Errorf("Host %q, want api.example", r.Host)
	}
	for h, want := range map[string]string{
		"X-Forwarded-For":     "203.0.113.9, 127.0.0.1",
		"X-Forwarded-Proto":   "http",
		"X-Forwarded-Host":    "api.example",
		"X-End":               "kept",
		"X-Hop":               "",
		"Keep-Alive":          "",
		"Proxy-Authorization": "",
		"Te":                  "",
	} {
		if v := r.Header.Get(h); v != want {
			t.Errorf("shard saw %s = %q, want %q", h, v, want)
		}
	}
}

// Hop-by-hop headers are stripped whatever case the shard writes them in
// (sidecars such as Envoy send lowercase names).
func TestLowercaseHopHeadersFromShard(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nconnection: x-private\r\nx-private: secret\r\nkeep-alive: timeout=5\r\nx-kept: yes\r\ncontent-length: 2\r\n\r\nok")
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	topo := watch.Topology{Replicas: 1, Shards: []watch.Shard{{Ordinal: 0, Name: "raw-0", Addr: ln.Addr().String(), Ready: true}}}
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	r := testutil.NewRequest(t, "GET", p.url+"/", nil)
	r.Header.Set("X-Shard-Key", "k")
	a := testutil.Do(t, testutil.Client(t), r)
	if a.Status != 200 || string(a.Body) != "ok" || a.Header.Get("X-Kept") != "yes" {
		t.Fatalf("status %d body %q headers %v", a.Status, a.Body, a.Header)
	}
	for _, h := range []string{"X-Private", "Keep-Alive"} {
		if v := a.Header.Get(h); v != "" {
			t.Errorf("hop-by-hop %s = %q reached the client", h, v)
		}
	}
}
