// Package http2 is the HTTP/2 relay: a client connection is relayed frame
// by frame. Each request's head is decoded (HPACK, by x/net/http2), checked,
// routed by package route, and re-encoded on a multiplexed h2c connection
// to the owner (shardConn); DATA, trailers and resets then pass between the
// two streams with flow control on each side. One goroutine reads each
// connection and one writes it; a stream has a goroutine of its own only
// while it is held for a not-ready owner or waits for a new shard
// connection to be dialled.
//
// A stream whose owner speaks HTTP/1.1 is exchanged as an HTTP/1.1
// request on a pooled connection (h1shard.go); one whose key a body rule
// reads waits for its body first (body.go). The relay serves every HTTP/2
// client connection.
//
// Files: relay.go (the front end and its connections), conn.go (a client
// connection), stream.go (a relayed stream), body.go (body rules),
// shard.go (a shard connection and its pool), h1shard.go (HTTP/1.1
// shards), head.go (request heads for shards). Package h2wire sends the
// frames and keeps the flow-control windows.
package http2

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
)

// Flow-control windows the relay advertises to clients, and the limits it
// holds to (package h2wire has those of the shard side).
const (
	// streamWindow is the window of every stream we receive on: RFC
	// 9113's initial 65,535, so no SETTINGS is needed for it. A stream
	// holds at most this much waiting for its destination.
	streamWindow = 65535
	// connWindow is a connection's receive window: what one client
	// connection may have waiting in the relay, over all its streams.
	connWindow = 1 << 20
	// MaxClientStreams is how many streams a client may have open at once
	// (HAProxy's default is 100, nginx's 128).
	MaxClientStreams = 100
	// MaxHeaderList bounds a decoded header list (RFC 9113 §6.5.2
	// SETTINGS_MAX_HEADER_LIST_SIZE), either way.
	MaxHeaderList = 64 << 10
	// readBufSize is a connection's read buffer: small frames are read
	// many at a time, larger DATA frames straight into the Framer's
	// buffer. A connection holds one only while it has bytes unread
	// (sock.Reader): an idle connection holds none.
	readBufSize = 4 << 10
)

// readBufs are the connections' read buffers, client and shard side.
var readBufs = sock.NewReadBuffers(readBufSize)

// Config configures a Relay. Every field is required: the facade (package
// proxy) fills in the documented defaults.
type Config struct {
	// Router takes each stream's routing step.
	Router *route.Router
	// UpstreamTimeout bounds the wait for an answer's head, and a write
	// to a shard.
	UpstreamTimeout time.Duration
	// ClientHeaderTimeout bounds receiving the connection preface.
	ClientHeaderTimeout time.Duration
	// ClientWriteTimeout bounds a write to a client that does not read.
	ClientWriteTimeout time.Duration
	// IdleTimeout closes a connection without streams this long.
	IdleTimeout time.Duration
	// MaxRequestBodyBytes caps every request body (0: no limit).
	MaxRequestBodyBytes int64
	// MaxBodyBytes caps what a body rule buffers of a request body.
	MaxBodyBytes int
	// ClientBodyTimeout bounds the wait between two DATA frames of a body
	// a body rule waits for.
	ClientBodyTimeout time.Duration
	// Logger logs at debug level what peers get wrong.
	Logger *slog.Logger
}

// Relay is the HTTP/2 front end. Safe for concurrent use.
type Relay struct {
	cfg    Config
	router *route.Router
	conns  connSet
}

// New returns a Relay for cfg.
func New(cfg Config) *Relay { return &Relay{cfg: cfg, router: cfg.Router} }

// Shutdown sends GOAWAY on every connection and waits for their streams to
// finish until ctx ends; then it closes what is left and returns ctx's
// error.
func (r *Relay) Shutdown(ctx context.Context) error {
	if !r.conns.shutdown(ctx.Done()) {
		return ctx.Err()
	}
	return nil
}

// Conns is how many client connections the relay serves now.
func (r *Relay) Conns() int {
	r.conns.mu.Lock()
	defer r.conns.mu.Unlock()
	return len(r.conns.m)
}

// Streams is how many client streams the relay has open now.
func (r *Relay) Streams() int {
	r.conns.mu.Lock()
	defer r.conns.mu.Unlock()
	n := 0
	for c := range r.conns.m {
		c.w.Lock()
		n += len(c.streams)
		c.w.Unlock()
	}
	return n
}

// Held is how many answer bytes the relay holds now, over all its client
// connections, for clients that have not taken them yet.
func (r *Relay) Held() int {
	r.conns.mu.Lock()
	defer r.conns.mu.Unlock()
	n := 0
	for c := range r.conns.m {
		c.w.Lock()
		for _, s := range c.streams {
			n += len(s.resp.Pend)
		}
		c.w.Unlock()
	}
	return n
}

// IsPreface tells whether b starts with the HTTP/2 connection preface;
// with fewer bytes than the preface, whether they could be its start.
func IsPreface(b []byte) bool {
	n := min(len(b), len(preface))
	return n >= len("PRI * HTTP/2.0") && bytes.Equal(b[:n], preface[:n])
}

// preface starts every HTTP/2 connection (RFC 9113 §3.4). Its first line
// parses as an HTTP/1 head with version HTTP/2.0, which the HTTP/1.1
// engine then offers to the facade.
var preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// connSet tracks the relay's client connections, for Shutdown.
type connSet struct {
	mu       sync.Mutex
	m        map[*clientConn]struct{}
	draining bool
	wg       sync.WaitGroup
}

func (h *connSet) add(c *clientConn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining {
		return false
	}
	if h.m == nil {
		h.m = map[*clientConn]struct{}{}
	}
	h.m[c] = struct{}{}
	h.wg.Add(1)
	return true
}

func (h *connSet) done(c *clientConn) {
	h.mu.Lock()
	delete(h.m, c)
	h.mu.Unlock()
	h.wg.Done()
}

// shutdown sends GOAWAY on every relayed connection and waits for their
// streams to finish, until done closes; then it closes what is left. It
// reports whether they all finished.
func (h *connSet) shutdown(done <-chan struct{}) bool {
	h.mu.Lock()
	h.draining = true
	for c := range h.m {
		c.drain()
	}
	h.mu.Unlock()
	finished := make(chan struct{})
	go func() { h.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		return true
	case <-done:
	}
	h.mu.Lock()
	for c := range h.m {
		_ = c.w.NC.Close()
	}
	h.mu.Unlock()
	<-finished
	return false
}
