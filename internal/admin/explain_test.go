package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/proxy/keys"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/ring"
)

// explainRig is a proxy serving its data port on a real socket beside its
// admin plane, over real shards.
type explainRig struct {
	data, admin string
	px          *proxy.Proxy
	shards      []*testutil.Shard
}

func startExplainRig(t *testing.T, rules string, rc ring.Config, maxBody int) *explainRig {
	t.Helper()
	parsed, err := keys.ParseRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	px, err := proxy.New(proxy.Config{Ring: rc, Keys: parsed, MaxBodyBytes: maxBody, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	shards := testutil.StartShards(t, 5, "web")
	if err := px.Apply(testutil.Topology(shards)); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = px.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = px.Shutdown(ctx)
	})
	srv := New(Config{Tables: px})
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return &explainRig{data: "http://" + ln.Addr().String(), admin: hs.URL, px: px, shards: shards}
}

// explainCase is one request, sent to the data port and explained.
type explainCase struct {
	name    string
	method  string
	path    string
	headers map[string][]string
	body    string
}

func (c explainCase) send(t *testing.T, base string) testutil.Answer {
	t.Helper()
	var body []byte
	if c.body != "" {
		body = []byte(c.body)
	}
	req := testutil.NewRequest(t, cmpOrGET(c.method), base+c.path, body)
	for n, vs := range c.headers {
		for _, v := range vs {
			req.Header.Add(n, v)
		}
	}
	return testutil.Do(t, testutil.Client(t), req)
}

func cmpOrGET(m string) string {
	if m == "" {
		return "GET"
	}
	return m
}

func (c explainCase) explain(t *testing.T, admin string) testutil.Answer {
	t.Helper()
	doc, _ := json.Marshal(ExplainRequest{Method: c.method, Path: c.path, Headers: c.headers, Body: c.body})
	return call(t, "POST", admin+"/explain", doc, http.Header{"Content-Type": {"application/json"}})
}

// TestExplainAgreesWithTheDataPort sends the same request to the data port
// and to /explain, for each of the five rule kinds and for the errors the
// data port gives, and checks that both name the same shard (or the same
// error with the same status).
func TestExplainAgreesWithTheDataPort(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 0))
	rig := startExplainRig(t, "header:X-Account,query:acct,cookie:sid,path:/accounts/{key},body:order.account",
		ring.Config{Algorithm: ring.Jump}, 1024)
	var cases []explainCase
	for i := range 20 {
		k := fmt.Sprintf("k%d-%d", i, rnd.IntN(1e9))
		cases = append(cases,
			explainCase{name: "header", path: "/x", headers: map[string][]string{"X-Account": {k}}},
			explainCase{name: "query", path: "/x?acct=" + k + "&z=1"},
			explainCase{name: "cookie", path: "/x", headers: map[string][]string{"Cookie": {"a=b; sid=" + k}}},
			explainCase{name: "path", path: "/accounts/" + k + "/orders"},
			explainCase{name: "body", method: "POST", path: "/orders", body: `{"order":{"account":"` + k + `"}}`},
		)
	}
	cases = append(cases,
		explainCase{name: "no key", path: "/x"},
		explainCase{name: "ambiguous header", path: "/x", headers: map[string][]string{"X-Account": {"1", "2"}}},
		explainCase{name: "ambiguous query", path: "/x?acct=1&acct=2"},
		explainCase{name: "bad body", method: "POST", path: "/orders", body: `{"order":`},
		explainCase{name: "body too large", method: "POST", path: "/orders", body: `{"order":{"account":"` + strings.Repeat("9", 2000) + `"}}`},
		explainCase{name: "float key", method: "POST", path: "/orders", body: `{"order":{"account":1.5}}`},
	)
	for _, c := range cases {
		got, want := c.explain(t, rig.admin), c.send(t, rig.data)
		if want.Status != http.StatusOK {
			if got.Status != want.Status || !bytes.Equal(bytes.TrimSpace(got.Body), bytes.TrimSpace(want.Body)) {
				t.Errorf("%s %s: explain %v, data port %v: want the same answer", c.name, c.path, got, want)
			}
			continue
		}
		a := testutil.Decode[ExplainAnswer](t, got)
		if shard := want.Header.Get(header.Shard); a.Shard != shard {
			t.Errorf("%s %s: explain names %s (rule %s, key %q), the data port sent it to %s", c.name, c.path, a.Shard, a.Rule, a.Key, shard)
		}
		if a.Hash != fmt.Sprintf("%016x", xxhash.Sum64String(a.Key)) || a.Ring != "jump" || a.Replicas != 5 || !a.Ready {
			t.Errorf("%s: %+v", c.name, a)
		}
	}
}

func TestExplainFields(t *testing.T) {
	rig := startExplainRig(t, "header:X-Account,query:acct,path:/accounts/{key}", ring.Config{Algorithm: ring.Modulus}, 0)
	a := testutil.Decode[ExplainAnswer](t, explainCase{path: "/accounts/42"}.explain(t, rig.admin))
	want := ExplainAnswer{Rule: "path:/accounts/{key}", Key: "42", Tried: []string{"header:X-Account", "query:acct"},
		Hash: fmt.Sprintf("%016x", xxhash.Sum64String("42")), Ring: "modulus", Replicas: 5,
		Fingerprint: rig.px.Table().Fingerprint, Ordinal: 2, Shard: "web-2", Address: rig.shards[2].Addr, Ready: true}
	if fmt.Sprint(a) != fmt.Sprint(want) {
		t.Errorf("explain /accounts/42:\n got %+v\nwant %+v", a, want)
	}
	// A not-ready owner is named, ready false (the data port holds, then 503).
	topo := testutil.Topology(rig.shards)
	topo.Shards[2].Ready = false
	if err := rig.px.Apply(topo); err != nil {
		t.Fatal(err)
	}
	a = testutil.Decode[ExplainAnswer](t, explainCase{path: "/x?acct=7"}.explain(t, rig.admin))
	if a.Shard != "web-2" || a.Ready || a.Rule != "query:acct" || len(a.Tried) != 1 {
		t.Errorf("explain with the owner not ready: %+v", a)
	}
	if r := (explainCase{path: "/x?acct=7"}).send(t, rig.data); r.Status != 503 || r.Header.Get(header.Shard) != "web-2" {
		t.Errorf("data port with the owner not ready: %v", r)
	}
}

func TestExplainRefusesBadDocuments(t *testing.T) {
	rig := startExplainRig(t, "header:X-Account", ring.Config{}, 0)
	for _, doc := range []string{
		``, `{`, `[]`, `{"path":"/x"} {}`, `{"path":"/x","extra":1}`, `{"path":"x"}`, `{"path":"/a b"}`,
		`{"path":"/x","method":"G ET"}`, `{"path":"/x","headers":{"Bad Name":["1"]}}`,
		`{"path":"/x","headers":{"X-Account":["1\r\nX: y"]}}`, `{"path":"/x","headers":{"X-Account":"1"}}`,
	} {
		r := call(t, "POST", rig.admin+"/explain", []byte(doc), nil)
		if e := r.JSON(t); r.Status != 400 || !strings.HasPrefix(fmt.Sprint(e["error"]), "explain: ") {
			t.Errorf("POST /explain %s: %v, want 400 explain: ...", doc, r)
		}
	}
	if r := call(t, "GET", rig.admin+"/explain", nil, nil); r.Status != 405 || r.Header.Get("Allow") != "POST" {
		t.Errorf("GET /explain: %v, want 405 Allow: POST", r)
	}
}
