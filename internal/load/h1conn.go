package load

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
)

// h1Sender is the load generator's own HTTP/1.1 client: one keep-alive
// connection per worker, the request written from the templates into a
// reused buffer in one write, the answer parsed in place by the proxy's own parsers
// (h1answer.go).
// Nothing is allocated per request once a connection is warm; that is
// what lets one core send tens of thousands of requests a second, which
// net/http's client cannot.
type h1Sender struct {
	target      *Target
	dialTimeout time.Duration
	timeout     time.Duration
}

var _ Sender = (*h1Sender)(nil)

// NewHTTP1Sender returns the raw HTTP/1.1 client for t (http:// only).
// timeout bounds each exchange, dialTimeout each connect.
func NewHTTP1Sender(t *Target, dialTimeout, timeout time.Duration) Sender {
	return &h1Sender{target: t, dialTimeout: dialTimeout, timeout: timeout}
}

func (s *h1Sender) NewConn() Conn { return &h1Conn{s: s} }
func (s *h1Sender) Close()        {}

type h1Conn struct {
	s    *h1Sender
	c    net.Conn
	br   *bufio.Reader
	wbuf []byte
	ans  h1Answer // the answer reader, reused
	used bool     // the connection carried an exchange already

	mu          sync.Mutex // guards c against Interrupt, and interrupted
	interrupted bool
}

// Do implements Conn. A request that finds its reused connection closed
// by the server before any byte of an answer (a keep-alive race) goes once
// more on a new connection when its method is idempotent.
func (c *h1Conn) Do(key []byte, a *Answer) error {
	c.wbuf = c.s.target.appendHTTP1(c.wbuf[:0], key)
	for attempt := 0; ; attempt++ {
		if c.c == nil {
			if err := c.dial(); err != nil {
				return err
			}
		}
		reused := c.used
		keep, err := c.exchange(a)
		if err == nil && keep {
			c.used = true
			return nil
		}
		c.closeConn()
		if err == nil {
			return nil
		}
		if c.isInterrupted() {
			return errInterrupted
		}
		if attempt > 0 || !reused || !errors.Is(err, errNoAnswer) || !h1.Idempotent(c.s.target.Method) {
			return err
		}
	}
}

// warm connects ahead of the first request.
func (c *h1Conn) warm() error {
	if c.c != nil {
		return nil
	}
	return c.dial()
}

func (c *h1Conn) dial() error {
	conn, err := net.DialTimeout("tcp", c.s.target.Addr, c.s.dialTimeout)
	if err != nil {
		return &opError{kind: "connect", err: err}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.interrupted {
		conn.Close()
		return errInterrupted
	}
	c.c, c.used = conn, false
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 16<<10)
	} else {
		c.br.Reset(conn)
	}
	return nil
}

// exchange writes the request in c.wbuf and reads its answer; keep
// reports whether the connection may carry the next one.
func (c *h1Conn) exchange(a *Answer) (keep bool, err error) {
	if err := c.c.SetDeadline(time.Now().Add(c.s.timeout)); err != nil {
		return false, err
	}
	if _, err := c.c.Write(c.wbuf); err != nil {
		return false, &opError{kind: kindOf(err, "write"), err: err}
	}
	ans := &c.ans
	ans.shard = a.Shard[:0]
	err = ans.read(c.br, c.s.target.Method == "HEAD")
	a.Shard, ans.shard = ans.shard, nil // the caller's buffer, not kept here
	if err != nil {
		return false, err
	}
	a.Status = ans.status
	return ans.keep, nil
}

func (c *h1Conn) closeConn() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

func (c *h1Conn) isInterrupted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.interrupted
}

// Interrupt implements Conn: a deadline in the past ends a read or write
// in progress at once.
func (c *h1Conn) Interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = true
	if c.c != nil {
		_ = c.c.SetDeadline(time.Unix(1, 0))
	}
}

func (c *h1Conn) Close() { c.closeConn() }

// opError is a failed exchange, with the kind the report counts it as:
// connect, write, read, timeout or protocol.
type opError struct {
	kind string
	err  error
}

func (e *opError) Error() string { return e.kind + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

// errNoAnswer is an exchange that ended before any byte of an answer.
var errNoAnswer = errors.New("connection closed before an answer")

func kindOf(err error, otherwise string) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return otherwise
}

// errorKind is the report's name for a failed request's error.
func errorKind(err error) string {
	var oe *opError
	switch {
	case errors.As(err, &oe):
		return oe.kind
	case errors.Is(err, errNoAnswer), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "read"
	}
	return kindOf(err, "other")
}
