package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/admin"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// runCLI runs a client subcommand in-process and returns its exit status,
// stdout and stderr.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli(args, envOf(env), &out, &errOut, nil)
	return code, out.String(), errOut.String()
}

func TestClientSubcommands(t *testing.T) {
	shards := testutil.StartShards(t, 3, "shard")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, "--ring", "modulus", "--shards", shardList(shards), "--admin-token-file", tokenFile)
	adminURL := "http://" + p.admin
	auth := map[string]string{"SHARD_PROXY_ADMIN_TOKEN": "s3cret"}

	t.Run("locate table", func(t *testing.T) {
		code, out, errOut := runCLI(t, auth, "locate", "43", "--admin", adminURL)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "KEY") || strings.Join(strings.Fields(lines[1])[:3], " ") != "43 1 shard-1" {
			t.Errorf("output:\n%s\nwant a header and the row 43 1 shard-1 …", out)
		}
	})
	t.Run("locate json", func(t *testing.T) {
		code, out, _ := runCLI(t, auth, "locate", "--admin", adminURL, "-o", "json", "--", "-1")
		var a admin.LocateAnswer
		if code != 0 || json.Unmarshal([]byte(out), &a) != nil || a.Shard != "shard-2" || a.Key != "-1" {
			t.Errorf("exit %d, output %s; want JSON for -1 on shard-2", code, out)
		}
	})
	t.Run("locate planned", func(t *testing.T) {
		code, out, errOut := runCLI(t, auth, "locate", "43", "--replicas", "4", "--admin", adminURL)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.HasSuffix(lines[0], "PLANNED") {
			t.Fatalf("output:\n%s\nwant a header ending in PLANNED and one row", out)
		}
		// 43 mod 3 is 1 today, 43 mod 4 is 3 with four shards.
		if f := strings.Fields(lines[1]); len(f) != 6 || f[0] != "43" || f[2] != "shard-1" || f[5] != "shard-3" {
			t.Errorf("row %q, want 43 1 shard-1 … shard-3", lines[1])
		}
		code, out, _ = runCLI(t, auth, "locate", "43", "--replicas", "5", "-o", "json", "--admin", adminURL)
		var a admin.LocateAnswer
		if code != 0 || json.Unmarshal([]byte(out), &a) != nil || a.Planned == nil || a.Planned.Shard != "shard-3" || a.Planned.Ordinal != 3 {
			t.Errorf("exit %d, output %s; want JSON planning 43 onto shard-3", code, out)
		}
	})
	t.Run("plan table", func(t *testing.T) {
		code, out, errOut := runCLI(t, auth, "plan", "--replicas", "4", "--admin", adminURL)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		// Modulus 3 -> 4 moves 3/4 of the keys: 1/12 between each pair of
		// different old and new owners, 9 pairs.
		if len(lines) != 13 || !strings.HasPrefix(lines[0], "ring modulus, 3 → 4 shards: 7") ||
			!strings.HasSuffix(lines[0], "of the key space moves (estimated from 100000 sample keys)") ||
			strings.Join(strings.Fields(lines[2]), " ") != "FROM TO FRACTION" {
			t.Fatalf("output:\n%s\nwant a headline, a header, 9 moves and a total", out)
		}
		if f := strings.Fields(lines[3]); len(f) != 3 || f[0] != "shard-0" || f[1] != "shard-1" || !strings.HasPrefix(f[2], "0.08") {
			t.Errorf("first move %q, want shard-0 shard-1 0.08…", lines[3])
		}
		if f := strings.Fields(lines[12]); len(f) != 2 || f[0] != "total" || !strings.HasPrefix(f[1], "0.7") {
			t.Errorf("last line %q, want the total, about 0.75", lines[12])
		}
	})
	t.Run("plan json", func(t *testing.T) {
		code, out, _ := runCLI(t, auth, "plan", "--admin", adminURL, "-o", "json", "--replicas", "2")
		var a admin.PlanAnswer
		if code != 0 || json.Unmarshal([]byte(out), &a) != nil || a.From != 3 || a.To != 2 || a.Method != "sample" || len(a.Moves) == 0 {
			t.Errorf("exit %d, output %s; want JSON for 3 -> 2", code, out)
		}
	})
	t.Run("plan over the bound", func(t *testing.T) {
		code, _, errOut := runCLI(t, auth, "plan", "--replicas", "5000", "--admin", adminURL)
		if code != 2 || !strings.Contains(errOut, "1 to 4096") {
			t.Errorf("exit %d, stderr %q; want 2 and the range", code, errOut)
		}
	})
	t.Run("shards", func(t *testing.T) {
		code, out, _ := runCLI(t, nil, "shards", "--admin", adminURL, "--admin-token-file", tokenFile)
		if code != 0 || !strings.Contains(out, "ring modulus, 3 replicas, 3 ready") || strings.Count(out, "shard-") != 3 {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("no token", func(t *testing.T) {
		for _, args := range [][]string{{"shards"}, {"plan", "--replicas", "4"}, {"locate", "1", "--replicas", "4"}} {
			code, _, errOut := runCLI(t, nil, append(args, "--admin", adminURL)...)
			if code != 1 || !strings.Contains(errOut, "401") {
				t.Errorf("%q: exit %d, stderr %q; want 1 and a 401", args, code, errOut)
			}
		}
	})
	t.Run("broadcast with data from a file", func(t *testing.T) {
		data := filepath.Join(dir, "body.json")
		os.WriteFile(data, []byte(`{"evict":"all"}`), 0o600)
		code, out, errOut := runCLI(t, auth, "broadcast", "POST", "/cache/evict", "--data", "@"+data, "--admin", adminURL)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(out, "3 succeeded, 0 failed, policy all: policy met") {
			t.Errorf("output:\n%s", out)
		}
		for _, s := range shards {
			got := s.Requests()
			if len(got) == 0 || got[len(got)-1].URI != "/cache/evict" || string(got[len(got)-1].Body) != `{"evict":"all"}` {
				t.Errorf("%s did not get the broadcast with its body: %+v", s.Name, got)
			}
		}
	})
	t.Run("bad usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"locate"},
			{"locate", "a", "b"},
			{"locate", "-1"},
			{"shards", "-o", "yaml"},
			{"shards", "--admin", "localhost:9090"},
			{"plan"},
			{"plan", "4"},
			{"plan", "--replicas", "0"},
			{"plan", "--replicas", "four"},
			{"locate", "1", "--replicas", "-2"},
			{"broadcast", "POST"},
			{"broadcast", "POST", "no-slash"},
			{"broadcast", "POST", "/x", "--data", "@/nonexistent/file"},
		} {
			code, _, errOut := runCLI(t, auth, append(args, "--admin", adminURL)...)
			if args[len(args)-1] == "localhost:9090" {
				code, _, errOut = runCLI(t, auth, args...)
			}
			if code != 2 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || errOut == "" {
				t.Errorf("%q: exit %d, stderr %q; want 2 and one line", args, code, errOut)
			}
		}
	})

	// Audit: one structured line per broadcast, naming who and what.
	rec := waitLog(t, p.logs, "broadcast", p.done, waitTimeout)
	for k, want := range map[string]string{"method": "POST", "path": "/cache/evict", "policy": "all", "outcome": "success"} {
		if rec[k] != want {
			t.Errorf("broadcast log %s = %v, want %s", k, rec[k], want)
		}
	}
	if r, _ := rec["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
		t.Errorf("broadcast log remote = %v, want the caller's address", rec["remote"])
	}
	if s, _ := rec["shards"].(string); s != "shard-0=200 shard-1=200 shard-2=200" {
		t.Errorf("broadcast log shards = %q", s)
	}
}

func TestPrintPlan(t *testing.T) {
	tests := []struct {
		name string
		plan admin.PlanAnswer
		want string
	}{
		{
			name: "exact with moves too small to list",
			plan: admin.PlanAnswer{Ring: "consistent", Partitions: 7919, From: 2, To: 3, Method: "exact", MovedFraction: 0.3334,
				Moves:    []admin.PlanMove{{From: "web-0", To: "web-2", Fraction: 0.1667}, {From: "web-1", To: "web-2", Fraction: 0.1666}},
				Unlisted: &admin.PlanUnlisted{Moves: 2, Fraction: 0.0001}},
			want: "ring consistent, 2 → 3 shards: 33.34% of the key space moves (exact, 7919 partitions compared)\n\n" +
				"FROM               TO     FRACTION\n" +
				"web-0              web-2  0.1667\n" +
				"web-1              web-2  0.1666\n" +
				"(2 smaller moves)         0.0001\n" +
				"total                     0.3334\n",
		},
		{
			name: "nothing moves",
			plan: admin.PlanAnswer{Ring: "jump", From: 3, To: 3, Method: "sample", SampleKeys: 100000, Moves: []admin.PlanMove{}},
			want: "ring jump, 3 → 3 shards: 0.00% of the key space moves (estimated from 100000 sample keys)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printPlan(&b, tt.plan); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("printed:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestClientBroadcastPolicyExitStatus(t *testing.T) {
	shards := testutil.StartShards(t, 3, "shard")
	list := shards[0].URL + "," + shards[1].URL + ",http://" + testutil.DeadAddr(t)
	p := startProxy(t, "--shards", list)
	adminURL := "http://" + p.admin

	code, out, _ := runCLI(t, nil, "broadcast", "DELETE", "/cache", "--admin", adminURL, "--timeout", "2s")
	if code != 1 || !strings.Contains(out, "POLICY NOT MET") || !strings.Contains(out, "shard unreachable") {
		t.Errorf("policy all with a dead shard: exit %d, output:\n%s", code, out)
	}
	code, out, _ = runCLI(t, nil, "broadcast", "DELETE", "/cache", "--policy", "quorum", "--admin", adminURL, "-o", "json")
	var rep admin.BroadcastReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Succeeded != 2 || rep.Failed != 1 || rep.Policy != "quorum" {
		t.Errorf("policy quorum with 2 of 3: exit %d, output %s", code, out)
	}
}

func TestClientBroadcastsAndRetry(t *testing.T) {
	shards := testutil.StartShards(t, 3, "shard")
	shards[2].Handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, "--shards", shardList(shards), "--admin-token-file", tokenFile)
	adminURL := "http://" + p.admin
	auth := map[string]string{"SHARD_PROXY_ADMIN_TOKEN": "s3cret"}

	if code, out, errOut := runCLI(t, auth, "broadcasts", "--admin", adminURL); code != 0 || out != "no broadcasts yet\n" {
		t.Errorf("broadcasts before any: exit %d, output %q %s", code, out, errOut)
	}
	code, out, _ := runCLI(t, auth, "broadcast", "POST", "/flush", "--admin", adminURL, "-o", "json")
	var orig admin.BroadcastReport
	if code != 1 || json.Unmarshal([]byte(out), &orig) != nil || orig.ID == "" || orig.Failed != 1 {
		t.Fatalf("broadcast with a failing shard: exit %d, output %s", code, out)
	}
	code, out, _ = runCLI(t, auth, "broadcasts", "--admin", adminURL)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "ID METHOD PATH POLICY SUCCEEDED FAILED DURATION RETRY OF" {
		t.Fatalf("broadcasts: exit %d, output:\n%s\nwant a header and one row", code, out)
	}
	if f := strings.Fields(lines[1]); len(f) != 8 || f[0] != orig.ID || strings.Join(f[1:6], " ") != "POST /flush all 2 1" || f[7] != "-" {
		t.Errorf("row %q, want %s POST /flush all 2 1 … -", lines[1], orig.ID)
	}

	shards[2].Handle(nil)
	code, out, errOut := runCLI(t, auth, "broadcast", "--retry", orig.ID, "--timeout", "5s", "--admin", adminURL)
	if code != 0 || !strings.Contains(out, "1 succeeded, 0 failed, policy all: policy met") || !strings.Contains(out, ", a retry of "+orig.ID) {
		t.Fatalf("retry: exit %d, output:\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, auth, "broadcasts", "--admin", adminURL, "-o", "json")
	var list admin.BroadcastsAnswer
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Broadcasts) != 2 || list.Broadcasts[0].RetryOf != orig.ID {
		t.Fatalf("broadcasts -o json: exit %d, output %s; want the retry first, linked to %s", code, out, orig.ID)
	}
	got := shards[2].Requests()
	if len(got) != 2 || len(shards[0].Requests()) != 1 || got[1].Header.Get("Idempotency-Key") != orig.ID || got[0].Header.Get("Idempotency-Key") != orig.ID {
		t.Errorf("shard-2 got %d requests, shard-0 %d; want 2 and 1, with Idempotency-Key %s on both of shard-2's", len(got), len(shards[0].Requests()), orig.ID)
	}

	for _, tt := range []struct {
		args     []string
		env      map[string]string
		code     int
		inStderr string
	}{
		{[]string{"broadcast", "--retry", list.Broadcasts[0].ID}, auth, 1, "409 Conflict: nothing to retry"},
		{[]string{"broadcast", "--retry", "no-such-id"}, auth, 1, "404"},
		{[]string{"broadcasts"}, nil, 1, "401"},
		{[]string{"broadcast", "--retry", orig.ID, "POST", "/x"}, auth, 2, "--retry takes no METHOD"},
		{[]string{"broadcast", "--retry", orig.ID, "--policy", "any"}, auth, 2, "--retry takes no"},
		{[]string{"broadcasts", "extra"}, auth, 2, "want 0 argument(s)"},
	} {
		code, _, errOut := runCLI(t, tt.env, append(tt.args, "--admin", adminURL)...)
		if code != tt.code || !strings.Contains(errOut, tt.inStderr) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q; want %d and one line with %q", tt.args, code, errOut, tt.code, tt.inStderr)
		}
	}
}

func TestPrintReportNamesTheRetry(t *testing.T) {
	rep := admin.BroadcastReport{ID: "20260314T091502.123Z-0001-3fa9c1d2", Policy: "all", Method: "POST", Path: "/flush",
		Succeeded: 1, Failed: 1, DurationMS: 2.5, Retryable: true,
		Shards: []admin.ShardResult{{Ordinal: 0, Shard: "web-0", Status: 200, DurationMS: 1, Body: "ok"}, {Ordinal: 1, Shard: "web-1", Error: "shard unreachable"}}}
	var b bytes.Buffer
	if err := printReport(&b, rep, false); err != nil {
		t.Fatal(err)
	}
	want := "POST /flush: 1 succeeded, 1 failed, policy all: POLICY NOT MET (2.5 ms)\n" +
		"broadcast 20260314T091502.123Z-0001-3fa9c1d2; send it again to the failed shards with: shard-proxy broadcast --retry 20260314T091502.123Z-0001-3fa9c1d2\n\n" +
		"ORDINAL  SHARD  STATUS  DURATION  RESULT\n" +
		"0        web-0  200     1.0ms     ok\n" +
		"1        web-1  -       0.0ms     shard unreachable\n"
	if got := b.String(); got != want {
		t.Errorf("printed:\n%s\nwant:\n%s", got, want)
	}
	b.Reset()
	rep.RetryOf, rep.Retryable = "20260314T091500.000Z-0000-00000001", false
	if err := printReport(&b, rep, false); err != nil {
		t.Fatal(err)
	}
	if line := strings.Split(b.String(), "\n")[1]; line != "broadcast "+rep.ID+", a retry of "+rep.RetryOf+"; its request is too large for the history to keep, so it cannot be retried" {
		t.Errorf("second line %q", line)
	}
}
