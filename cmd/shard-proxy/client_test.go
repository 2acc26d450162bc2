package main

import (
	"bytes"
	"encoding/json"
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
	t.Run("shards", func(t *testing.T) {
		code, out, _ := runCLI(t, nil, "shards", "--admin", adminURL, "--admin-token-file", tokenFile)
		if code != 0 || !strings.Contains(out, "ring modulus, 3 replicas, 3 ready") || strings.Count(out, "shard-") != 3 {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("no token", func(t *testing.T) {
		code, _, errOut := runCLI(t, nil, "shards", "--admin", adminURL)
		if code != 1 || !strings.Contains(errOut, "401") {
			t.Errorf("exit %d, stderr %q; want 1 and a 401", code, errOut)
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
