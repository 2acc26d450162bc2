package admin

import (
	"bytes"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

func TestBroadcastReachesEveryShardOnceIntact(t *testing.T) {
	shards := testutil.StartShards(t, 5, "web")
	topo := testutil.Topology(shards)
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
	if r.Status != 200 {
		t.Fatalf("status %d, want 200: %s", r.Status, r.Body)
	}
	rep := testutil.Decode[BroadcastReport](t, r)
	if rep.Policy != PolicyAll || rep.Succeeded != 5 || rep.Failed != 0 || len(rep.Shards) != 5 {
		t.Fatalf("report %+v, want all 5 succeeded", rep)
	}
	for i, s := range shards {
		if rep.Shards[i].Ordinal != i || rep.Shards[i].Shard != s.Name || rep.Shards[i].Status != 200 || rep.Shards[i].Body != `{"shard":"`+s.Name+`"}` {
			t.Errorf("report entry %d = %+v", i, rep.Shards[i])
		}
		got := s.Requests()
		if len(got) != 1 {
			t.Fatalf("%s received %d requests, want exactly 1", s.Name, len(got))
		}
		g := got[0]
		if g.Method != "PUT" || g.URI != "/cache/evict?scope=all&x=%20y" {
			t.Errorf("%s got %s %s, want PUT /cache/evict?scope=all&x=%%20y", s.Name, g.Method, g.URI)
		}
		if !bytes.Equal(g.Body, body) {
			t.Errorf("%s got body %q, want %q", s.Name, g.Body, body)
		}
		if g.Header.Get("X-Request-Id") != "r-1" || strings.Join(g.Header.Values("X-Multi"), ",") != "one,two" || g.Header.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("%s lost end-to-end headers: %v", s.Name, g.Header)
		}
		if g.Header.Get("X-Drop") != "" {
			t.Errorf("%s got the hop-by-hop header X-Drop", s.Name)
		}
	}
}

func TestBroadcastFailuresAndPolicies(t *testing.T) {
	shards := testutil.StartShards(t, 5, "web")
	shards[1].Hold() // slow
	shards[3].Handle(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		w.Write([]byte("boom"))
	})
	topo := testutil.Topology(shards)
	topo.Shards[2].Addr = testutil.DeadAddr(t) // down: nothing listens
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
			if r.Status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.wantStatus, r.Body)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("broadcast took %v although each shard is bounded by 300ms", el)
			}
			rep := testutil.Decode[BroadcastReport](t, r)
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
	if n := len(shards[4].Requests()); n != 0 {
		t.Errorf("the not-ready shard was contacted %d times", n)
	}
	// quorum met: 3 of 5 with the slow and 500 shards fixed
	shards[1].Release()
	shards[3].Handle(nil)
	r := call(t, "POST", a.url+"/broadcast/flush?policy=quorum&timeout=2s", nil, nil)
	if rep := testutil.Decode[BroadcastReport](t, r); r.Status != 200 || rep.Succeeded != 3 {
		t.Errorf("quorum with 3 of 5: status %d, report %+v", r.Status, rep)
	}
}

func sepQuery(q, more string) string {
	if q == "" {
		return "?" + more
	}
	return q + "&" + more
}

func TestBroadcastTruncatesLargeBodies(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	big := strings.Repeat("é", ResultBodyLimit) // 2 bytes each: the cut falls mid-rune
	shards[0].Handle(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(big)) })
	topo := testutil.Topology(shards)
	a := startAdmin(t, Config{}, &topo)
	rep := testutil.Decode[BroadcastReport](t, call(t, "GET", a.url+"/broadcast/dump", nil, nil))
	got := rep.Shards[0]
	if !got.Truncated || len(got.Body) > ResultBodyLimit || len(got.Body) < ResultBodyLimit-3 || !strings.HasPrefix(big, got.Body) {
		t.Errorf("truncated=%v len=%d, want a valid prefix of at most %d bytes", got.Truncated, len(got.Body), ResultBodyLimit)
	}
}

func TestBroadcastBadRequests(t *testing.T) {
	topo := testutil.Topology(testutil.StartShards(t, 2, "web"))
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
			if r := call(t, "POST", a.url+tt.url, tt.body, nil); r.Status != tt.want || testutil.Decode[errorBody](t, r).Error == "" {
				t.Errorf("status %d body %s, want %d with a JSON error", r.Status, r.Body, tt.want)
			}
		})
	}
	empty := startAdmin(t, Config{}, nil)
	if r := call(t, "POST", empty.url+"/broadcast/x", nil, nil); r.Status != 503 {
		t.Errorf("broadcast without topology: %d, want 503", r.Status)
	}
}

func TestAdminTokenAuth(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
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
		if r := call(t, "GET", a.url+open, nil, nil); r.Status != 200 {
			t.Errorf("%s without token: %d, want 200", open, r.Status)
		}
	}
	for _, guarded := range []string{"/shards", "/locate?key=1", "/plan?replicas=3", "/broadcast/x"} {
		if r := call(t, "GET", a.url+guarded, nil, nil); r.Status != 401 || testutil.Decode[errorBody](t, r).Error == "" {
			t.Errorf("%s without token: %d %s, want 401 JSON", guarded, r.Status, r.Body)
		}
		if r := call(t, "GET", a.url+guarded, nil, bearer("wrong")); r.Status != 401 {
			t.Errorf("%s with a wrong token: %d, want 401", guarded, r.Status)
		}
		if r := call(t, "GET", a.url+guarded, nil, bearer("first-secret")); r.Status != 200 {
			t.Errorf("%s with the token: %d %s, want 200", guarded, r.Status, r.Body)
		}
	}
	if got := shards[0].Requests()[0].Header.Get("Authorization"); got != "" {
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
	if r := call(t, "GET", a.url+"/shards", nil, bearer("second-secret")); r.Status != 200 {
		t.Errorf("new token after rotation: %d, want 200", r.Status)
	}
	if r := call(t, "GET", a.url+"/shards", nil, bearer("first-secret")); r.Status != 401 {
		t.Errorf("old token after rotation: %d, want 401", r.Status)
	}
	// A broken rotation keeps the last good token rather than locking out.
	if err := os.WriteFile(tokenFile, []byte("  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := call(t, "GET", a.url+"/shards", nil, bearer("second-secret")); r.Status != 200 {
		t.Errorf("token after an empty rotation: %d, want the last good token to work", r.Status)
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

// Every broadcast is logged as one line at info, with each shard's result;
// with info off (--log-level warn) nothing is logged or built.
func TestBroadcastAuditLine(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
	topo.Shards[1].Ready = false
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		var buf syncBuffer
		a := startAdmin(t, Config{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))}, &topo)
		call(t, "POST", a.url+"/broadcast/flush", nil, nil)
		got := buf.String()
		if want := `shards="web-0=200 web-1=not_ready"`; (level == slog.LevelInfo) != strings.Contains(got, want) {
			t.Errorf("level %v: log %q; want %s exactly when info is on", level, got, want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the handler's and the test's use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
