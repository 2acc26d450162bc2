//go:build !linux

package sock

import "net"

// FD: descriptors are not used on this platform.
func FD(net.Conn) int { return -1 }

// peek cannot look at a socket without reading on this platform.
func Peek(int) (gone, data, ok bool) { return false, false, false }

// IdleUsable assumes a pooled connection is usable; a failure on it is
// retried once on a fresh connection where the method allows.
func IdleUsable(int) bool { return true }

// WaitReadable cannot wait without reading here; the caller reads.
func WaitReadable(net.Conn) bool { return true }

// AwaitReadable cannot wait without reading here; the caller reads.
func AwaitReadable(net.Conn) error { return nil }

// HungUp cannot look at a socket here.
func HungUp(int) (hung, ok bool) { return false, false }
