//go:build linux

package proxy

import "testing"

// inspectParked calls fn for each client connection the parker holds and
// returns how many there are. It holds the parker's lock meanwhile: no
// goroutine serves a parked connection, and none can resume it, so its
// fields can be read.
func (r *running) inspectParked(t testing.TB, fn func(cc *clientConn)) int {
	pk := &r.parker
	pk.once.Do(pk.start) // as the first park does; orders the read of pk.parked after start
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if fn != nil {
		for _, pc := range pk.parked {
			fn(pc.cc)
		}
	}
	return len(pk.parked)
}
