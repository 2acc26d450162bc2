package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"testing"

	"go.uber.org/goleak"

	"github.com/shard-proxy/shard-proxy/internal/proctest"
)

// binDir holds the shard-proxy binary that the acceptance tests run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shard-proxy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	proxyBuild.Dir, proxyBuild.Race = dir, raceEnabled()
	// Every test waits for the processes, servers and clients it started, so
	// at the end nothing of the package may still run.
	goleak.VerifyTestMain(m, append(fasthttpBackground(),
		goleak.Cleanup(func(code int) {
			os.RemoveAll(dir)
			os.Exit(code)
		}))...)
}

// fasthttpBackground ignores goroutines that fasthttp starts and gives no
// way to stop; the in-process tests leave them behind:
//   - the server date updater, one per process, runs forever;
//   - a server's worker-pool cleaner notices that Serve returned only when
//     it next wakes, up to MaxIdleWorkerDuration (10s) later;
//   - a HostClient's idle-connection cleaner notices that its pool is empty
//     only when it next wakes, up to MaxIdleConnDuration (60s) later.
func fasthttpBackground() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	}
}

// proxyBuild builds the command once per test run, on first use, so that
// running only the flag tests (-run TestCLI) costs no build. When the tests
// run with -race, so does the binary: a data race in the proxy makes it exit
// with status 66, which the shutdown tests see, and shows in its stderr,
// which every acceptance test checks.
var proxyBuild = &proctest.Builder{Pkg: "."}

func proxyBinary(t *testing.T) string { return proxyBuild.Path(t) }

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
