package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// A Sender makes the connections of a run. The run gives each of its
// workers a Conn of its own. The raw HTTP/1.1 client (NewHTTP1Sender) is
// the fast path; RoundTripperSender sends through any http.RoundTripper:
// HTTP/2 with prior knowledge, HTTPS, and a client that sends each request
// straight to its owner pod.
type Sender interface {
	// NewConn returns a Conn for one worker.
	NewConn() Conn
	// Close releases what the Sender holds once every Conn is closed.
	Close()
}

// A Conn sends one request at a time. Do and Close are called by the
// worker that owns the Conn; Interrupt may be called from any goroutine.
type Conn interface {
	// Do sends the request for key and waits for the whole answer.
	Do(key []byte, a *Answer) error
	// Interrupt makes a Do in progress, and every later one, return soon
	// with an error.
	Interrupt()
	// Close closes the Conn's connection, if any.
	Close()
}

// Answer is what Do learnt of an answer. Shard is valid until the next Do
// on the same Conn.
type Answer struct {
	Status int
	// Shard is the answer's X-Shard field (empty when it had none).
	Shard []byte
}

// errInterrupted is what Do returns after Interrupt.
var errInterrupted = errors.New("interrupted")

// RoundTripperSender sends each request through RT. ShardOf, if set, names
// the shard of an answer (a client that routes requests itself knows it
// without an X-Shard field); by default it is the X-Shard field.
type RoundTripperSender struct {
	Target  *Target
	RT      http.RoundTripper
	ShardOf func(key []byte, h http.Header) string
	// KeyContext, if set, gives each request's context from the key: a
	// client that routes by key (the public client's WithKey) learns it
	// there instead of parsing the request again.
	KeyContext func(ctx context.Context, key []byte) context.Context
	// Closer, if set, is called by Close.
	Closer func()
}

var _ Sender = (*RoundTripperSender)(nil)

// NewConn implements Sender.
func (s *RoundTripperSender) NewConn() Conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &rtConn{s: s, ctx: ctx, cancel: cancel}
}

// Close implements Sender.
func (s *RoundTripperSender) Close() {
	if s.Closer != nil {
		s.Closer()
	}
}

type rtConn struct {
	s      *RoundTripperSender
	ctx    context.Context
	cancel context.CancelFunc
	buf    []byte
}

func (c *rtConn) Do(key []byte, a *Answer) error {
	t := c.s.Target
	c.buf = append(append(c.buf[:0], t.Scheme+"://"+t.Host...), t.path.appendTo(nil, key)...)
	var body io.Reader = http.NoBody
	if t.hasBody() {
		body = bytes.NewReader(t.body.appendTo(nil, key))
	}
	ctx := c.ctx
	if c.s.KeyContext != nil {
		ctx = c.s.KeyContext(ctx, key)
	}
	req, err := http.NewRequestWithContext(ctx, t.Method, string(c.buf), body)
	if err != nil {
		return err
	}
	req.Host = t.Host
	req.Header.Set("User-Agent", "shard-proxy-load")
	for _, h := range t.headers {
		req.Header.Add(h.name, string(h.value.appendTo(nil, key)))
	}
	resp, err := c.s.RT.RoundTrip(req)
	if err != nil {
		if c.ctx.Err() != nil {
			return errInterrupted
		}
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	a.Status = resp.StatusCode
	if c.s.ShardOf != nil {
		a.Shard = append(a.Shard[:0], c.s.ShardOf(key, resp.Header)...)
	} else {
		a.Shard = append(a.Shard[:0], resp.Header.Get("X-Shard")...)
	}
	return nil
}

func (c *rtConn) Interrupt() { c.cancel() }
func (c *rtConn) Close()     { c.cancel() }

// newH2CSender speaks HTTP/2 with prior knowledge (h2c) to the target
// through net/http's client, whose streams all workers share on one
// connection (more once the server's stream limit is reached).
func newH2CSender(t *Target, dialTimeout, timeout time.Duration) *RoundTripperSender {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols:   &protos,
		DialContext: (&net.Dialer{Timeout: dialTimeout}).DialContext,
		HTTP2:       &http.HTTP2Config{SendPingTimeout: timeout},
	}
	return &RoundTripperSender{Target: t, RT: timeoutRT{tr, timeout}, Closer: tr.CloseIdleConnections}
}

// NewDirectSender sends each request through rt, a client that takes it
// straight to the pod owning its key (the public client's RoundTripper),
// told the key by keyContext; timeout bounds each exchange.
func NewDirectSender(t *Target, rt http.RoundTripper, keyContext func(context.Context, []byte) context.Context, timeout time.Duration) *RoundTripperSender {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &RoundTripperSender{Target: t, RT: timeoutRT{rt, timeout}, KeyContext: keyContext}
}

// newHTTPSSender sends HTTPS requests through net/http, one connection per
// worker at most.
func newHTTPSSender(t *Target, dialTimeout, timeout time.Duration, conns int) *RoundTripperSender {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dialTimeout}).DialContext,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		TLSHandshakeTimeout: dialTimeout,
		ForceAttemptHTTP2:   true,
	}
	return &RoundTripperSender{Target: t, RT: timeoutRT{tr, timeout}, Closer: tr.CloseIdleConnections}
}

// timeoutRT bounds each round trip and the reading of its body.
type timeoutRT struct {
	rt      http.RoundTripper
	timeout time.Duration
}

func (t timeoutRT) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	resp, err := t.rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
	once   sync.Once
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.cancel)
	return err
}

// SenderOptions choose and tune the Sender NewSender makes.
type SenderOptions struct {
	// HTTP2 sends HTTP/2 with prior knowledge (h2c) over one connection
	// (http:// only).
	HTTP2 bool
	// DialTimeout bounds each connect (default 3s), Timeout each exchange
	// (default 10s).
	DialTimeout, Timeout time.Duration
	// MaxConns bounds the connections of an https:// target (default 10000).
	MaxConns int
}

// NewSender returns the Sender for t: the raw HTTP/1.1 client for http://,
// h2c when o.HTTP2, net/http's client for https://. via names it for the
// report.
func NewSender(t *Target, o SenderOptions) (s Sender, via string, err error) {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 3 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 10000
	}
	switch {
	case o.HTTP2 && t.Scheme != "http":
		return nil, "", fmt.Errorf("--http2 is HTTP/2 with prior knowledge over plain TCP (h2c): want an http:// URL, not %s://", t.Scheme)
	case o.HTTP2:
		return newH2CSender(t, o.DialTimeout, o.Timeout), "h2c", nil
	case t.Scheme == "https":
		return newHTTPSSender(t, o.DialTimeout, o.Timeout, o.MaxConns), "https", nil
	}
	return NewHTTP1Sender(t, o.DialTimeout, o.Timeout), "http/1.1", nil
}

// CheckReachable connects to addr once, so that a URL nobody listens on
// fails at once with one line instead of a run full of errors.
func CheckReachable(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			err = inner // "connect: connection refused", without the address twice
		}
		return fmt.Errorf("cannot reach %s: %w", addr, err)
	}
	return c.Close()
}
