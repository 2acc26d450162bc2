package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/table"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// The relay under a storm: real grpc-go shards and clients, every kind of
// call, clients that cancel and calls that time out, while the topology
// changes under them; and a fuzz target that throws raw frames at it.

// stressShards starts n grpc-go shards (named g-<i>) that count the calls
// in their handlers, so that the test can see every shard-side call end.
func stressShards(t testing.TB, n int, active *atomic.Int64) ([]*grpcShard, watch.Topology) {
	t.Helper()
	return startGRPCShards(t, n,
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			active.Add(1)
			defer active.Add(-1)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			active.Add(1)
			defer active.Add(-1)
			return h(srv, ss)
		}))
}

// stressResult is how one call ended.
type stressResult struct {
	kind       string
	key        string
	shard      string // x-shard of a successful call
	answeredBy string // the shard named in the answer's payload
	err        error
	cancelled  bool // the client cancelled the call itself
	elapsed    time.Duration
}

// relayState counts what the relay still holds: tracked live streams,
// client streams, and streams on shard connections.
func relayState(p *Proxy) (live, client, up int) {
	for _, b := range p.router.Backends() {
		up += b.PoolStats(route.PoolHTTP2).Streams
	}
	return p.router.LiveCount(), p.relay.Streams(), up
}

func allStacks() string {
	buf := make([]byte, 8<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// TestRelayStress: many gRPC calls of every kind over several client
// connections, with cancellations and deadlines, while the topology
// changes every ~50ms. Every call ends, each success came from a shard
// that owned its key in a topology that was applied, failures are only
// those a client must expect, the proxy answers correctly afterwards,
// and nothing is left behind: no stream in the relay, no call on a shard,
// no goroutine once everything is closed.
func TestRelayStress(t *testing.T) {
	before := goleak.IgnoreCurrent()
	// Registered first, so it runs last: after the clients, the proxy and
	// the shards were closed by their own cleanups.
	t.Cleanup(func() {
		if !t.Failed() {
			goleak.VerifyNone(t, testutil.LeakOptions(before)...)
		}
	})

	const (
		nShards  = 4
		nClients = 6
		nCallers = 24
		nKeys    = 256
		load     = 3 * time.Second
		bound    = 15 * time.Second // after the load, for every call to end
	)
	var shardCalls atomic.Int64
	_, base := stressShards(t, nShards, &shardCalls)
	ringCfg := ring.Config{}
	p := startProxy(t, Config{OwnerWait: 100 * time.Millisecond, UpstreamTimeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler)}, ringCfg, &base)

	var tablesMu sync.Mutex
	tables := []*table.Table{p.Table()}

	clients := make([]testgrpc.TestServiceClient, nClients)
	for i := range clients {
		clients[i] = dialGRPC(t, p.url)
	}

	keys := make([]string, nKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("acct-%d", i)
	}

	stop := make(chan struct{})
	loadEnd := time.Now().Add(load)
	// One seed for the churn and every caller, logged so that a failure can
	// be replayed (SHARD_PROXY_STRESS_SEED=<seed>); the timing of calls and
	// topology changes still varies from run to run.
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SHARD_PROXY_STRESS_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("SHARD_PROXY_STRESS_SEED=%q: %v", v, err)
		}
	}
	t.Logf("seed %d (replay with SHARD_PROXY_STRESS_SEED=%d)", seed, seed)

	// The topology churn: 3 or 4 replicas, one shard not ready, or the
	// same topology again.
	var applies atomic.Int64
	churnDone := make(chan struct{})
	go func() {
		defer close(churnDone)
		rng := rand.New(rand.NewPCG(1, seed))
		cur := base
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			next := watch.Topology{Replicas: cur.Replicas, Shards: append([]watch.Shard(nil), cur.Shards...)}
			switch rng.IntN(4) {
			case 0:
				next.Replicas = 3
			case 1:
				next.Replicas = 4
			case 2: // one shard not ready, or all ready again
				down := -1
				for i, sh := range next.Shards {
					if !sh.Ready {
						down = i
					}
				}
				if down >= 0 {
					next.Shards[down].Ready = true
				} else {
					next.Shards[rng.IntN(nShards)].Ready = false
				}
			case 3: // no change
			}
			if err := p.Apply(next); err != nil {
				t.Errorf("apply %+v: %v", next, err)
				return
			}
			applies.Add(1)
			tablesMu.Lock()
			tables = append(tables, p.Table())
			tablesMu.Unlock()
			cur = next
		}
	}()

	results := make(chan stressResult, 1<<16)
	var callers sync.WaitGroup
	var inFlight sync.Map // caller -> description of its call, for a hang report
	for i := range nCallers {
		callers.Add(1)
		go func() {
			defer callers.Done()
			rng := rand.New(rand.NewPCG(uint64(i)+2, seed))
			for time.Now().Before(loadEnd) {
				c := clients[rng.IntN(nClients)]
				key := keys[rng.IntN(nKeys)]
				r := stressCall(c, rng, key, func(desc string) { inFlight.Store(i, desc) })
				inFlight.Delete(i)
				results <- r
			}
		}()
	}
	allDone := make(chan struct{})
	go func() { callers.Wait(); close(allDone) }()
	select {
	case <-allDone:
	case <-time.After(load + bound):
		var hung []string
		inFlight.Range(func(k, v any) bool { hung = append(hung, fmt.Sprint(k, ": ", v)); return true })
		close(stop)
		<-churnDone
		t.Fatalf("calls still running %v after the load ended: %v\n%s", bound, hung, allStacks())
	}
	close(stop)
	<-churnDone
	close(results)

	// Judge every call.
	tablesMu.Lock()
	applied := tables
	tablesMu.Unlock()
	owners := func(key string) map[string]bool {
		m := map[string]bool{}
		for _, tb := range applied {
			if sh, _, ok := tb.Owner([]byte(key)); ok {
				m[sh.Name] = true
			}
		}
		return m
	}
	byCode := map[string]int{}
	var total, ok int
	var bad []string
	for r := range results {
		total++
		if r.err == nil {
			ok++
			byCode[r.kind+"/OK"]++
			if r.shard == "" || r.shard != r.answeredBy {
				bad = append(bad, fmt.Sprintf("%s key %s: x-shard %q but answered by %q", r.kind, r.key, r.shard, r.answeredBy))
			} else if o := owners(r.key); !o[r.shard] {
				bad = append(bad, fmt.Sprintf("%s key %s: answered by %s, which owned it in no applied topology (owners %v)", r.kind, r.key, r.shard, o))
			}
			continue
		}
		code := status.Code(r.err)
		if strings.Contains(r.err.Error(), answer.ErrOwnerMoved.Error()) {
			byCode[r.kind+"/"+code.String()+"(moved)"]++
		} else {
			byCode[r.kind+"/"+code.String()]++
		}
		switch code {
		case codes.Unavailable, codes.DeadlineExceeded:
		case codes.Canceled:
			if !r.cancelled {
				bad = append(bad, fmt.Sprintf("%s key %s: Canceled, but the client did not cancel: %v", r.kind, r.key, r.err))
			}
		default:
			bad = append(bad, fmt.Sprintf("%s key %s: unexpected %v after %v (cancelled %v)", r.kind, r.key, r.err, r.elapsed, r.cancelled))
		}
	}
	t.Logf("%d calls (%d ok), %d topologies applied; by kind/code: %v", total, ok, applies.Load(), byCode)
	if ok < total/10 {
		t.Errorf("only %d of %d calls succeeded", ok, total)
	}
	for i, b := range bad {
		if i == 20 {
			t.Errorf("... and %d more", len(bad)-20)
			break
		}
		t.Error(b)
	}

	// Nothing is left in the relay or on the shards once every call ended.
	deadline := time.Now().Add(10 * time.Second)
	for {
		live, client, up := relayState(p.Proxy)
		calls := shardCalls.Load()
		if live == 0 && client == 0 && up == 0 && calls == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after every call ended, the relay still tracks %d live streams, %d client streams, %d shard streams; %d calls still run on the shards\n%s",
				live, client, up, calls, allStacks())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// After the storm: every shard ready, 4 replicas; each client
	// connection answers correctly, from the owner.
	p.apply(t, base)
	for i, c := range clients {
		for k := range 16 {
			key := keys[(i*16+k)%nKeys]
			want, _, _ := p.Table().Owner([]byte(key))
			ctx, cancel := context.WithTimeout(withKey(key), 5*time.Second)
			var hdr metadata.MD
			resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Header(&hdr))
			cancel()
			if err != nil || resp.GetUsername() != want.Name || strings.Join(hdr.Get("x-shard"), ",") != want.Name {
				t.Errorf("after the storm, client %d key %s: %v, %v (x-shard %v); want an answer from %s", i, key, resp, err, hdr.Get("x-shard"), want.Name)
			}
		}
	}
}

// stressCall makes one call of a random kind, with a random deadline and,
// sometimes, a cancel of its own in the middle.
func stressCall(c testgrpc.TestServiceClient, rng *rand.Rand, key string, note func(string)) stressResult {
	kinds := []string{"unary", "server-stream", "client-stream", "bidi"}
	r := stressResult{kind: kinds[rng.IntN(len(kinds))], key: key}
	timeout := time.Duration(20+rng.IntN(1500)) * time.Millisecond
	ctx, cancel := context.WithTimeout(withKey(key), timeout)
	defer cancel()
	var cancelled atomic.Bool
	if rng.IntN(6) == 0 {
		t := time.AfterFunc(time.Duration(rng.IntN(40))*time.Millisecond, func() {
			cancelled.Store(true)
			cancel()
		})
		defer t.Stop()
	}
	n := 1 + rng.IntN(6)
	slow := rng.IntN(30)
	note(fmt.Sprintf("%s key %s n=%d timeout=%v started %v", r.kind, key, n, timeout, time.Now().Format("15:04:05.000")))
	start := time.Now()
	r.err = func() error {
		switch r.kind {
		case "unary":
			var hdr metadata.MD
			resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: int32(slow)}, grpc.Header(&hdr))
			if err != nil {
				return err
			}
			r.shard, r.answeredBy = strings.Join(hdr.Get("x-shard"), ","), resp.GetUsername()
		case "server-stream":
			ss, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: make([]*testgrpc.ResponseParameters, n)})
			if err != nil {
				return err
			}
			got := 0
			for {
				m, err := ss.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
				got++
				if r.answeredBy == "" {
					r.answeredBy = string(m.GetPayload().GetBody())
				} else if string(m.GetPayload().GetBody()) != r.answeredBy {
					return status.Errorf(codes.DataLoss, "message from %s after messages from %s", m.GetPayload().GetBody(), r.answeredBy)
				}
			}
			if got != n {
				return status.Errorf(codes.DataLoss, "%d messages, want %d", got, n)
			}
			hdr, _ := ss.Header()
			r.shard = strings.Join(hdr.Get("x-shard"), ",")
		case "client-stream":
			cs, err := c.StreamingInputCall(ctx)
			if err != nil {
				return err
			}
			for range n {
				if err := cs.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: make([]byte, 1000)}}); err != nil {
					break // the error comes from CloseAndRecv
				}
				if rng.IntN(3) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			sum, err := cs.CloseAndRecv()
			if err != nil {
				return err
			}
			if sum.GetAggregatedPayloadSize() != int32(1000*n) {
				return status.Errorf(codes.DataLoss, "shard counted %d bytes, want %d", sum.GetAggregatedPayloadSize(), 1000*n)
			}
			hdr, _ := cs.Header()
			r.shard = strings.Join(hdr.Get("x-shard"), ",")
			r.answeredBy = strings.Join(cs.Trailer().Get("served-by"), ",")
		case "bidi":
			bs, err := c.FullDuplexCall(ctx)
			if err != nil {
				return err
			}
			for i := range n {
				msg := fmt.Sprint("m", i)
				if err := bs.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(msg)}}); err != nil {
					_, err = bs.Recv() // the call's status
					return err
				}
				m, err := bs.Recv()
				if err != nil {
					return err
				}
				if rng.IntN(2) == 0 {
					time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
				}
				name, rest, _ := strings.Cut(string(m.GetPayload().GetBody()), ":")
				if rest != msg || r.answeredBy != "" && name != r.answeredBy {
					return status.Errorf(codes.DataLoss, "answer %q to %q (earlier answers from %s)", m.GetPayload().GetBody(), msg, r.answeredBy)
				}
				r.answeredBy = name
			}
			if err := bs.CloseSend(); err != nil {
				return err
			}
			if _, err := bs.Recv(); err != io.EOF {
				if err == nil {
					err = status.Error(codes.DataLoss, "a message after the last answer")
				}
				return err
			}
			hdr, _ := bs.Header()
			r.shard = strings.Join(hdr.Get("x-shard"), ",")
		}
		return nil
	}()
	r.elapsed = time.Since(start)
	r.cancelled = cancelled.Load()
	return r
}

// fuzzWait bounds each wait of the fuzz target.
const fuzzWait = 5 * time.Second

// fuzzFrames builds a frame sequence with a Framer.
func fuzzFrames(build func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte)) []byte {
	var out bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	fr.AllowIllegalWrites = true
	build(fr, func(fields ...hpack.HeaderField) []byte {
		var b bytes.Buffer
		e := hpack.NewEncoder(&b)
		for _, f := range fields {
			_ = e.WriteField(f)
		}
		return b.Bytes()
	})
	return out.Bytes()
}

// FuzzRelayFrames: whatever a client sends after the preface (and,
// optionally, a valid SETTINGS), the proxy does not panic, ends the
// connection once the client stops sending and closes its side, leaves
// no goroutine of that connection behind, and keeps answering other
// clients correctly.
func FuzzRelayFrames(f *testing.F) {
	get := reqHead("GET", "/x", "k")
	post := reqHead("POST", "/up", "k", "content-length", "5")
	seeds := [][]byte{
		fuzzFrames(func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte) { // a valid GET
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(get...), EndStream: true, EndHeaders: true})
		}),
		fuzzFrames(func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte) { // HEADERS + CONTINUATION
			b := enc(get...)
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:5], EndStream: true})
			_ = fr.WriteContinuation(1, false, b[5:10])
			_ = fr.WriteContinuation(1, true, b[10:])
		}),
		fuzzFrames(func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte) { // a POST with a body and trailers
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(post...), EndHeaders: true})
			_ = fr.WriteData(1, false, []byte("hel"))
			_ = fr.WriteData(1, false, []byte("lo"))
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(hpack.HeaderField{Name: "x-t", Value: "1"}),
				EndStream: true, EndHeaders: true})
		}),
		fuzzFrames(func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte) { // DATA on a stream never opened
			_ = fr.WriteData(3, true, []byte("boo"))
		}),
		fuzzFrames(func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte) { // WINDOW_UPDATE of 0, connection and stream
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(post...), EndHeaders: true})
			_ = fr.WriteWindowUpdate(0, 0)
			_ = fr.WriteWindowUpdate(1, 0)
			_ = fr.WriteWindowUpdate(1, 1<<31-1)
		}),
		fuzzFrames(func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte) { // SETTINGS of odd length
			_ = fr.WriteRawFrame(http2.FrameSettings, 0, 0, []byte{0, 4, 0, 0, 1})
		}),
		fuzzFrames(func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte) { // PRIORITY, on itself too
			_ = fr.WritePriority(1, http2.PriorityParam{StreamDep: 0, Weight: 15})
			_ = fr.WritePriority(3, http2.PriorityParam{StreamDep: 3, Exclusive: true})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: enc(get...), EndStream: true, EndHeaders: true,
				Priority: http2.PriorityParam{StreamDep: 1, Weight: 200}})
		}),
		append([]byte{0xff, 0xff, 0xff, byte(http2.FrameData), 0, 0, 0, 0, 1}, "huge"...), // a huge length
		fuzzFrames(func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte) { // resets, pings, settings, goaway
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(post...), EndHeaders: true})
			_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
			_ = fr.WriteData(1, true, []byte("late!"))
			_ = fr.WritePing(false, [8]byte{1})
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(get...), EndStream: true, EndHeaders: true})
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
			_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		}),
		fuzzFrames(func(fr *http2.Framer, enc func(...hpack.HeaderField) []byte) { // many streams, some left open
			for id := uint32(1); id < 40; id += 2 {
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(post...), EndStream: id%4 == 1, EndHeaders: true})
			}
		}),
	}
	for _, s := range seeds {
		f.Add(false, s)
		f.Add(true, s)
	}

	topo := startH2CHandlers(f, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "ok %s %s %d", r.URL.Path, r.Header.Get("X-Shard-Key"), n)
	}))
	p := startProxy(f, Config{UpstreamTimeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)}, ring.Config{}, &topo)
	check := func(t testing.TB, what string) {
		t.Helper()
		done := make(chan h2answer, 1)
		go func() {
			c := dialRelay(t, p.url, bigWindows)
			defer c.close()
			done <- c.get(t, "/check", "k")
		}()
		select {
		case a := <-done:
			if a.status() != "200" || a.get("x-shard") != "h2-0" || string(a.body) != "ok /check k 0" {
				t.Fatalf("%s: a valid GET was answered %v (body %q)", what, a, a.body)
			}
		case <-time.After(fuzzWait):
			t.Fatalf("%s: a valid GET had no answer within %v\n%s", what, fuzzWait, allStacks())
		}
	}
	check(f, "before fuzzing")
	// The goroutine count, loosely: taken in the first input, for the
	// fuzzing machinery runs goroutines of its own.
	var baseOnce sync.Once
	var baseline int

	f.Fuzz(func(t *testing.T, settings bool, data []byte) {
		nc, err := net.DialTimeout("tcp", strings.TrimPrefix(p.url, "http://"), fuzzWait)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(fuzzWait))
		readDone := make(chan error, 1)
		go func() { // read whatever the proxy sends, until it closes
			_, err := io.Copy(io.Discard, nc)
			readDone <- err
		}()
		msg := append([]byte(http2.ClientPreface), 0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0)
		if !settings {
			msg = msg[:len(http2.ClientPreface)]
		}
		msg = append(msg, data...)
		_, _ = nc.Write(msg) // the proxy may close first
		_ = nc.(*net.TCPConn).CloseWrite()
		select {
		case err := <-readDone:
			if err != nil && !isReset(err) {
				t.Fatalf("after %x: reading the connection: %v (the proxy did not close it within %v)\n%s", data, err, fuzzWait, allStacks())
			}
		case <-time.After(fuzzWait + time.Second):
			t.Fatalf("after %x: the read did not end\n%s", data, allStacks())
		}
		check(t, fmt.Sprintf("after %x", data))
		// The fuzzed connection and the check's are gone, with their
		// goroutines.
		deadline := time.Now().Add(fuzzWait)
		for {
			conns := relayConns(p.Proxy)
			live, client, up := relayState(p.Proxy)
			left := relayGoroutines()
			n := runtime.NumGoroutine()
			baseOnce.Do(func() { baseline = n })
			if conns == 0 && live == 0 && client == 0 && up == 0 && len(left) == 0 && n <= baseline+20 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %x: %v later, %d relayed connections, %d live, %d client and %d shard streams, %d goroutines (baseline %d); relay goroutines left:\n%s\n\nall goroutines:\n%s",
					data, fuzzWait, conns, live, client, up, n, baseline, strings.Join(left, "\n\n"), allStacks())
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// relayGoroutines returns the stacks of the goroutines that belong to a
// relayed client connection or to one of its streams (a held stream, a
// dial for one), and of the shard's request handlers: none should outlive
// its connection.
func relayGoroutines() []string {
	var out []string
	for _, g := range strings.Split(allStacks(), "\n\n") {
		for _, mark := range []string{"proxy.(*Proxy).relayH2", "(*h2stream).awaitOwner", "(*h2stream).dialAndOpen",
			"http2serverConn).runHandler", "(*h2client)."} {
			if strings.Contains(g, mark) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

func relayConns(p *Proxy) int {
	return p.relay.Conns()
}

// isReset: the proxy closed with data unread (an RST), which ends the
// connection as well as a FIN.
func isReset(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return strings.Contains(err.Error(), "reset by peer") || strings.Contains(err.Error(), "broken pipe")
}
