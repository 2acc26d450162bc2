//go:build linux

package proxy

import "testing"

// inspectParked calls fn with what each parked client connection still
// holds of the engine's buffers, and returns how many there are.
func (r *running) inspectParked(t testing.TB, fn func(held []string)) int {
	return r.http1.Parked(fn)
}
