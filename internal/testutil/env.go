package testutil

import (
	"os"
	"strings"
)

// ChildEnv is the environment for a shard-proxy process that a test starts:
// the test's own, without SHARD_PROXY_* variables, so that only the
// arguments configure the process.
//
// A race-enabled binary by default lives on for a second after it exits,
// with its goroutines still running, which would let a request finish that
// the proxy abandoned and would add that second to every measured exit:
// GORACE atexit_sleep_ms=0 makes exit immediate. Other GORACE options the
// test was given are kept.
func ChildEnv() []string {
	var env []string
	gorace := "atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "SHARD_PROXY_"):
		case strings.HasPrefix(kv, "GORACE="):
			gorace = strings.TrimPrefix(kv, "GORACE=") + " " + gorace
		default:
			env = append(env, kv)
		}
	}
	return append(env, "GORACE="+gorace)
}
