//go:build !linux

package proxy

import "net"

// peek cannot look at a socket without reading on this platform.
func peek(net.Conn) (gone, data, ok bool) { return false, false, false }

// idleConnUsable assumes a pooled connection is usable; a failure on it is
// retried once on a fresh connection where the method allows.
func idleConnUsable(net.Conn) bool { return true }

// waitReadable cannot wait without reading here; the caller reads.
func waitReadable(net.Conn) bool { return true }
