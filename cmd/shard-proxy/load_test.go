package main

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// TestLoadBadInput: each bad input exits non-zero with one line on
// standard error, within 5 s, and sends nothing.
func TestLoadBadInput(t *testing.T) {
	shards := testutil.StartShards(t, 1, "s")
	url := shards[0].URL + "/{key}"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--keys", "zipf:1:100", url}, "zipf exponent must be a number above 1"},
		{[]string{"--keys", "zipf:0.5:100", url}, "zipf exponent must be a number above 1"},
		{[]string{"--rate", "0", url}, "--rate 0: want a rate above 0"},
		{[]string{"--keys", "gauss:10", url}, `unknown key source "gauss"`},
		{[]string{"--rate", "10", "http://" + testutil.DeadAddr(t) + "/{key}"}, "cannot reach"},
		{[]string{"--rate", "10", "--concurrency", "2", url}, "want one"},
		{[]string{"-o", "yaml", url}, "want text or json"},
		{[]string{url, url}, "want one URL"},
		{[]string{"--http2", "https://127.0.0.1:1/{key}"}, "want an http:// URL"},
		{[]string{"--rate", "10", "--direct", "http://" + testutil.DeadAddr(t), url}, "no topology"},
	} {
		var stdout, stderr bytes.Buffer
		start := time.Now()
		code := cli(append([]string{"load", "-q"}, c.args...), func(string) string { return "" }, &stdout, &stderr, nil)
		took := time.Since(start)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if code == 0 || len(lines) != 1 || !strings.Contains(lines[0], c.want) || took > 5*time.Second {
			t.Errorf("load %q: exit %d after %v, stderr %q; want non-zero within 5s and one line with %q",
				c.args, code, took, stderr.String(), c.want)
		}
	}
	if n := len(shards[0].Requests()); n != 0 {
		t.Errorf("the shard got %d requests from bad invocations; want none", n)
	}
}

// TestLoadCtrlC: SIGINT in the middle of a run prints the report of what
// was measured so far, and exits 130.
func TestLoadCtrlC(t *testing.T) {
	shards := testutil.StartShards(t, 1, "s")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, proxyBinary(t), "load", "--rate", "200", "--duration", "60s", "--keys", "seq:1000", shards[0].URL+"/{key}")
	cmd.WaitDelay = 5 * time.Second
	var stdout bytes.Buffer
	stderr := testutil.NewLog()
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the progress line says requests were sent", func() bool {
		return strings.Contains(stderr.String(), "] sent ")
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("exit: %v; want status 130", err)
	}
	out := stdout.String()
	// The test shard names no shard in X-Shard (a proxy would): its
	// answers are the unrouted row.
	if !strings.Contains(out, "INTERRUPTED after") || !regexp.MustCompile(`unrouted +[1-9]\d* .* 200:[1-9]`).MatchString(out) {
		t.Errorf("stdout after Ctrl-C:\n%s\nwant the partial report with the answers so far", out)
	}
	if n := len(shards[0].Requests()); n == 0 {
		t.Errorf("the shard got no request")
	}
}
