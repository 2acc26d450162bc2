//go:build race

package e2e

// raceEnabled makes the proxy binary a race-detector build too, so that a
// data race in the proxy fails these tests (see stopProxy).
const raceEnabled = true
