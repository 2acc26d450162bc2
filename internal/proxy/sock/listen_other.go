//go:build !linux

package sock

import "net"

// Listen opens a TCP listener for client connections (deferred accept is
// Linux only).
func Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
