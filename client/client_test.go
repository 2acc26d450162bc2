package client_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/client"
	"github.com/shard-proxy/shard-proxy/internal/admin"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// locate asks the proxy's /locate for key's owner.
func locate(t *testing.T, r *rig, key string) admin.LocateAnswer {
	t.Helper()
	req := testutil.NewRequest(t, "GET", r.admin+"/locate?key="+url.QueryEscape(key), nil)
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	return testutil.Decode[admin.LocateAnswer](t, testutil.Do(t, testutil.Client(t), req))
}

func randomKeys(t *testing.T, n int) []string {
	seed := time.Now().UnixNano()
	t.Logf("keys from seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 1))
	out := make([]string, n)
	for i := range out {
		switch i % 3 {
		case 0:
			out[i] = fmt.Sprint(rnd.Int64N(1e12) - 5e11)
		case 1:
			out[i] = fmt.Sprintf("acct-%x", rnd.Uint64())
		default:
			out[i] = fmt.Sprintf("ü-%d", rnd.IntN(1e6))
		}
	}
	return out
}

func checkOwners(t *testing.T, r *rig, c *client.Client, ks []string) {
	t.Helper()
	bad := 0
	for _, k := range ks {
		got, err := c.Owner(k)
		want := locate(t, r, k)
		if err != nil || got.Name != want.Shard || got.Ordinal != want.Ordinal || got.Address != want.Address {
			if bad++; bad <= 5 {
				t.Errorf("key %q: client %+v %v, /locate %+v", k, got, err, want)
			}
		}
	}
}

// TestOwnersFollowTheProxy: for 500 keys on each ring, the client's owner
// is /locate's, before and after a scale, which the client follows within
// a second.
func TestOwnersFollowTheProxy(t *testing.T) {
	for _, alg := range ring.Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			r := startRig(t, rigConfig{ring: alg, n: 3})
			c := newClient(t, r.admin, client.Config{})
			ks := randomKeys(t, 500)
			checkOwners(t, r, c, ks)
			if top := c.Topology(); top.Ring != string(alg) || top.Replicas != 3 || top.Generation != r.generation() {
				t.Errorf("topology %+v", top)
			}
			more := testutil.StartShards(t, 2, "more")
			topo := testutil.Topology(r.shards)
			for i, s := range more {
				topo.Shards = append(topo.Shards, watch.Shard{Ordinal: 3 + i, Name: fmt.Sprintf("web-%d", 3+i), Addr: s.Addr, Ready: true})
			}
			topo.Replicas = 5
			r.apply(t, topo)
			took := waitGeneration(t, c, r.generation(), time.Second)
			t.Logf("the client followed the scale in %v", took)
			checkOwners(t, r, c, ks)
		})
	}
}

// TestRoundTripReachesTheOwnerAsTheProxyWould sends each request twice,
// through the proxy and straight through the client: the same shard gets
// it, with the same header fields but X-Forwarded-For (the client is the
// client), and both answers carry the same X-Shard.
func TestRoundTripReachesTheOwnerAsTheProxyWould(t *testing.T) {
	r := startRig(t, rigConfig{ring: ring.Jump, keys: "header:X-Account,path:/accounts/{key},body:account.id", n: 4})
	c := newClient(t, r.admin, client.Config{Keys: "header:X-Account,path:/accounts/{key},body:account.id"})
	direct := &http.Client{Transport: c}
	viaProxy := testutil.Client(t)
	for i, k := range randomKeys(t, 30) {
		var path, body string
		method, hdr := "GET", http.Header{"X-Shard-Previous": {"spoofed"}, "Connection": {"X-Hop"}, "X-Hop": {"1"}, "X-End": {"2"}, "User-Agent": {"t/1"}}
		switch i % 3 {
		case 0:
			path = "/x?i=" + fmt.Sprint(i)
			hdr.Set("X-Account", k)
		case 1:
			path = "/accounts/" + url.PathEscape(k) + "/orders"
		default:
			method, path = "POST", "/orders"
			b, _ := json.Marshal(map[string]any{"account": map[string]string{"id": k}})
			body = string(b)
		}
		send := func(hc *http.Client, base string) (string, testutil.Request) {
			req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
			if body == "" {
				req.Body = nil
			}
			req.Host = "web.example"
			for n, v := range hdr {
				req.Header[n] = v
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got := arrivedAt(t, r, resp.Header.Get("X-Shard"))
			return resp.Header.Get("X-Shard"), got
		}
		s1, viaReq := send(viaProxy, r.data)
		s2, directReq := send(direct, "http://ignored.invalid")
		if s1 == "" || s1 != s2 {
			t.Fatalf("key %q: the proxy sent it to %q, the client to %q", k, s1, s2)
		}
		viaReq.Header.Del("X-Forwarded-For")
		if fmt.Sprint(viaReq.Header) != fmt.Sprint(directReq.Header) || viaReq.URI != directReq.URI ||
			viaReq.Host != directReq.Host || string(viaReq.Body) != string(directReq.Body) {
			t.Errorf("key %q: through the proxy the shard got\n%s %s %v %q\nstraight from the client\n%s %s %v %q",
				k, viaReq.URI, viaReq.Host, viaReq.Header, viaReq.Body, directReq.URI, directReq.Host, directReq.Header, directReq.Body)
		}
	}
}

// arrivedAt returns the last request shard name received (its record is
// complete before its answer).
func arrivedAt(t *testing.T, r *rig, name string) testutil.Request {
	t.Helper()
	for _, s := range r.shards {
		if got := s.Requests(); s.Name == name && len(got) > 0 {
			return got[len(got)-1]
		}
	}
	t.Fatalf("shard %q answered but recorded no request", name)
	return testutil.Request{}
}

// TestOwnerWaitThenNotReady: a not-ready owner is waited for, and a
// request reaches it once it is ready; without that, ErrShardNotReady and
// no shard got anything.
func TestOwnerWaitThenNotReady(t *testing.T) {
	r := startRig(t, rigConfig{ring: ring.Modulus, n: 3})
	topo := testutil.Topology(r.shards)
	topo.Shards[1].Ready = false
	r.apply(t, topo)

	now := newClient(t, r.admin, client.Config{})
	waitGeneration(t, now, r.generation(), 5*time.Second)
	_, err := (&http.Client{Transport: now}).Do(keyed(t, "4"))
	if !isShardErr(err, client.ErrShardNotReady, "web-1") {
		t.Fatalf("owner not ready, no wait: %v, want ErrShardNotReady for web-1", err)
	}

	short := newClient(t, r.admin, client.Config{OwnerWait: 200 * time.Millisecond})
	start := time.Now()
	_, err = (&http.Client{Transport: short}).Do(keyed(t, "7"))
	if d := time.Since(start); !isShardErr(err, client.ErrShardNotReady, "web-1") || d < 200*time.Millisecond || d > 5*time.Second {
		t.Fatalf("owner not ready, 200ms wait: %v after %v", err, d)
	}
	for _, s := range r.shards {
		if n := len(s.Requests()); n != 0 {
			t.Fatalf("%s got %d requests for keys it does not own", s.Name, n)
		}
	}

	long := newClient(t, r.admin, client.Config{OwnerWait: 10 * time.Second})
	done := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: long}).Do(keyed(t, "10"))
		if err == nil {
			resp.Body.Close()
			if resp.Header.Get("X-Shard") != "web-1" {
				err = fmt.Errorf("answered by %q", resp.Header.Get("X-Shard"))
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the request ended while its owner was not ready: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	topo.Shards[1].Ready = true // the pod is back (a restart)
	r.apply(t, topo)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held request did not go when its owner became ready")
	}
	if n := len(r.shards[1].Requests()); n != 1 {
		t.Errorf("web-1 got %d requests, want 1", n)
	}
}

func keyed(t *testing.T, key string) *http.Request {
	req := testutil.NewRequest(t, "GET", "http://web/x", nil)
	req.Header.Set("X-Shard-Key", key)
	return req
}

// TestNeverAnotherShard: an owner that cannot be reached is an error
// naming it; no other shard gets the request.
func TestNeverAnotherShard(t *testing.T) {
	r := startRig(t, rigConfig{ring: ring.Modulus, n: 3})
	topo := testutil.Topology(r.shards)
	topo.Shards[2].Addr = testutil.DeadAddr(t) // ready, but nothing listens
	r.apply(t, topo)
	c := newClient(t, r.admin, client.Config{OwnerWait: time.Second})
	waitGeneration(t, c, r.generation(), 5*time.Second)
	for _, k := range []string{"2", "5", "-1"} {
		_, err := (&http.Client{Transport: c}).Do(keyed(t, k))
		if !isShardErr(err, client.ErrShardUnreachable, "web-2") {
			t.Errorf("key %s: %v, want ErrShardUnreachable for web-2", k, err)
		}
	}
	for _, s := range r.shards {
		if n := len(s.Requests()); n != 0 {
			t.Errorf("%s got %d requests", s.Name, n)
		}
	}
}

// TestKeepsTopologyWhileAdminIsDown: with the admin port closed the client
// routes by the last topology and says why the watch is down; when the
// port is back it reconnects within a second and follows changes again.
func TestKeepsTopologyWhileAdminIsDown(t *testing.T) {
	r := startRig(t, rigConfig{ring: ring.Jump, n: 3})
	c := newClient(t, r.admin, client.Config{})
	before, _ := c.Owner("42")
	addr := strings.TrimPrefix(r.admin, "http://")
	r.stopAdmin()
	lost := time.After(5 * time.Second)
	for c.WatchErr() == nil {
		select {
		case <-time.After(10 * time.Millisecond): // WatchErr has no channel; the loss is seen within ms
		case <-lost:
			t.Fatal("WatchErr still nil 5 s after the admin port closed")
		}
	}
	t.Logf("watch error while the admin port is down: %v", c.WatchErr())
	after, err := c.Owner("42")
	if err != nil || after != before {
		t.Fatalf("owner of 42 while the admin port is down: %+v %v, want %+v", after, err, before)
	}
	resp, err := (&http.Client{Transport: c}).Do(keyed(t, "42"))
	if err != nil || resp.Header.Get("X-Shard") != before.Name {
		t.Fatalf("request while the admin port is down: %v %v", resp, err)
	}
	resp.Body.Close()

	topo := testutil.Topology(r.shards)
	topo.Shards[0].Ready = false
	r.apply(t, topo)
	r.startAdmin(t, addr)
	took := waitGeneration(t, c, r.generation(), 3*time.Second)
	t.Logf("back on the new topology %v after the admin port came back", took)
	if sh, _ := c.Owner("x"); c.Topology().Shards[0].Ready || sh.Name == "" {
		t.Errorf("after reconnecting: %+v", c.Topology())
	}
	if c.WatchErr() != nil {
		t.Errorf("WatchErr after reconnecting: %v", c.WatchErr())
	}
}

// TestNewFailsWithinItsTimeout: an admin URL where nothing listens, or
// where nothing answers, is an error from New within its timeout.
func TestNewFailsWithinItsTimeout(t *testing.T) {
	silent := listen(t, "127.0.0.1:0") // accepts (the kernel does), never answers
	defer silent.Close()
	for name, u := range map[string]string{"refused": "http://" + testutil.DeadAddr(t), "silent": "http://" + silent.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			c, err := client.New(context.Background(), u, client.Config{Timeout: 300 * time.Millisecond})
			d := time.Since(start)
			if c != nil || !errors.Is(err, client.ErrNoTopology) || d > 2*time.Second {
				t.Fatalf("New(%s): %v, %v after %v; want ErrNoTopology within the timeout", u, c, err, d)
			}
			t.Logf("%v after %v", err, d)
		})
	}
	for _, bad := range []string{"", "shard-proxy:9090", "ftp://x", "http://"} {
		if _, err := client.New(context.Background(), bad, client.Config{}); err == nil {
			t.Errorf("New(%q) succeeded", bad)
		}
	}
	if _, err := client.New(context.Background(), "http://127.0.0.1:1", client.Config{Keys: "nope:x"}); err == nil {
		t.Error("New with a bad key rule succeeded")
	}
}

// TestTokenAndTLS: the admin token is sent (a wrong one fails New at once
// with ErrUnauthorized), and an https admin port is reached with its CA.
func TestTokenAndTLS(t *testing.T) {
	r := startRig(t, rigConfig{ring: ring.Jump, n: 2, token: true})
	start := time.Now()
	if _, err := client.New(context.Background(), r.admin, client.Config{Token: "wrong"}); !errors.Is(err, client.ErrUnauthorized) || time.Since(start) > 2*time.Second {
		t.Fatalf("wrong token: %v after %v, want ErrUnauthorized at once", err, time.Since(start))
	}
	newClient(t, r.admin, client.Config{Token: r.token})

	ts := httptest.NewTLSServer(r.srv)
	t.Cleanup(ts.Close) // after the client's cleanup, which ends its watch
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	tlsCfg := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsCfg.RootCAs = pool
	c := newClient(t, ts.URL, client.Config{Token: r.token, TLS: tlsCfg})
	if sh, err := c.Owner("k"); err != nil || sh.Name == "" {
		t.Fatalf("over TLS: %+v %v", sh, err)
	}
	if _, err := client.New(context.Background(), ts.URL, client.Config{Token: r.token, Timeout: 300 * time.Millisecond}); !errors.Is(err, client.ErrNoTopology) {
		t.Fatalf("TLS without the CA: %v, want ErrNoTopology (unknown authority)", err)
	}
}

// TestPerRequestKeyAndKeyErrors: WithKey wins over the rules; the rules'
// refusals are typed.
func TestPerRequestKeyAndKeyErrors(t *testing.T) {
	r := startRig(t, rigConfig{ring: ring.Modulus, n: 3})
	c := newClient(t, r.admin, client.Config{Keys: "query:k,body:id", MaxBodyBytes: 64})
	hc := &http.Client{Transport: c}
	req := testutil.NewRequest(t, "GET", "http://web/x?k=1", nil)
	req = req.WithContext(client.WithKey(req.Context(), "2"))
	resp, err := hc.Do(req)
	if err != nil || resp.Header.Get("X-Shard") != "web-2" {
		t.Fatalf("WithKey 2: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, tc := range []struct {
		url, body string
		want      error
		rule      string
	}{
		{"http://web/x", "", client.ErrNoKey, ""},
		{"http://web/x?k=1&k=2", "", client.ErrAmbiguousKey, "query:k"},
		{"http://web/x", `{"id":`, client.ErrBadBody, "body:id"},
		{"http://web/x", `{"id":"` + strings.Repeat("1", 100) + `"}`, client.ErrBodyTooLarge, ""},
		{"http://web/x", `{"id":1.5}`, client.ErrInvalidKey, "body:id"},
	} {
		var body []byte
		if tc.body != "" {
			body = []byte(tc.body)
		}
		_, err := hc.Do(testutil.NewRequest(t, "POST", tc.url, body))
		var ke *client.KeyError
		if !errors.Is(err, tc.want) || !errors.As(err, &ke) || ke.Rule != tc.rule {
			t.Errorf("%s %s: %v, want %v (rule %q)", tc.url, tc.body, err, tc.want, tc.rule)
		}
	}
	// A body rule's key, and the body still reaches the shard intact.
	resp, err = hc.Do(testutil.NewRequest(t, "POST", "http://web/x", []byte(`{"id":"4"}`)))
	if err != nil || resp.Header.Get("X-Shard") != "web-1" {
		t.Fatalf("body key 4: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := arrivedAt(t, r, "web-1"); string(got.Body) != `{"id":"4"}` {
		t.Errorf("web-1 got body %q", got.Body)
	}
}

// sseServer is an admin port that streams the given /shards documents,
// one event each, then holds the stream open until the test ends.
func sseServer(t *testing.T, docs ...string) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i, d := range docs {
			fmt.Fprintf(w, "event: topology\nid: %d\ndata: %s\n\n", i+1, d)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(ts.Close)
	return ts
}

// TestUnknownRingIsAnError: a ring the client cannot compute fails New,
// and in a running watch makes Owner fail until a known ring comes back;
// a fingerprint other than the client's own is refused the same way.
func TestUnknownRingIsAnError(t *testing.T) {
	names := []string{"web-0", "web-1"}
	doc := func(alg, fp string, gen int) string {
		if fp == "" {
			fp = ring.Fingerprint(ring.Config{Algorithm: ring.Algorithm(alg)}, names)
		}
		return fmt.Sprintf(`{"ring":%q,"replicas":2,"fingerprint":%q,"generation":%d,"shards":[`+
			`{"ordinal":0,"name":"web-0","address":"127.0.0.1:1","ready":true},{"ordinal":1,"name":"web-1","address":"127.0.0.1:2","ready":true}]}`, alg, fp, gen)
	}
	if _, err := client.New(context.Background(), sseServer(t, doc("rendezvous", "x", 1)).URL, client.Config{}); !errors.Is(err, client.ErrUnknownRing) {
		t.Fatalf("New on an unknown ring: %v, want ErrUnknownRing", err)
	}
	if _, err := client.New(context.Background(), sseServer(t, doc("jump", "0000000000000000", 1)).URL, client.Config{}); !errors.Is(err, client.ErrFingerprintMismatch) {
		t.Fatalf("New on a foreign fingerprint: %v, want ErrFingerprintMismatch", err)
	}
	c := newClient(t, sseServer(t, doc("jump", "", 1), doc("rendezvous", "x", 2)).URL, client.Config{})
	waitGeneration(t, c, 2, 5*time.Second)
	if _, err := c.Owner("k"); !errors.Is(err, client.ErrUnknownRing) {
		t.Errorf("Owner after an unknown ring came: %v, want ErrUnknownRing", err)
	}
	if _, err := (&http.Client{Transport: c}).Do(keyed(t, "k")); !errors.Is(err, client.ErrUnknownRing) {
		t.Errorf("RoundTrip after an unknown ring came: %v", err)
	}
	if !errors.Is(c.WatchErr(), client.ErrUnknownRing) {
		t.Errorf("WatchErr: %v", c.WatchErr())
	}
}

// TestGoroutinesEndWithTheContext: cancelling New's context ends the
// watch (goleak in TestMain checks nothing is left).
func TestGoroutinesEndWithTheContext(t *testing.T) {
	r := startRig(t, rigConfig{ring: ring.Jump, n: 1})
	ctx, cancel := context.WithCancel(context.Background())
	c, err := client.New(ctx, r.admin, client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client's goroutines did not end with its context")
	}
	if sh, err := c.Owner("k"); err != nil || sh.Name != "web-0" {
		t.Errorf("Owner after the end: %+v %v, want the last topology", sh, err)
	}
}

// TestTLSShardsAreNotSentPlaintext: a shard the proxy speaks TLS to gets
// no plaintext request from the client; the error says why.
func TestTLSShardsAreNotSentPlaintext(t *testing.T) {
	names := []string{"web-0"}
	doc := fmt.Sprintf(`{"ring":"jump","replicas":1,"fingerprint":%q,"generation":1,"shards":[`+
		`{"ordinal":0,"name":"web-0","address":"127.0.0.1:1","ready":true,"tls":"verified"}]}`, ring.Fingerprint(ring.Config{}, names))
	c := newClient(t, sseServer(t, doc).URL, client.Config{})
	_, err := (&http.Client{Transport: c}).Do(keyed(t, "k"))
	if !isShardErr(err, client.ErrShardUnreachable, "web-0") || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("a TLS shard: %v", err)
	}
}
