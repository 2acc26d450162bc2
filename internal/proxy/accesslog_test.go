package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/shard-proxy/shard-proxy/internal/accesslog"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/ring"
)

// accessLog is an access log file written by a proxy under test.
type accessLog struct {
	path string
	log  *accesslog.Log
}

// openAccessLog opens an access log to a file in the test's directory;
// cfg.Dest is set here, cfg.Sample 0 means 1.
func openAccessLog(t testing.TB, cfg accesslog.Config) *accessLog {
	t.Helper()
	cfg.Dest = filepath.Join(t.TempDir(), "access.log")
	if cfg.Sample == 0 {
		cfg.Sample = 1
	}
	l, err := accesslog.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return &accessLog{path: cfg.Dest, log: l}
}

func (a *accessLog) raw(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(a.path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lines waits for the log to hold n lines and returns them, decoded.
func (a *accessLog) lines(t *testing.T, n int) []map[string]any {
	t.Helper()
	var raw string
	waitUntil(t, 5*time.Second, fmt.Sprintf("%d access log lines", n), func() bool {
		raw = a.raw(t)
		return strings.Count(raw, "\n") >= n
	})
	var out []map[string]any
	for line := range strings.Lines(raw) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// checkLine compares a line's fields with want: a value, or a func(any)
// bool for fields that vary; absent lists fields that must not be there.
func checkLine(t *testing.T, line map[string]any, want map[string]any, absent ...string) {
	t.Helper()
	for k, w := range want {
		got, ok := line[k]
		if !ok {
			t.Errorf("field %s missing in %v", k, line)
			continue
		}
		if f, isFunc := w.(func(any) bool); isFunc {
			if !f(got) {
				t.Errorf("field %s = %v: not as expected", k, got)
			}
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("field %s = %v, want %v", k, got, w)
		}
	}
	for _, k := range absent {
		if v, ok := line[k]; ok {
			t.Errorf("field %s = %v, want none", k, v)
		}
	}
}

// find returns the line whose field key has value v (lines of HTTP/2
// streams are written when each stream closes, in no set order).
func find(t *testing.T, lines []map[string]any, key string, v any) map[string]any {
	t.Helper()
	for _, l := range lines {
		if fmt.Sprint(l[key]) == fmt.Sprint(v) {
			return l
		}
	}
	t.Fatalf("no line with %s %v in %v", key, v, lines)
	return nil
}

// between accepts a JSON number from lo to hi.
func between(lo, hi float64) func(any) bool {
	return func(v any) bool { f, ok := v.(float64); return ok && f >= lo && f <= hi }
}

// startedWithin accepts a time field from lo to hi.
func startedWithin(lo, hi time.Time) func(any) bool {
	return func(v any) bool {
		s, _ := v.(string)
		ts, err := time.Parse(time.RFC3339Nano, s)
		return err == nil && strings.HasSuffix(s, "Z") && !ts.Before(lo.Truncate(time.Microsecond)) && !ts.After(hi)
	}
}

func hasPrefix(p string) func(any) bool {
	return func(v any) bool { s, _ := v.(string); return strings.HasPrefix(s, p) }
}

const testTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"

// TestAccessLogHTTP1 checks an HTTP/1.1 exchange's line field by field,
// an error's, and that neither key nor query is logged by default.
func TestAccessLogHTTP1(t *testing.T) {
	shards := testutil.StartShards(t, 3, "web")
	for _, s := range shards {
		s.Handle(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, "hello")
		})
	}
	topo := testutil.Topology(shards)
	al := openAccessLog(t, accesslog.Config{})
	p := startProxy(t, Config{AccessLog: al.log}, ring.Config{Algorithm: ring.Modulus}, &topo)

	before := time.Now()
	req, _ := http.NewRequest("POST", p.url+"/items/7?secret=q", strings.NewReader("abcdef"))
	req.Header.Set("X-Shard-Key", "4")
	req.Header.Set("Traceparent", "00-"+testTraceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	after := time.Now()
	resp, err = http.Get(p.url + "/nokey?x=1")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	lines := al.lines(t, 2)
	checkLine(t, lines[0], map[string]any{
		"time": startedWithin(before, after), "duration_ms": between(0, float64(after.Sub(before).Milliseconds()+1)),
		"proto": "HTTP/1.1", "tls": false, "client": hasPrefix("127.0.0.1:"), "method": "POST", "path": "/items/7",
		"status": 200, "shard": "web-1", "ordinal": 1, "upstream": shards[1].Addr, "rule": "header:X-Shard-Key",
		"owner_wait_ms": 0, "bytes_in": 6, "bytes_out": 5, "ttfb_ms": between(0.001, lines[0]["duration_ms"].(float64)),
		"trace_id": testTraceID,
	}, "query", "key_hash", "error", "previous", "grpc_status")
	checkLine(t, lines[1], map[string]any{
		"proto": "HTTP/1.1", "method": "GET", "path": "/nokey", "status": 400, "error": hasPrefix("no shard key"),
		"bytes_in": 0, "bytes_out": between(10, 1000), "owner_wait_ms": 0,
	}, "shard", "ordinal", "upstream", "ttfb_ms", "trace_id", "query")
	raw := al.raw(t)
	if strings.Contains(raw, "secret") || strings.Contains(raw, `"4"`) || strings.Contains(raw, "x=1") {
		t.Errorf("the log holds a query or the key:\n%s", raw)
	}
}

// TestAccessLogBadHead: a request whose head the proxy cannot read gets
// a line too: its 400 and the proxy's error, no method or path.
func TestAccessLogBadHead(t *testing.T) {
	shards := testutil.StartShards(t, 1, "web")
	topo := testutil.Topology(shards)
	al := openAccessLog(t, accesslog.Config{Sample: 1e-300}) // errors only
	p := startProxy(t, Config{AccessLog: al.log}, ring.Config{Algorithm: ring.Modulus}, &topo)
	rc := dialRaw(t, p)
	if a := rc.roundTrip("GET /x HTTP/1.1\r\nHost: a\r\nBad Field: y\r\n\r\n", "GET"); a.Status() != 400 {
		t.Fatalf("answer %q, want 400", a.Raw())
	}
	checkLine(t, al.lines(t, 1)[0], map[string]any{"status": 400, "error": "malformed request", "client": hasPrefix("127.0.0.1:"),
		"method": "", "path": "", "proto": "HTTP/1.1"}, "shard")
}

// TestAccessLogPrivacyOptions: --access-log-key-hash and
// --access-log-query add key_hash (xxhash64 of the key) and the query,
// and still never the key itself.
func TestAccessLogPrivacyOptions(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
	al := openAccessLog(t, accesslog.Config{KeyHash: true, Query: true})
	p := startProxy(t, Config{AccessLog: al.log, Keys: mustRules(t, "query:account")}, ring.Config{Algorithm: ring.Modulus}, &topo)
	const key = "acct-990042"
	resp, err := http.Get(p.url + "/balance?account=" + key + "&q=%22x%22")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	line := al.lines(t, 1)[0]
	checkLine(t, line, map[string]any{
		"key_hash": fmt.Sprintf("%016x", xxhash.Sum64String(key)), "query": "account=" + key + "&q=%22x%22",
		"rule": "query:account", "path": "/balance",
	})
	if n := strings.Count(al.raw(t), key); n != 1 {
		t.Errorf("the key appears %d times, want once (in the query asked for)", n)
	}
}

// TestAccessLogHTTP2 checks an HTTP/2 stream's line (to an HTTP/1.1
// shard) and an HTTP/2 error's.
func TestAccessLogHTTP2(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	for _, s := range shards {
		s.Handle(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, "hello h2")
		})
	}
	topo := testutil.Topology(shards)
	al := openAccessLog(t, accesslog.Config{})
	p := startProxy(t, Config{AccessLog: al.log}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := h2cClient(t)
	before := time.Now()
	req, _ := http.NewRequest("PUT", p.url+"/doc/1?v=2", strings.NewReader("0123456789"))
	req.Header.Set("X-Shard-Key", "3")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	after := time.Now()
	resp, err = c.Get(p.url + "/nokey")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	lines := al.lines(t, 2)
	checkLine(t, find(t, lines, "path", "/doc/1"), map[string]any{
		"time": startedWithin(before, after), "proto": "HTTP/2", "tls": false, "client": hasPrefix("127.0.0.1:"),
		"method": "PUT", "path": "/doc/1", "status": 200, "shard": "web-1", "ordinal": 1, "upstream": shards[1].Addr,
		"rule": "header:X-Shard-Key", "owner_wait_ms": 0, "bytes_in": 10, "bytes_out": 8,
		"ttfb_ms": between(0.001, 10000),
	}, "query", "error", "grpc_status", "trace_id", "key_hash")
	checkLine(t, find(t, lines, "path", "/nokey"), map[string]any{
		"proto": "HTTP/2", "method": "GET", "path": "/nokey", "status": 400, "error": hasPrefix("no shard key"),
		"bytes_out": between(10, 1000),
	}, "shard", "ttfb_ms", "grpc_status")
}

// TestAccessLogGRPC checks gRPC calls' lines: grpc_status from the
// shard's trailers (OK, NotFound) and from the proxy's own answer.
func TestAccessLogGRPC(t *testing.T) {
	_, topo := startGRPCShards(t, 2)
	al := openAccessLog(t, accesslog.Config{})
	p := startProxy(t, Config{AccessLog: al.log}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := dialGRPC(t, p.url)
	if _, err := c.UnaryCall(withKey("1"), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.UnaryCall(withKey("0"), &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no"}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("call: %v, want NotFound", err)
	}
	if _, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("call without a key: %v, want InvalidArgument", err)
	}
	lines := al.lines(t, 3)
	const path = "/grpc.testing.TestService/UnaryCall"
	checkLine(t, find(t, lines, "grpc_status", 0), map[string]any{
		"proto": "HTTP/2", "method": "POST", "path": path, "status": 200, "grpc_status": 0, "shard": "g-1",
		"ordinal": 1, "bytes_in": between(5, 100), "bytes_out": between(5, 100), "ttfb_ms": between(0.001, 5000),
	}, "error")
	checkLine(t, find(t, lines, "grpc_status", int(codes.NotFound)), map[string]any{"path": path, "status": 200, "grpc_status": int(codes.NotFound), "shard": "g-0"}, "error")
	checkLine(t, find(t, lines, "grpc_status", int(codes.InvalidArgument)), map[string]any{"path": path, "status": 400, "grpc_status": int(codes.InvalidArgument),
		"error": hasPrefix("no shard key")}, "shard")
}

// TestAccessLogWebSocket: a tunnel's line is written when it ends, with
// 101 and the bytes that crossed it each way.
func TestAccessLogWebSocket(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	for _, s := range shards {
		s.Handle(func(w http.ResponseWriter, r *http.Request) {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			_ = brw.Flush()
			buf := make([]byte, 4)
			if _, err := io.ReadFull(brw, buf); err != nil { // "ping"
				return
			}
			_, _ = conn.Write([]byte("pong!"))
		})
	}
	topo := testutil.Topology(shards)
	al := openAccessLog(t, accesslog.Config{})
	p := startProxy(t, Config{AccessLog: al.log}, ring.Config{Algorithm: ring.Modulus}, &topo)
	rc := dialRaw(t, p)
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	rc.send("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\nX-Shard-Key: 1\r\n\r\n")
	if a := rc.response("GET"); a.Status() != 101 {
		t.Fatalf("answer %q, want 101", a.Raw())
	}
	if strings.Count(al.raw(t), "\n") != 0 {
		t.Fatal("a line was written while the tunnel is open")
	}
	rc.send("ping")
	got := make([]byte, 5)
	if _, err := io.ReadFull(rc.br, got); err != nil || string(got) != "pong!" {
		t.Fatalf("through the tunnel: %q (%v)", got, err)
	}
	rc.closed() // the shard hung up: the tunnel ends
	line := al.lines(t, 1)[0]
	checkLine(t, line, map[string]any{
		"proto": "HTTP/1.1", "method": "GET", "path": "/chat", "status": 101, "shard": "web-1",
		"bytes_in": 4, "bytes_out": 5, "duration_ms": between(0, 10000),
	}, "error")
}

// TestAccessLogSampling: with sample 0 only errors are logged (every one
// of them); successes are left out.
func TestAccessLogSampling(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
	topo.Shards[1].Ready = false
	al := openAccessLog(t, accesslog.Config{Sample: 1e-300}) // as good as 0: errors only
	p := startProxy(t, Config{AccessLog: al.log}, ring.Config{Algorithm: ring.Modulus}, &topo)
	for i := range 30 {
		req, _ := http.NewRequest("GET", p.url+"/s", nil)
		req.Header.Set("X-Shard-Key", fmt.Sprint(i%3*2)) // 0, 2, 4: web-0, ready
		if i%10 == 9 {
			req.Header.Set("X-Shard-Key", "1") // web-1, not ready: 503
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	_ = al.lines(t, 3)
	_ = al.log.Close() // everything queued is out
	lines := al.lines(t, 3)
	if len(lines) != 3 {
		t.Fatalf("%d lines, want the 3 errors only", len(lines))
	}
	for _, l := range lines {
		checkLine(t, l, map[string]any{"status": 503, "shard": "web-1", "error": hasPrefix("shard not ready")})
	}
}
