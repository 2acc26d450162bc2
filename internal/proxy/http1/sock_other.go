//go:build !linux

package http1

import "net"

// sockFD: descriptors are not used on this platform.
func sockFD(net.Conn) int { return -1 }

// peek cannot look at a socket without reading on this platform.
func peek(int) (gone, data, ok bool) { return false, false, false }

// idleConnUsable assumes a pooled connection is usable; a failure on it is
// retried once on a fresh connection where the method allows.
func idleConnUsable(int) bool { return true }

// waitReadable cannot wait without reading here; the caller reads.
func waitReadable(net.Conn) bool { return true }

// awaitReadable cannot wait without reading here; the caller reads.
func awaitReadable(net.Conn) error { return nil }
