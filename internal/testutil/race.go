//go:build race

package testutil

// Race reports whether the tests run with the race detector. Tests that
// build the proxy binary build it with -race too, so that a data race in
// the process fails them.
const Race = true
