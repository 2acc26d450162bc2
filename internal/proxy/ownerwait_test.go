package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// sendKey makes one request with key to p and returns the answer.
func sendKey(t *testing.T, c *http.Client, url, key string, h http.Header) testutil.Answer {
	t.Helper()
	req := testutil.NewRequest(t, "GET", url+"/k/"+key, nil)
	req.Header.Set("X-Shard-Key", key)
	for k, v := range h {
		req.Header[k] = v
	}
	return testutil.Do(t, c, req)
}

// TestOwnerWaitServesWhenReady: a request for a not-ready owner is held
// and answered by the owner as soon as a topology makes it ready (woken by
// the change, well before --owner-wait runs out).
func TestOwnerWaitServesWhenReady(t *testing.T) {
	for _, relayed := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "h2 relay"}[relayed], func(t *testing.T) {
			shards := testutil.StartShards(t, 2, "web")
			topo := testutil.Topology(shards)
			c := testutil.Client(t)
			if relayed { // h2c shards, an HTTP/2 client: the relay holds the stream
				for i := range topo.Shards {
					topo.Shards[i].Protocol = watch.H2C
				}
				c = h2cClient(t)
			}
			ready := topo
			ready.Shards = slices.Clone(topo.Shards)
			topo.Shards[1].Ready = false
			p := startProxy(t, Config{OwnerWait: 10 * time.Second}, ring.Config{Algorithm: ring.Modulus}, &topo)
			got := make(chan testutil.Answer, 1)
			start := time.Now()
			go func() { got <- sendKey(t, c, p.url, "1", nil) }()
			deadline := time.Now().Add(5 * time.Second)
			for p.router.Waiting() == 0 { // the request is held
				if time.Now().After(deadline) {
					t.Fatal("the request was not held")
				}
				time.Sleep(5 * time.Millisecond)
			}
			p.apply(t, ready)
			a := <-got
			if a.Status != 200 || a.Header.Get("X-Shard") != "web-1" {
				t.Fatalf("held request answered %d by %q, want 200 from web-1", a.Status, a.Header.Get("X-Shard"))
			}
			if waited := time.Since(start); waited > 5*time.Second {
				t.Errorf("answered after %v: not woken by the change", waited)
			}
			if got := p.metric("shard_proxy_owner_waits_total", "outcome", "served"); got != 1 {
				t.Errorf("owner_waits_total{outcome=served} = %v, want 1", got)
			}
		})
	}
}

// TestOwnerWaitLimits: past --owner-wait the usual 503 comes; beyond
// --owner-wait-max requests get 503 at once; a held client that leaves is
// never forwarded.
func TestOwnerWaitLimits(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
	topo.Shards[1].Ready = false
	const wait = time.Second
	p := startProxy(t, Config{OwnerWait: wait, OwnerWaitMax: 1}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := testutil.Client(t)

	start := time.Now()
	first := make(chan testutil.Answer, 1)
	go func() { first <- sendKey(t, c, p.url, "1", nil) }()
	for p.router.Waiting() == 0 {
		time.Sleep(2 * time.Millisecond)
	}
	over := sendKey(t, c, p.url, "3", nil)
	// At once: answered while the first request is still held (no
	// wall-clock bound, which a loaded runner could miss).
	if held := p.router.Waiting(); over.Status != 503 || held != 1 {
		t.Errorf("over the limit: %d with %d held, want 503 while the first is still held", over.Status, held)
	}
	a := <-first
	if a.Status != 503 || a.Header.Get("Retry-After") != "1" || time.Since(start) < wait {
		t.Errorf("held past --owner-wait: %d after %v, want 503 with Retry-After after %v", a.Status, time.Since(start), wait)
	}
	for outcome, want := range map[string]float64{"timeout": 1, "overflow": 1} {
		if got := p.metric("shard_proxy_owner_waits_total", "outcome", outcome); got != want {
			t.Errorf("owner_waits_total{outcome=%s} = %v, want %v", outcome, got, want)
		}
	}

	// A client that leaves while held: nothing reaches the shard, even
	// when it becomes ready afterwards.
	rc := dialRaw(t, p)
	rc.send("GET /gone HTTP/1.1\r\nHost: x\r\nX-Shard-Key: 1\r\n\r\n")
	for p.router.Waiting() == 0 {
		time.Sleep(2 * time.Millisecond)
	}
	rc.c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for p.metric("shard_proxy_owner_waits_total", "outcome", "gone") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("a held request whose client left was not released")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.apply(t, testutil.Topology(shards))
	for _, r := range shards[1].Requests() {
		if strings.HasPrefix(r.URI, "/gone") {
			t.Errorf("the shard received %s from a client that had left", r.URI)
		}
	}
}

// TestHandoffHeaders: with the previous N named, requests whose key moved
// carry X-Shard-Previous (and the old owner's address); the others carry
// nothing, and a client's own values never reach the shard.
func TestHandoffHeaders(t *testing.T) {
	for _, relayed := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "h2 relay"}[relayed], func(t *testing.T) {
			shards := testutil.StartShards(t, 3, "web")
			topo := testutil.Topology(shards)
			topo.HandoffFrom = 2
			c := testutil.Client(t)
			if relayed { // h2c shards, an HTTP/2 client: the relay carries it
				for i := range topo.Shards {
					topo.Shards[i].Protocol = watch.H2C
				}
				c = h2cClient(t)
			}
			p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)
			checkHandoffs(t, p, c, shards)
		})
	}
}

// checkHandoffs: keys that moved reach their new owner with the previous
// one named, keys that did not move without, and a client's own values
// never reach a shard.
func checkHandoffs(t *testing.T, p *running, c *http.Client, shards []*testutil.Shard) {
	spoof := http.Header{header.Previous: {"evil"}, header.PreviousAddress: {"10.9.9.9:1"}}
	for k := range 6 {
		key := string(rune('0' + k))
		a := sendKey(t, c, p.url, key, spoof)
		if a.Status != 200 {
			t.Fatalf("key %s: %d", key, a.Status)
		}
		owner := shards[k%3]
		got := owner.Requests()
		h := got[len(got)-1].Header
		was := shards[k%2]
		switch {
		case k%3 != k%2:
			if h.Get(header.Previous) != was.Name || h.Get(header.PreviousAddress) != was.Addr {
				t.Errorf("key %s moved from %s: shard saw %s=%q %s=%q", key, was.Name,
					header.Previous, h.Get(header.Previous), header.PreviousAddress, h.Get(header.PreviousAddress))
			}
		case h.Get(header.Previous) != "" || h.Get(header.PreviousAddress) != "":
			t.Errorf("key %s did not move, but the shard saw %v", key, h)
		}
	}
	if got := p.metric("shard_proxy_handoff_requests_total", "shard", "web-2"); got != 2 {
		t.Errorf("handoff_requests_total{shard=web-2} = %v, want 2 (keys 2 and 5)", got)
	}
}
