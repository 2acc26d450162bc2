//go:build !linux

package http1

import "time"

// parker is a no-op where there is no epoll: idle connections keep their
// goroutine (but not their buffers).
type parker struct{}

func (*parker) park(*clientConn, time.Time) bool { return false }
func (*parker) drain()                           {}

func (*parker) inspect(func(*clientConn)) int { return 0 }
