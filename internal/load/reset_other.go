//go:build !unix

package load

// isReset reports whether err is a connection reset by the peer.
func isReset(error) bool { return false }
