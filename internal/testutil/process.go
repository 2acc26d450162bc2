package testutil

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Builder builds a command once, on first use, so that test runs that never
// start the process pay nothing. When the tests run with the race detector
// (Race), so does the binary: a data race in the process then shows in its
// output and its exit status (66). Safe for concurrent use.
type Builder struct {
	// Pkg is the package to build, relative to the test's directory.
	Pkg string

	once sync.Once
	dir  string // made on the first build; Remove deletes it
	path string
	err  error
}

// Path builds the binary if it is not built yet and returns its path.
func (b *Builder) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		begin := time.Now()
		b.path, b.err = b.build()
		if b.err == nil {
			t.Logf("built %s (race=%v) in %v", b.path, Race, time.Since(begin).Round(time.Millisecond))
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// build runs go build into a directory of the Builder's own, which outlives
// the test that asked first: later tests run the same binary.
func (b *Builder) build() (string, error) {
	dir, err := os.MkdirTemp("", "shard-proxy-test-")
	if err != nil {
		return "", err
	}
	b.dir = dir
	name := filepath.Base(filepath.Clean(b.Pkg))
	if b.Pkg == "." {
		name = "shard-proxy"
	}
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	if Race {
		args = append(args, "-race")
	}
	args = append(args, b.Pkg)
	if msg, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return out, nil
}

// Remove deletes the binary and its directory, if Path built it. TestMain
// calls it after the tests have run.
func (b *Builder) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// Log collects a process's output (its io.Writer) and lets tests find and
// wait for JSON log lines by message. Safe for concurrent use.
type Log struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

// NewLog returns an empty Log.
func NewLog() *Log { return &Log{changed: make(chan struct{})} }

// Write appends p and wakes waiters.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// String returns everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Find returns the first complete JSON line whose msg is msg; when there is
// none yet, it returns nil and a channel closed on the next write.
func (l *Log) Find(msg string) (map[string]any, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			return rec, nil
		}
	}
	return nil, l.changed
}

// Wait returns the first JSON line whose msg is msg, waiting for it until
// stop is closed (the process exited) or timeout passes; then it returns
// the error that says which.
func (l *Log) Wait(msg string, stop <-chan struct{}, timeout time.Duration) (map[string]any, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		rec, changed := l.Find(msg)
		if rec != nil {
			return rec, nil
		}
		select {
		case <-changed:
		case <-stop:
			if rec, _ := l.Find(msg); rec != nil {
				return rec, nil
			}
			return nil, fmt.Errorf("the process exited before logging %q", msg)
		case <-timer.C:
			return nil, fmt.Errorf("no %q log line after %v", msg, timeout)
		}
	}
}

// Tail returns the last n lines written.
func (l *Log) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
