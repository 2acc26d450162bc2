package accesslog

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// decision is a served request's record.
func decision(path string) *route.Decision {
	d := &route.Decision{}
	d.Begin(route.HTTP1, time.Date(2026, 12, 7, 14, 3, 0, 123456789, time.UTC))
	d.Describe([]byte("GET"), []byte(path), []byte("a=1"), "10.0.0.9:4711", false)
	d.Shard = &watch.Shard{Name: "web-2", Ordinal: 2, Addr: "10.1.0.2:8080"}
	d.Rule, d.Key, d.Status = "header:X-Shard-Key", []byte("42"), 200
	d.BytesOut = 5
	return d
}

// waitFor polls cond until it holds or a few seconds passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLineFormat: one exact line, with escaping of what a client sends.
func TestLineFormat(t *testing.T) {
	l := &Log{cfg: Config{}}
	d := decision("/a\"b\\c\x01\xff/é")
	end := d.Start.Add(1500 * time.Microsecond)
	d.TTFB, d.OwnerWait = 1234*time.Microsecond, 2*time.Millisecond
	got := string(l.appendLine(nil, d, end))
	want := `{"time":"2026-12-07T14:03:00.123456Z","duration_ms":1.500,"proto":"HTTP/1.1","tls":false,` +
		`"client":"10.0.0.9:4711","method":"GET","path":"/a\"b\\c\u0001\ufffd/é","status":200,"shard":"web-2",` +
		`"ordinal":2,"upstream":"10.1.0.2:8080","rule":"header:X-Shard-Key","owner_wait_ms":2.000,` +
		`"bytes_in":0,"bytes_out":5,"ttfb_ms":1.234}` + "\n"
	if got != want {
		t.Fatalf("line\n%s\nwant\n%s", got, want)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(got), &m); err != nil || m["path"] != "/a\"b\\c\x01\ufffd/é" {
		t.Fatalf("not JSON, or the path did not survive: %v %q", err, m["path"])
	}
}

// TestRecordAllocations: writing a line allocates nothing once the pool
// is warm.
func TestRecordAllocations(t *testing.T) {
	l, err := Open(Config{Dest: filepath.Join(t.TempDir(), "a.log"), Sample: 1, KeyHash: true, Query: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := decision("/x")
	end := time.Now()
	for range 2000 { // every buffer the measured run may hold at once
		l.Record(d, end)
	}
	waitFor(t, "the writer to catch up", func() bool { return len(l.queue) == 0 })
	if n := testing.AllocsPerRun(1000, func() { l.Record(d, end) }); n > 0.01 {
		t.Errorf("Record allocates %.2f times per line, want 0", n)
	}
}

// blockingWriter blocks every Write until release is closed; entered
// gets a value when a Write begins.
type blockingWriter struct {
	entered chan struct{}
	release chan struct{}
	w       io.Writer
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.release
	return b.w.Write(p)
}

// TestFullQueueDrops: with the writer stuck on the first line, Record
// still returns at once; exactly the queue's worth of lines waits, the
// rest are dropped and counted, and what waited is written once the
// writer moves again.
func TestFullQueueDrops(t *testing.T) {
	var out strings.Builder
	bw := &blockingWriter{entered: make(chan struct{}, 1), release: make(chan struct{}), w: &out}
	reg := prometheus.NewRegistry()
	l, err := Open(Config{Dest: "stdout", Stdout: bw, Sample: 1, Queue: 4, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	d := decision("/x")
	l.Record(d, d.Start)
	select {
	case <-bw.entered: // the writer is stuck writing the first line
	case <-time.After(5 * time.Second):
		t.Fatal("the writer never wrote")
	}
	start := time.Now()
	const n = 200
	for range n {
		l.Record(d, d.Start)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("%d Records took %v with the writer stuck", n, took)
	}
	if got := l.Dropped(); got != n-4 {
		t.Errorf("dropped %d of %d with a queue of 4, want %d", got, n, n-4)
	}
	if got := testutil.ToFloat64(l.drops); got != n-4 {
		t.Errorf("access_log_dropped_total %v, want %d", got, n-4)
	}
	close(bw.release)
	_ = l.Close()
	if lines := strings.Count(out.String(), "\n"); lines != 1+4 {
		t.Errorf("%d lines written, want 5 (the first and the 4 queued)", lines)
	}
}

// TestReopenAfterRename: logrotate renames the file, Reopen makes a new
// one at the path; lines before go to the old file, after to the new.
func TestReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	l, err := Open(Config{Dest: path, Sample: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Record(decision("/before"), time.Now())
	waitFor(t, "the first line", func() bool { b, _ := os.ReadFile(path); return strings.Contains(string(b), "/before") })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Record(decision("/still-old"), time.Now()) // the old file, until Reopen
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Record(decision("/after"), time.Now())
	waitFor(t, "a line in the new file", func() bool { b, _ := os.ReadFile(path); return strings.Contains(string(b), "/after") })
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "/before") || !strings.Contains(string(old), "/still-old") || strings.Contains(string(old), "/after") {
		t.Errorf("rotated file:\n%s", old)
	}
	if strings.Count(string(cur), "\n") != 1 {
		t.Errorf("new file:\n%s", cur)
	}
}

// TestOpenErrors: a bad share or an unwritable path is an error, not a
// panic.
func TestOpenErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Dest: "stdout", Sample: 1.5},
		{Dest: "stdout", Sample: -0.1},
		{Dest: ""},
		{Dest: filepath.Join(t.TempDir(), "no", "such", "dir", "a.log"), Sample: 1},
	} {
		if l, err := Open(cfg); err == nil {
			_ = l.Close()
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
}

// BenchmarkAppendLine is the cost of building one line.
func BenchmarkAppendLine(b *testing.B) {
	l := &Log{cfg: Config{KeyHash: true}}
	d := decision("/accounts/42/transfer")
	end := d.Start.Add(time.Millisecond)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = l.appendLine(buf[:0], d, end)
	}
}

// BenchmarkRecordToFile is a line's whole cost when every request is
// logged to a file: built, queued, and (on the writer) written.
func BenchmarkRecordToFile(b *testing.B) {
	l, err := Open(Config{Dest: filepath.Join(b.TempDir(), "a.log"), Sample: 1, Queue: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	d := decision("/accounts/42/transfer")
	end := d.Start.Add(time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		l.Record(d, end)
	}
	_ = l.Close()
	if l.Dropped() > 0 {
		b.Logf("%d of %d dropped", l.Dropped(), b.N)
	}
}
