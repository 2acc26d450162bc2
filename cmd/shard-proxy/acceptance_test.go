package main

import (
	"bytes"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/admin"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch/demo"
)

// locate asks the admin plane which shard owns key.
func (p *proxyProc) locate(t *testing.T, key string) admin.LocateAnswer {
	t.Helper()
	a := p.adminGet(t, "/locate?key="+url.QueryEscape(key))
	if a.Status != http.StatusOK {
		t.Fatalf("/locate?key=%s: status %d, want 200 (body %q)", key, a.Status, a.Body)
	}
	return testutil.Decode[admin.LocateAnswer](t, a)
}

// hasKey matches a request that carried key in X-Shard-Key.
func hasKey(key string) func(testutil.Request) bool {
	return func(r testutil.Request) bool { return r.Header.Get("X-Shard-Key") == key }
}

// TestModulusStaticShards routes integer keys with --ring=modulus over three
// static shards and checks the owner three ways: the X-Shard header, the
// shard that really received the request, and /locate.
func TestModulusStaticShards(t *testing.T) {
	t.Parallel()
	shards := testutil.StartShards(t, 3, "shard")
	p := startProxy(t, "--ring=modulus", "--shards", shardList(shards))

	huge := "12345678901234567890123"
	n, _ := new(big.Int).SetString(huge, 10)
	hugeOwner := int(new(big.Int).Mod(n, big.NewInt(3)).Int64())

	tests := []struct {
		key  string
		want int // ordinal
	}{
		{"42", 0},
		{"43", 1},
		{"-1", 2},
		{huge, hugeOwner},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			want := fmt.Sprintf("shard-%d", tt.want)
			a := p.send(t, http.MethodGet, "/accounts/"+tt.key, tt.key, nil)
			if a.Status != http.StatusOK {
				t.Fatalf("status %d, want 200 (body %q)", a.Status, a.Body)
			}
			if got := a.Header.Get("X-Shard"); got != want {
				t.Errorf("X-Shard = %q, want %q", got, want)
			}
			if got := a.JSON(t)["shard"]; got != want {
				t.Errorf("answered by %v, want %q", got, want)
			}
			for i, s := range shards {
				if got := slices.ContainsFunc(s.Requests(), hasKey(tt.key)); got != (i == tt.want) {
					t.Errorf("%s received key %s: %v, want %v", s.Name, tt.key, got, i == tt.want)
				}
			}
			if loc := p.locate(t, tt.key); loc.Shard != want || loc.Ordinal != tt.want || loc.Key != tt.key {
				t.Errorf("/locate = %+v, want key %q on %s (ordinal %d)", loc, tt.key, want, tt.want)
			}
		})
	}
}

// TestDemo runs --demo 3 and checks that keys spread over the demo shards,
// that each demo answer agrees with X-Shard and /locate, and that the admin
// plane serves health, readiness and per-shard metrics.
func TestDemo(t *testing.T) {
	t.Parallel()
	p := startProxy(t, "--demo", "3")

	sent := map[string]int{} // requests answered 200, by shard
	for i := 0; len(sent) < 2; i++ {
		if i == 64 {
			t.Fatalf("64 keys all landed on %v; want at least two shards", sent)
		}
		key := "user-" + strconv.Itoa(i)
		a := p.send(t, http.MethodGet, "/demo/path?x=1", key, nil)
		if a.Status != http.StatusOK {
			t.Fatalf("key %s: status %d, want 200 (body %q)", key, a.Status, a.Body)
		}
		ans := testutil.Decode[demo.Answer](t, a)
		xs := a.Header.Get("X-Shard")
		if ans.Shard != xs || !strings.HasPrefix(xs, "demo-") {
			t.Errorf("key %s: demo answer from %q with X-Shard %q, want the same demo-N", key, ans.Shard, xs)
		}
		if ans.Key != key || ans.Path != "/demo/path" || ans.Query != "x=1" || ans.Method != http.MethodGet {
			t.Errorf("key %s: demo shard saw %+v, want GET /demo/path?x=1 with key %s", key, ans, key)
		}
		if loc := p.locate(t, key); loc.Shard != ans.Shard {
			t.Errorf("key %s: /locate says %q, the proxy routed to %q", key, loc.Shard, ans.Shard)
		}
		sent[ans.Shard]++
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		if a := p.adminGet(t, path); a.Status != http.StatusOK {
			t.Errorf("%s: status %d, want 200 (body %q)", path, a.Status, a.Body)
		}
	}
	a := p.adminGet(t, "/metrics")
	if a.Status != http.StatusOK {
		t.Fatalf("/metrics: status %d, want 200", a.Status)
	}
	got := requestsTotal(t, a.Body)
	for shard, n := range sent {
		if c := got[shard+" 200"]; c != float64(n) {
			t.Errorf(`shard_proxy_requests_total{shard=%q,code="200"} = %v, want %d`, shard, c, n)
		}
	}
}

// requestsTotal parses shard_proxy_requests_total from Prometheus text into
// values keyed by "<shard> <code>".
func requestsTotal(t *testing.T, text []byte) map[string]float64 {
	t.Helper()
	const name = "shard_proxy_requests_total{"
	series := map[string]float64{}
	for line := range strings.Lines(string(text)) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), name)
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			t.Fatalf("cannot parse metric line %q", line)
		}
		lv := map[string]string{}
		for _, pair := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(pair, "=")
			lv[k] = strings.Trim(v, `"`)
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("cannot parse metric line %q: %v", line, err)
		}
		series[lv["shard"]+" "+lv["code"]] = f
	}
	if len(series) == 0 {
		t.Fatalf("/metrics has no shard_proxy_requests_total series:\n%s", text)
	}
	return series
}

// TestBadInput sends requests that must each get a JSON error, never a
// crash, and then checks that normal requests still work.
func TestBadInput(t *testing.T) {
	t.Parallel()
	shards := testutil.StartShards(t, 1, "shard")
	// shard-0 is live, shard-1 is an address where nothing listens.
	p := startProxy(t, "--ring=modulus", "--shards", shards[0].URL+","+testutil.DeadAddr(t),
		"--key", "header:X-Shard-Key,body:account.id", "--max-body-bytes", "1KiB")

	type errorAnswer struct {
		Error string   `json:"error"`
		Shard string   `json:"shard"`
		Tried []string `json:"tried"`
		Rule  string   `json:"rule"`
		Limit int      `json:"limit"`
	}
	tests := []struct {
		name      string
		key       string
		body      []byte
		status    int
		want      errorAnswer
		wantShard string // X-Shard
	}{
		{name: "missing key", status: http.StatusBadRequest,
			want: errorAnswer{Error: "no shard key", Tried: []string{"header:X-Shard-Key", "body:account.id"}}},
		{name: "body not JSON", body: []byte("account=7"), status: http.StatusBadRequest,
			want: errorAnswer{Error: "request body is not valid JSON", Rule: "body:account.id"}},
		// Only a body rule buffers a body, so only it meets the limit.
		{name: "body too large", body: bytes.Repeat([]byte("x"), 2048), status: http.StatusRequestEntityTooLarge,
			want: errorAnswer{Error: "request body too large", Limit: 1024}},
		{name: "shard unreachable", key: "1", status: http.StatusBadGateway,
			want: errorAnswer{Error: "shard unreachable", Shard: "shard-1"}, wantShard: "shard-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := http.MethodGet
			if tt.body != nil {
				method = http.MethodPost
			}
			a := p.send(t, method, "/orders", tt.key, tt.body)
			if a.Status != tt.status {
				t.Errorf("status %d, want %d (body %q)", a.Status, tt.status, a.Body)
			}
			if got := a.Header.Get("X-Shard"); got != tt.wantShard {
				t.Errorf("X-Shard = %q, want %q", got, tt.wantShard)
			}
			got := testutil.Decode[errorAnswer](t, a)
			if got.Error != tt.want.Error || got.Shard != tt.want.Shard || got.Rule != tt.want.Rule ||
				got.Limit != tt.want.Limit || !slices.Equal(got.Tried, tt.want.Tried) {
				t.Errorf("body = %+v, want %+v", got, tt.want)
			}
		})
	}
	if got := len(shards[0].Requests()); got != 0 {
		t.Errorf("shard-0 received %d requests from the bad ones, want 0", got)
	}

	t.Run("still serving", func(t *testing.T) {
		if p.exited() {
			t.Fatal("shard-proxy exited")
		}
		a := p.send(t, http.MethodGet, "/orders", "0", nil)
		if a.Status != http.StatusOK || a.JSON(t)["shard"] != "shard-0" || a.Header.Get("X-Shard") != "shard-0" {
			t.Errorf("got %d %q from %q, want 200 shard-0 from shard-0", a.Status, a.Body, a.Header.Get("X-Shard"))
		}
		// The body rule finds the key, and the shard gets the body intact.
		body := `{"account":{"id":4},"note":"` + strings.Repeat("n", 512) + `"}`
		a = p.send(t, http.MethodPost, "/orders/by-body", "", []byte(body))
		if a.Status != http.StatusOK || a.Header.Get("X-Shard") != "shard-0" {
			t.Errorf("got %d %q from %q, want 200 from shard-0", a.Status, a.Body, a.Header.Get("X-Shard"))
		}
		reqs := shards[0].Requests()
		if len(reqs) != 2 || reqs[1].URI != "/orders/by-body" || string(reqs[1].Body) != body {
			t.Errorf("shard-0 received %+v, want the body request last with its body intact", reqs)
		}
	})
}
