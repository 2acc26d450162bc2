package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

// TestAccessLogSIGHUP: the process writes one line per request to
// --access-log; after logrotate renames the file, SIGHUP makes it write
// to a new file at the path, and SIGTERM leaves every line written.
func TestAccessLogSIGHUP(t *testing.T) {
	shards := testutil.StartShards(t, 2, "shard")
	path := filepath.Join(t.TempDir(), "access.log")
	p := startProxy(t, "--shards", shardList(shards), "--access-log", path)
	read := func(name string) string { b, _ := os.ReadFile(name); return string(b) }
	if a := p.send(t, "GET", "/one?secret=1", "k1", nil); a.Status != 200 {
		t.Fatalf("status %d", a.Status)
	}
	eventually(t, waitTimeout, "the first line", func() bool { return strings.Contains(read(path), `"path":"/one"`) })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	p.signal(t, syscall.SIGHUP)
	waitLog(t, p.logs, "access log reopened", p.done, waitTimeout)
	p.send(t, "GET", "/two", "k2", nil)
	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t, waitTimeout); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	old, cur := read(path+".1"), read(path)
	if strings.Count(old, "\n") != 1 || strings.Count(cur, "\n") != 1 || !strings.Contains(cur, `"path":"/two"`) {
		t.Fatalf("rotated file:\n%s\nnew file:\n%s", old, cur)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(cur), &m); err != nil || m["status"] != float64(200) || m["shard"] == nil {
		t.Fatalf("line %q: %v", cur, err)
	}
	if strings.Contains(old+cur, "secret") || strings.Contains(old+cur, "k1") {
		t.Errorf("a query or a key was logged:\n%s%s", old, cur)
	}
}

// TestAccessLogFlagErrors: bad values and combinations are one-line
// errors with exit status 2 (1 for a file that cannot be opened).
func TestAccessLogFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--demo", "2", "--access-log", "stdout", "--access-log-sample", "2"}, 2, "want a share from 0 to 1"},
		{[]string{"--demo", "2", "--access-log", "stdout", "--access-log-sample", "x"}, 2, "--access-log-sample"},
		{[]string{"--demo", "2", "--access-log-query"}, 2, "go with --access-log"},
		{[]string{"--demo", "2", "--tracing", "zipkin"}, 2, "want otlp"},
		{[]string{"--demo", "2", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
			"--access-log", filepath.Join(t.TempDir(), "missing", "a.log")}, 1, "--access-log"},
	} {
		code, _, errOut := runCLI(t, nil, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 && code == 2 {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errOut, c.code, c.want)
		}
	}
}

// TestTracingFlushOnSIGTERM: with --tracing otlp and the OTEL_* variables
// of a real OTLP/HTTP receiver, a span held in the batch (its schedule
// is a minute) is exported when SIGTERM stops the process.
func TestTracingFlushOnSIGTERM(t *testing.T) {
	rcv := testutil.StartOTLPReceiver(t, "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.Endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
	shards := testutil.StartShards(t, 2, "shard")
	p := startProxy(t, "--shards", shardList(shards), "--tracing", "otlp")
	if a := p.send(t, "GET", "/traced", "k", nil); a.Status != 200 {
		t.Fatalf("status %d", a.Status)
	}
	if n := len(rcv.Spans()); n != 0 {
		t.Fatalf("%d spans before shutdown; the batch should hold them", n)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t, waitTimeout); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	spans := rcv.Spans()
	if len(spans) != 1 || spans[0].Name != "GET" || spans[0].Service != "shard-proxy" || spans[0].Attrs["url.path"] != "/traced" {
		t.Fatalf("spans after SIGTERM: %+v", spans)
	}
}
