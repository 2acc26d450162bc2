package admin

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBroadcastReachesEveryShardOnceIntact(t *testing.T) {
	shards := startShards(t, 5)
	topo := topologyOf(shards)
	a := startAdmin(t, Config{}, &topo)
	body := []byte("{\"evict\": [\"a\", \"b\"]}\n\x00\xff binary tail")
	h := http.Header{
		"Content-Type": {"application/octet-stream"},
		"X-Request-Id": {"r-1"},
		"X-Multi":      {"one", "two"},
		"Connection":   {"X-Drop"},
		"X-Drop":       {"hop-by-hop"},
	}
	r := call(t, "PUT", a.url+"/broadcast/cache/evict?scope=all&x=%20y&policy=all&timeout=5s", body, h)
	if r.status != 200 {
		t.Fatalf("status %d, want 200: %s", r.status, r.body)
	}
	rep := decode[BroadcastReport](t, r)
	if rep.Policy != PolicyAll || rep.Succeeded != 5 || rep.Failed != 0 || len(rep.Shards) != 5 {
		t.Fatalf("report %+v, want all 5 succeeded", rep)
	}
	for i, s := range shards {
		if rep.Shards[i].Ordinal != i || rep.Shards[i].Shard != s.name || rep.Shards[i].Status != 200 || rep.Shards[i].Body != `{"shard":"`+s.name+`"}` {
			t.Errorf("report entry %d = %+v", i, rep.Shards[i])
		}
		got := s.requests()
		if len(got) != 1 {
			t.Fatalf("%s received %d requests, want exactly 1", s.name, len(got))
		}
		g := got[0]
		if g.method != "PUT" || g.uri != "/cache/evict?scope=all&x=%20y" {
			t.Errorf("%s got %s %s, want PUT /cache/evict?scope=all&x=%%20y", s.name, g.method, g.uri)
		}
		if !bytes.Equal(g.body, body) {
			t.Errorf("%s got body %q, want %q", s.name, g.body, body)
		}
		if g.header.Get("X-Request-Id") != "r-1" || strings.Join(g.header.Values("X-Multi"), ",") != "one,two" || g.header.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("%s lost end-to-end headers: %v", s.name, g.header)
		}
		if g.header.Get("X-Drop") != "" {
			t.Errorf("%s got the hop-by-hop header X-Drop", s.name)
		}
	}
}

func TestBroadcastFailuresAndPolicies(t *testing.T) {
	shards := startShards(t, 5)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	shards[1].setAnswer(func(w http.ResponseWriter, r *http.Request) { // slow
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	shards[3].setAnswer(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		w.Write([]byte("boom"))
	})
	topo := topologyOf(shards)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	topo.Shards[2].Addr = ln.Addr().String() // down: nothing listens
	ln.Close()
	topo.Shards[4].Ready = false
	a := startAdmin(t, Config{}, &topo)

	tests := []struct {
		query      string
		wantStatus int
	}{
		{"", 502},
		{"?policy=all", 502},
		{"?policy=quorum", 502}, // 1 of 5 succeeded
		{"?policy=any", 200},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			start := time.Now()
			r := call(t, "POST", a.url+"/broadcast/flush"+sepQuery(tt.query, "timeout=300ms"), nil, nil)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.body)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("broadcast took %v although each shard is bounded by 300ms", el)
			}
			rep := decode[BroadcastReport](t, r)
			if rep.Succeeded != 1 || rep.Failed != 4 || len(rep.Shards) != 5 {
				t.Fatalf("report %+v, want 1 succeeded 4 failed", rep)
			}
			want := []struct {
				status int
				err    string
			}{{200, ""}, {0, "shard timeout"}, {0, "shard unreachable"}, {500, ""}, {0, "shard not ready"}}
			for i, w := range want {
				got := rep.Shards[i]
				if got.Status != w.status || !strings.HasPrefix(got.Error, w.err) || (w.err == "") != (got.Error == "") {
					t.Errorf("shard %d: status %d error %q, want status %d error %q", i, got.Status, got.Error, w.status, w.err)
				}
			}
			if rep.Shards[3].Body != "boom" {
				t.Errorf("500 body %q, want boom", rep.Shards[3].Body)
			}
		})
	}
	if n := len(shards[4].requests()); n != 0 {
		t.Errorf("the not-ready shard was contacted %d times", n)
	}
	// quorum met: 3 of 5 with the slow and 500 shards fixed
	shards[1].setAnswer(nil)
	shards[3].setAnswer(nil)
	r := call(t, "POST", a.url+"/broadcast/flush?policy=quorum&timeout=2s", nil, nil)
	if rep := decode[BroadcastReport](t, r); r.status != 200 || rep.Succeeded != 3 {
		t.Errorf("quorum with 3 of 5: status %d, report %+v", r.status, rep)
	}
}

func sepQuery(q, more string) string {
	if q == "" {
		return "?" + more
	}
	return q + "&" + more
}

func TestBroadcastTruncatesLargeBodies(t *testing.T) {
	shards := startShards(t, 1)
	big := strings.Repeat("é", ResultBodyLimit) // 2 bytes each: the cut falls mid-rune
	shards[0].setAnswer(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(big)) })
	topo := topologyOf(shards)
	a := startAdmin(t, Config{}, &topo)
	rep := decode[BroadcastReport](t, call(t, "GET", a.url+"/broadcast/dump", nil, nil))
	got := rep.Shards[0]
	if !got.Truncated || len(got.Body) > ResultBodyLimit || len(got.Body) < ResultBodyLimit-3 || !strings.HasPrefix(big, got.Body) {
		t.Errorf("truncated=%v len=%d, want a valid prefix of at most %d bytes", got.Truncated, len(got.Body), ResultBodyLimit)
	}
}

func TestBroadcastBadRequests(t *testing.T) {
	topo := topologyOf(startShards(t, 2))
	a := startAdmin(t, Config{Broadcast: BroadcastConfig{MaxBodyBytes: 16}}, &topo)
	for _, tt := range []struct {
		name, url string
		body      []byte
		want      int
	}{
		{"bad policy", "/broadcast/x?policy=most", nil, 400},
		{"bad timeout", "/broadcast/x?timeout=soon", nil, 400},
		{"body too large", "/broadcast/x", bytes.Repeat([]byte("x"), 17), 413},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if r := call(t, "POST", a.url+tt.url, tt.body, nil); r.status != tt.want || decode[errorBody](t, r).Error == "" {
				t.Errorf("status %d body %s, want %d with a JSON error", r.status, r.body, tt.want)
			}
		})
	}
	empty := startAdmin(t, Config{}, nil)
	if r := call(t, "POST", empty.url+"/broadcast/x", nil, nil); r.status != 503 {
		t.Errorf("broadcast without topology: %d, want 503", r.status)
	}
}

func TestAdminTokenAuth(t *testing.T) {
	shards := startShards(t, 2)
	topo := topologyOf(shards)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("first-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := NewTokenAuth(tokenFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := startAdmin(t, Config{Auth: auth}, &topo)
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

	for _, open := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := call(t, "GET", a.url+open, nil, nil); r.status != 200 {
			t.Errorf("%s without token: %d, want 200", open, r.status)
		}
	}
	for _, guarded := range []string{"/shards", "/locate?key=1", "/broadcast/x"} {
		if r := call(t, "GET", a.url+guarded, nil, nil); r.status != 401 || decode[errorBody](t, r).Error == "" {
			t.Errorf("%s without token: %d %s, want 401 JSON", guarded, r.status, r.body)
		}
		if r := call(t, "GET", a.url+guarded, nil, bearer("wrong")); r.status != 401 {
			t.Errorf("%s with a wrong token: %d, want 401", guarded, r.status)
		}
		if r := call(t, "GET", a.url+guarded, nil, bearer("first-secret")); r.status != 200 {
			t.Errorf("%s with the token: %d %s, want 200", guarded, r.status, r.body)
		}
	}
	if got := shards[0].requests()[0].header.Get("Authorization"); got != "" {
		t.Errorf("the admin token leaked to a shard: %q", got)
	}

	// Rotation, the way a Secret volume does it: a new file swapped in.
	next := tokenFile + ".new"
	if err := os.WriteFile(next, []byte("second-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, tokenFile); err != nil {
		t.Fatal(err)
	}
	if r := call(t, "GET", a.url+"/shards", nil, bearer("second-secret")); r.status != 200 {
		t.Errorf("new token after rotation: %d, want 200", r.status)
	}
	if r := call(t, "GET", a.url+"/shards", nil, bearer("first-secret")); r.status != 401 {
		t.Errorf("old token after rotation: %d, want 401", r.status)
	}
	// A broken rotation keeps the last good token rather than locking out.
	if err := os.WriteFile(tokenFile, []byte("  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := call(t, "GET", a.url+"/shards", nil, bearer("second-secret")); r.status != 200 {
		t.Errorf("token after an empty rotation: %d, want the last good token to work", r.status)
	}
}

func TestTokenFileMustHoldAToken(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, path := range []string{empty, filepath.Join(dir, "missing")} {
		if _, err := NewTokenAuth(path, nil); err == nil {
			t.Errorf("NewTokenAuth(%s) succeeded, want an error", path)
		}
	}
}
