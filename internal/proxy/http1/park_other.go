//go:build !linux

package http1

import (
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/upstream"
)

// parker is a no-op where there is no epoll: idle connections and
// requests waiting for their shard keep their goroutine (but not their
// buffers).
type parker struct{}

// parkedState: nothing is parked here.
type parkedState struct{}

func (*parker) park(*clientConn, time.Time) bool                        { return false }
func (*parker) parkWaiting(*clientConn, *upstream.Conn, time.Time) bool { return false }
func (*parker) drain()                                                  {}

func (*parker) inspect(func(*clientConn)) int { return 0 }
