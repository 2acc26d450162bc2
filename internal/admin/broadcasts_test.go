package admin

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[0-9]{4}-[0-9a-f]{8}$`)

// broadcastOK sends a broadcast and decodes its report, which must come
// with status want.
func broadcastOK(t *testing.T, a *adminUnderTest, method, uri string, body []byte, h http.Header, want int) BroadcastReport {
	t.Helper()
	r := call(t, method, a.url+uri, body, h)
	if r.Status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, uri, r.Status, want, r.Body)
	}
	return testutil.Decode[BroadcastReport](t, r)
}

func listBroadcasts(t *testing.T, a *adminUnderTest) []BroadcastSummary {
	t.Helper()
	r := call(t, "GET", a.url+"/broadcasts", nil, nil)
	if r.Status != 200 {
		t.Fatalf("GET /broadcasts: %d %s", r.Status, r.Body)
	}
	return testutil.Decode[BroadcastsAnswer](t, r).Broadcasts
}

func TestBroadcastIDsAndHistory(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
	a := startAdmin(t, Config{}, &topo)
	if got := listBroadcasts(t, a); got == nil || len(got) != 0 {
		t.Fatalf("history before any broadcast = %#v, want an empty list", got)
	}
	var reps []BroadcastReport
	for _, path := range []string{"/broadcast/a?x=1", "/broadcast/b", "/broadcast/c?policy=any"} {
		reps = append(reps, broadcastOK(t, a, "POST", path, []byte("body"), nil, 200))
	}
	for i, rep := range reps {
		if !idPattern.MatchString(rep.ID) || rep.Time.IsZero() || rep.IdempotencyKey != rep.ID || !rep.Retryable {
			t.Errorf("report %d: id %q time %v key %q retryable %v; want an id like 20260314T091502.123Z-0000-3fa9c1d2, the key equal to it",
				i, rep.ID, rep.Time, rep.IdempotencyKey, rep.Retryable)
		}
		if i > 0 && rep.ID <= reps[i-1].ID {
			t.Errorf("id %q does not sort after the earlier %q", rep.ID, reps[i-1].ID)
		}
		for _, s := range shards {
			if got := s.Requests()[i].Header.Get("Idempotency-Key"); got != rep.ID {
				t.Errorf("%s got Idempotency-Key %q with broadcast %d, want its id %q", s.Name, got, i, rep.ID)
			}
		}
	}
	list := listBroadcasts(t, a)
	want := []BroadcastSummary{summarize(reps[2]), summarize(reps[1]), summarize(reps[0])}
	if len(list) != 3 || !slices.EqualFunc(list, want, sameSummary) {
		t.Fatalf("/broadcasts =\n%+v\nwant newest first\n%+v", list, want)
	}
	if list[0].Policy != PolicyAny || list[2].Path != "/a?x=1" || list[2].Method != "POST" || list[2].Succeeded != 2 {
		t.Errorf("summaries %+v lack the method, path, policy or counts", list)
	}
	full := testutil.Decode[BroadcastReport](t, call(t, "GET", a.url+"/broadcasts/"+reps[1].ID, nil, nil))
	if full.ID != reps[1].ID || full.Path != "/b" || len(full.Shards) != 2 || full.Shards[1].Body != `{"shard":"web-1"}` {
		t.Errorf("/broadcasts/%s = %+v, want the full report", reps[1].ID, full)
	}
	for _, unknown := range []string{"nope", "20000101T000000.000Z-0000-00000000"} {
		r := call(t, "GET", a.url+"/broadcasts/"+unknown, nil, nil)
		if r.Status != 404 || !strings.Contains(testutil.Decode[errorBody](t, r).Error, "last 100") {
			t.Errorf("/broadcasts/%s: %d %s, want 404 JSON", unknown, r.Status, r.Body)
		}
	}
}

// sameSummary compares summaries, their times as instants (JSON drops the
// monotonic clock reading).
func sameSummary(a, b BroadcastSummary) bool {
	ok := a.Time.Equal(b.Time)
	a.Time, b.Time = time.Time{}, time.Time{}
	return ok && a == b
}

func TestBroadcastHistoryKeepsTheLast100(t *testing.T) {
	topo := testutil.Topology(testutil.StartShards(t, 1, "web"))
	a := startAdmin(t, Config{}, &topo)
	var ids []string
	for range DefaultHistory + 1 {
		ids = append(ids, broadcastOK(t, a, "POST", "/broadcast/x", nil, nil, 200).ID)
	}
	list := listBroadcasts(t, a)
	if len(list) != DefaultHistory || list[0].ID != ids[DefaultHistory] || list[DefaultHistory-1].ID != ids[1] {
		t.Fatalf("history of %d, from %s to %s; want the last %d, %s to %s",
			len(list), list[0].ID, list[len(list)-1].ID, DefaultHistory, ids[DefaultHistory], ids[1])
	}
	if r := call(t, "GET", a.url+"/broadcasts/"+ids[0], nil, nil); r.Status != 404 {
		t.Errorf("the 101st broadcast did not evict the first: /broadcasts/%s answered %d", ids[0], r.Status)
	}
	if r := call(t, "POST", a.url+"/broadcasts/"+ids[0]+"/retry", nil, nil); r.Status != 404 {
		t.Errorf("retry of an evicted broadcast: %d, want 404", r.Status)
	}
}

func TestBroadcastHistoryBoundsBytes(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	big := strings.Repeat("x", 10<<10)
	for _, s := range shards {
		s.Handle(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(big)) })
	}
	topo := testutil.Topology(shards)
	// Each report keeps 2 × 4 KiB of bodies: three fit in 30 KiB, four do not.
	a := startAdmin(t, Config{Broadcast: BroadcastConfig{HistoryBytes: 30 << 10}}, &topo)
	var ids []string
	for range 4 {
		rep := broadcastOK(t, a, "POST", "/broadcast/x", nil, nil, 200)
		if rep.Shards[0].Body != big || rep.Shards[0].Truncated {
			t.Fatalf("the live answer cut a %d-byte body to %d", len(big), len(rep.Shards[0].Body))
		}
		ids = append(ids, rep.ID)
	}
	list := listBroadcasts(t, a)
	if len(list) != 3 || list[2].ID != ids[1] {
		t.Fatalf("history %+v, want the last 3 of %v", list, ids)
	}
	kept := testutil.Decode[BroadcastReport](t, call(t, "GET", a.url+"/broadcasts/"+ids[3], nil, nil))
	if got := kept.Shards[1]; len(got.Body) != HistoryBodyLimit || !got.Truncated {
		t.Errorf("kept body of %d bytes, truncated=%v; want %d, truncated", len(got.Body), got.Truncated, HistoryBodyLimit)
	}
}

func TestBroadcastRetry(t *testing.T) {
	shards := testutil.StartShards(t, 6, "web")
	shards[1].Handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	moved := shards[5] // where web-3 comes back
	topo := testutil.Topology(shards[:5])
	topo.Shards[2].Ready = false
	topo.Shards[3].Addr = testutil.DeadAddr(t)
	shards[4].Handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	a := startAdmin(t, Config{}, &topo)

	body := []byte(`{"evict":["a"]}`)
	h := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"r-9"}}
	orig := broadcastOK(t, a, "PUT", "/broadcast/cache/evict?scope=all&policy=quorum&timeout=2s", body, h, 502)
	if orig.Succeeded != 1 || orig.Failed != 4 {
		t.Fatalf("original %+v, want 1 succeeded 4 failed", orig)
	}

	// web-1 recovers, web-2 becomes ready, web-3 moves, web-4 leaves.
	shards[1].Handle(nil)
	next := testutil.Topology(shards[:4])
	next.Shards[3].Addr = moved.Addr
	a.apply(t, next)
	retry := broadcastOK(t, a, "POST", "/broadcasts/"+orig.ID+"/retry", nil, nil, 200) // quorum: 3 of 4
	if retry.RetryOf != orig.ID || retry.ID == orig.ID || !idPattern.MatchString(retry.ID) || retry.Policy != PolicyQuorum ||
		retry.Method != "PUT" || retry.Path != "/cache/evict?scope=all" || retry.IdempotencyKey != orig.ID {
		t.Fatalf("retry %+v, want a new id, retry_of %s, the original's method, path, policy and key", retry, orig.ID)
	}
	checkRetried(t, retry, []string{"web-1", "web-2", "web-3", "web-4"}, 3)
	if got := retry.Shards[3]; got.Shard != "web-4" || got.Error != "shard left the ring" || got.Ordinal != 4 {
		t.Errorf("the shard that left: %+v", got)
	}
	if got := retry.Shards[2]; got.Address != moved.Addr || got.Status != 200 {
		t.Errorf("the moved shard: %+v, want 200 from %s", got, moved.Addr)
	}
	if n := len(shards[0].Requests()); n != 1 {
		t.Errorf("web-0, which succeeded, got %d requests, want only the original", n)
	}
	for _, s := range []*testutil.Shard{shards[1], shards[2], moved} {
		got := s.Requests()
		last := got[len(got)-1]
		if last.Method != "PUT" || last.URI != "/cache/evict?scope=all" || !bytes.Equal(last.Body, body) ||
			last.Header.Get("X-Request-Id") != "r-9" || last.Header.Get("Idempotency-Key") != orig.ID {
			t.Errorf("%s got %s %s %q %v; want the original request with Idempotency-Key %s", s.Name, last.Method, last.URI, last.Body, last.Header, orig.ID)
		}
	}
	if k := shards[1].Requests()[0].Header.Get("Idempotency-Key"); k != orig.ID {
		t.Errorf("web-1's first Idempotency-Key %q, want %q as on the retry", k, orig.ID)
	}

	// Retrying the retry sends only to the shard that is still failed.
	again := broadcastOK(t, a, "POST", "/broadcasts/"+retry.ID+"/retry", nil, nil, 502)
	checkRetried(t, again, []string{"web-4"}, 0)
	if again.RetryOf != retry.ID || again.IdempotencyKey != orig.ID {
		t.Errorf("retry of the retry: retry_of %q key %q, want %q and %q", again.RetryOf, again.IdempotencyKey, retry.ID, orig.ID)
	}
	list := listBroadcasts(t, a)
	if len(list) != 3 || list[0].ID != again.ID || list[1].RetryOf != orig.ID || list[2].RetryOf != "" {
		t.Errorf("history %+v, want the two retries over the original", list)
	}
}

// checkRetried checks that rep covers exactly the shards named, ok of them
// succeeding.
func checkRetried(t *testing.T, rep BroadcastReport, names []string, ok int) {
	t.Helper()
	var got []string
	for _, s := range rep.Shards {
		got = append(got, s.Shard)
	}
	if !slices.Equal(got, names) || rep.Succeeded != ok || rep.Failed != len(names)-ok {
		t.Errorf("retry reached %v, %d succeeded %d failed; want %v, %d succeeded", got, rep.Succeeded, rep.Failed, names, ok)
	}
}

func TestBroadcastRetryKeepsTheCallersKey(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	shards[1].Handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	topo := testutil.Topology(shards)
	a := startAdmin(t, Config{}, &topo)
	orig := broadcastOK(t, a, "DELETE", "/broadcast/cache", nil, http.Header{"Idempotency-Key": {"caller-7"}}, 502)
	if orig.IdempotencyKey != "caller-7" {
		t.Errorf("report key %q, want the caller's caller-7", orig.IdempotencyKey)
	}
	shards[1].Handle(nil)
	retry := broadcastOK(t, a, "POST", "/broadcasts/"+orig.ID+"/retry", nil, nil, 200)
	checkRetried(t, retry, []string{"web-1"}, 1)
	for _, s := range shards {
		for i, req := range s.Requests() {
			if k := req.Header.Values("Idempotency-Key"); len(k) != 1 || k[0] != "caller-7" {
				t.Errorf("%s request %d: Idempotency-Key %q, want the caller's caller-7 alone", s.Name, i, k)
			}
		}
	}
	r := call(t, "POST", a.url+"/broadcasts/"+retry.ID+"/retry", nil, nil)
	if e := testutil.Decode[errorBody](t, r); r.Status != 409 || e.Error != "nothing to retry" {
		t.Errorf("retry of a broadcast without failures: %d %s, want 409 nothing to retry", r.Status, r.Body)
	}
	if n := len(shards[1].Requests()); n != 2 {
		t.Errorf("web-1 got %d requests, want 2", n)
	}
}

func TestBroadcastRetryRefusals(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	shards[0].Handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	topo := testutil.Topology(shards)
	a := startAdmin(t, Config{}, &topo)
	large := broadcastOK(t, a, "POST", "/broadcast/x", bytes.Repeat([]byte("x"), HistoryRequestLimit), nil, 502)
	small := broadcastOK(t, a, "POST", "/broadcast/x", nil, nil, 502)
	if large.Retryable || !small.Retryable {
		t.Errorf("retryable: %v for a body over the bound, %v for none; want false, true", large.Retryable, small.Retryable)
	}
	for _, tt := range []struct {
		name, method, path string
		want               int
		wantErr            string
	}{
		{"request not kept", "POST", "/broadcasts/" + large.ID + "/retry", 409, "cannot be retried"},
		{"policy given", "POST", "/broadcasts/" + small.ID + "/retry?policy=any", 400, "keeps the policy"},
		{"bad timeout", "POST", "/broadcasts/" + small.ID + "/retry?timeout=soon", 400, "timeout"},
		{"unknown", "POST", "/broadcasts/nope/retry", 404, "no broadcast"},
		{"list by POST", "POST", "/broadcasts", 405, "use GET"},
		{"report by DELETE", "DELETE", "/broadcasts/" + small.ID, 405, "use GET"},
		{"retry by GET", "GET", "/broadcasts/" + small.ID + "/retry", 405, "use POST"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, tt.method, a.url+tt.path, nil, nil)
			if e := testutil.Decode[errorBody](t, r); r.Status != tt.want || !strings.Contains(e.Error, tt.wantErr) {
				t.Errorf("%s %s: %d %s, want %d and an error saying %q", tt.method, tt.path, r.Status, r.Body, tt.want, tt.wantErr)
			}
		})
	}
	if n := len(shards[0].Requests()); n != 2 {
		t.Errorf("the shard got %d requests, want only the 2 broadcasts", n)
	}
}

func TestBroadcastHistoryNeedsTheToken(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	topo := testutil.Topology(shards)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := NewTokenAuth(tokenFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := startAdmin(t, Config{Auth: auth}, &topo)
	bearer := http.Header{"Authorization": {"Bearer s3cret"}}
	shards[0].Handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	orig := broadcastOK(t, a, "POST", "/broadcast/x", nil, bearer, 502)
	shards[0].Handle(nil)
	for _, tt := range []struct{ method, path string }{
		{"GET", "/broadcasts"}, {"GET", "/broadcasts/" + orig.ID}, {"POST", "/broadcasts/" + orig.ID + "/retry"},
	} {
		if r := call(t, tt.method, a.url+tt.path, nil, nil); r.Status != 401 {
			t.Errorf("%s %s without the token: %d, want 401", tt.method, tt.path, r.Status)
		}
		if r := call(t, tt.method, a.url+tt.path, nil, bearer); r.Status != 200 {
			t.Errorf("%s %s with the token: %d %s, want 200", tt.method, tt.path, r.Status, r.Body)
		}
	}
	if got := shards[0].Requests()[1].Header; got.Get("Authorization") != "" || got.Get("Idempotency-Key") != orig.ID {
		t.Errorf("the retry reached the shard with Authorization %q, Idempotency-Key %q; want none and %q",
			got.Get("Authorization"), got.Get("Idempotency-Key"), orig.ID)
	}
}

func TestIDsSortAsTheyAreMade(t *testing.T) {
	base := time.Date(2026, 3, 14, 9, 15, 2, 123_000_000, time.UTC)
	now := base
	src := idSource{clock: func() time.Time { return now }}
	var ids []string
	for i := range 2*idSeqMax + 10 {
		if i == idSeqMax+5 {
			now = base.Add(-time.Hour) // the clock steps back
		}
		id, _ := src.next()
		ids = append(ids, id)
	}
	for i, id := range ids {
		if !idPattern.MatchString(id) || (i > 0 && id <= ids[i-1]) {
			t.Fatalf("id %d %q after %q: want the pattern and a strictly higher id", i, id, ids[max(i-1, 0)])
		}
	}
	if !strings.HasPrefix(ids[0], "20260314T091502.123Z-0000-") || !strings.HasPrefix(ids[idSeqMax+1], "20260314T091502.124Z-0000-") {
		t.Errorf("ids %q, %q: want the start time and a counter that moves to the next millisecond when full", ids[0], ids[idSeqMax+1])
	}
}
