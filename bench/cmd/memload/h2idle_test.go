package main

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/bench/internal/benchline"
)

// h2cServer serves h2c with prior knowledge on a loopback port: 200 for a
// request with X-Shard-Key, 400 without. It records the keys it saw and
// keeps the server-side connections, so a test can close them.
type h2cServer struct {
	srv   *http.Server
	addr  string
	mu    sync.Mutex
	keys  []string
	conns []net.Conn
}

func startH2C(t *testing.T, status int) *h2cServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &h2cServer{addr: ln.Addr().String()}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	s.srv = &http.Server{
		Protocols: &protos,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.keys = append(s.keys, r.Header.Get("X-Shard-Key"))
			s.mu.Unlock()
			if r.ProtoMajor != 2 || r.Header.Get("X-Shard-Key") == "" {
				w.WriteHeader(400)
				return
			}
			w.WriteHeader(status)
			w.Write([]byte("ok\n"))
		}),
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.mu.Lock()
				s.conns = append(s.conns, c)
				s.mu.Unlock()
			}
		},
	}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// waitFor polls cond every 10 ms until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestH2IdleGetThenHold: an h2c connection makes its one GET with the key,
// is open while the server holds it, and is seen as closed once the
// server closes it.
func TestH2IdleGetThenHold(t *testing.T) {
	s := startH2C(t, 200)
	c := &common{addr: s.addr}
	cn, err := openIdle(c, net.ParseIP("127.0.0.1"), "1234567890", true)
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	s.mu.Lock()
	keys := strings.Join(s.keys, ",")
	s.mu.Unlock()
	if keys != "1234567890" {
		t.Fatalf("server saw keys %q, want one request with 1234567890", keys)
	}
	if !cn.open() {
		t.Fatal("connection not open right after its request")
	}
	s.mu.Lock()
	for _, sc := range s.conns {
		sc.Close()
	}
	s.mu.Unlock()
	waitFor(t, "the client to see the close", func() bool { return !cn.open() })
}

// TestH2IdleGoAway: a server shutting down sends GOAWAY; the connection
// then no longer counts as open.
func TestH2IdleGoAway(t *testing.T) {
	s := startH2C(t, 200)
	cn, err := openIdle(&common{addr: s.addr}, nil, "1", true)
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	go s.srv.Shutdown(t.Context())
	waitFor(t, "GOAWAY or close to be seen", func() bool { return !cn.open() })
}

// TestH2IdleBadStatus: an answer other than 200 fails the connection.
func TestH2IdleBadStatus(t *testing.T) {
	s := startH2C(t, 503)
	cn, err := openIdle(&common{addr: s.addr}, nil, "1", true)
	if err == nil {
		cn.Close()
		t.Fatal("a 503 answer was accepted")
	}
	if !strings.Contains(err.Error(), "status 503") {
		t.Fatalf("error %q does not name the status", err)
	}
}

// TestH2IdleNotH2: an HTTP/1.1-only server fails the connection with an
// error, not a hang.
func TestH2IdleNotH2(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	go srv.Serve(ln)
	defer srv.Close()
	done := make(chan error, 1)
	go func() {
		cn, err := openIdle(&common{addr: ln.Addr().String()}, nil, "1", true)
		if cn != nil {
			cn.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("an HTTP/1.1 server passed as h2c")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no answer from openIdle in 20 s")
	}
}

func TestH2IdleTable(t *testing.T) {
	lines := `BENCH system=shard-proxy test=h2idle proto=h2 conns=5000 held=5000 failed=0 open_s=1.2 still_open=5000 rss_before_kib=20480 rss_after_kib=71680 per_conn_bytes=10485.76 fds_before=10 fds_after=5014 hwm_kib=71680 alive=1
BENCH system=haproxy test=h2idle proto=h2 conns=5000 held=4990 failed=10 err="status 503" open_s=1.0 still_open=4990 rss_before_kib=10240 rss_after_kib=35840 per_conn_bytes=5253.5 fds_before=10 fds_after=5004 hwm_kib=35840 alive=1
`
	recs, err := benchline.Parse(strings.NewReader(lines), lineKeys...)
	if err != nil {
		t.Fatal(err)
	}
	md := markdown(recs)
	for _, want := range []string{
		"## Idle HTTP/2 connections",
		"| shard-proxy | 5000 | 5000 | 5000 | 20.0 | 70.0 | 10.2 | 5014 | 2.00x |",
		"| HAProxy | 5000 | 4990 | 4990 | 10.0 | 35.0 | 5.1 | 5004 | 1.00x |",
		"- HAProxy, h2idle: 10 connections failed, first error: status 503",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
	if strings.Contains(md, "Idle keep-alive connections") {
		t.Errorf("an idle table without idle lines:\n%s", md)
	}
}
