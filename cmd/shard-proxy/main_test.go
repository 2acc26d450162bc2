package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

func TestMain(m *testing.M) {
	// Every test waits for the processes, servers and clients it started, so
	// at the end nothing of the package may still run.
	goleak.VerifyTestMain(m, testutil.LeakOptions(goleak.Cleanup(func(code int) {
		proxyBuild.Remove()
		os.Exit(code)
	}))...)
}

// proxyBuild builds the command once per test run, on first use, so that
// running only the flag tests (-run TestCLI) costs no build. When the tests
// run with -race, so does the binary: a data race in the proxy makes it exit
// with status 66, which the shutdown tests see, and shows in its stderr,
// which every acceptance test checks.
var proxyBuild = &testutil.Builder{Pkg: "."}

func proxyBinary(t *testing.T) string { return proxyBuild.Path(t) }
