// Package proctest helps tests that run the shard-proxy binary as a
// process: it builds the binary once per test binary and reads the
// process's JSON log lines as they arrive. It is imported only by tests.
package proctest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Builder builds a command once, on first use, so that test runs that never
// start the process pay nothing. Safe for concurrent use.
type Builder struct {
	// Pkg is the package to build, relative to the test's directory.
	Pkg string
	// Race builds with the race detector, so that a data race in the
	// process shows in its output (and its exit status 66).
	Race bool
	// Dir receives the binary; "" means a directory of the first test's.
	Dir string

	once sync.Once
	path string
	err  error
}

// Path builds the binary if it is not built yet and returns its path.
func (b *Builder) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		dir := b.Dir
		if dir == "" {
			dir = t.TempDir()
		}
		out := filepath.Join(dir, filepath.Base(filepath.Clean(b.Pkg)))
		if b.Pkg == "." {
			out = filepath.Join(dir, "shard-proxy")
		}
		args := []string{"build", "-o", out}
		if b.Race {
			args = append(args, "-race")
		}
		args = append(args, b.Pkg)
		begin := time.Now()
		if msg, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
			return
		}
		b.path = out
		t.Logf("built %s (race=%v) in %v", out, b.Race, time.Since(begin).Round(time.Millisecond))
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
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
