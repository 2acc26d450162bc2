package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	relay "github.com/shard-proxy/shard-proxy/internal/proxy/http2"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// The relay tests speak raw HTTP/2 frames to the proxy, so that they see
// exactly what the relay sends: every frame, its flags, its stream, in
// order. Shards are real servers on sockets: Go's h2c server, or a
// scripted raw-frame shard when a test needs a shard that misbehaves.

// relayWait bounds every wait of a relay test; nothing should come near it.
const relayWait = 10 * time.Second

// h2ev is one frame as a peer received it, copied out of the Framer.
type h2ev struct {
	typ      http2.FrameType
	stream   uint32
	flags    http2.Flags
	length   uint32 // the frame's payload length (flow-controlled for DATA)
	fields   []hpack.HeaderField
	data     []byte
	code     http2.ErrCode // RST_STREAM, GOAWAY
	last     uint32        // GOAWAY
	incr     uint32        // WINDOW_UPDATE
	ping     [8]byte
	settings []http2.Setting
	err      error // the connection ended (or, with stream set, a stream error)
}

func (e h2ev) ends() bool {
	return (e.typ == http2.FrameData || e.typ == http2.FrameHeaders) && e.flags&0x1 != 0
}

func (e h2ev) ack() bool {
	return (e.typ == http2.FrameSettings || e.typ == http2.FramePing) && e.flags&0x1 != 0
}

func (e h2ev) String() string {
	switch e.typ {
	case http2.FrameHeaders:
		return fmt.Sprintf("HEADERS[%d end=%v] %v", e.stream, e.ends(), e.fields)
	case http2.FrameData:
		return fmt.Sprintf("DATA[%d end=%v] %d bytes", e.stream, e.ends(), len(e.data))
	case http2.FrameRSTStream:
		return fmt.Sprintf("RST_STREAM[%d] %v", e.stream, e.code)
	case http2.FrameGoAway:
		return fmt.Sprintf("GOAWAY last=%d %v", e.last, e.code)
	case http2.FrameWindowUpdate:
		return fmt.Sprintf("WINDOW_UPDATE[%d] %d", e.stream, e.incr)
	}
	if e.err != nil {
		return "error: " + e.err.Error()
	}
	return fmt.Sprintf("%v[%d] flags %#x", e.typ, e.stream, e.flags)
}

func toEvent(f http2.Frame) h2ev {
	h := f.Header()
	ev := h2ev{typ: h.Type, stream: h.StreamID, flags: h.Flags, length: h.Length}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		ev.fields = append([]hpack.HeaderField(nil), f.Fields...)
	case *http2.DataFrame:
		ev.data = bytes.Clone(f.Data())
	case *http2.RSTStreamFrame:
		ev.code = f.ErrCode
	case *http2.GoAwayFrame:
		ev.code, ev.last = f.ErrCode, f.LastStreamID
	case *http2.WindowUpdateFrame:
		ev.incr = f.Increment
	case *http2.PingFrame:
		ev.ping = f.Data
	case *http2.SettingsFrame:
		_ = f.ForeachSetting(func(s http2.Setting) error {
			ev.settings = append(ev.settings, s)
			return nil
		})
	}
	return ev
}

// h2peer is one end of a raw HTTP/2 connection: a client of the proxy, or
// a scripted shard's side of a connection from the proxy. A reader
// goroutine (when started) turns frames into events, acknowledging
// SETTINGS and PING as it goes; writes are serialized.
type h2peer struct {
	nc   net.Conn
	wmu  sync.Mutex
	wfr  *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer

	evs        chan h2ev
	quit       chan struct{}
	readerDone chan struct{}
	closeOnce  sync.Once

	// used by the one goroutine that consumes events
	held    map[uint32][]h2ev
	readErr error
	nextID  uint32
}

func newH2Peer(nc net.Conn, r io.Reader, read bool) *h2peer {
	p := &h2peer{nc: nc, wfr: http2.NewFramer(nc, nil), evs: make(chan h2ev, 4096),
		quit: make(chan struct{}), readerDone: make(chan struct{}), held: map[uint32][]h2ev{}, nextID: 1}
	p.enc = hpack.NewEncoder(&p.hbuf)
	p.enc.SetMaxDynamicTableSizeLimit(4096)
	if !read {
		close(p.readerDone)
		return p
	}
	rfr := http2.NewFramer(nil, r)
	rfr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rfr.MaxHeaderListSize = 1 << 20
	go p.readLoop(rfr)
	return p
}

func (p *h2peer) readLoop(fr *http2.Framer) {
	defer close(p.readerDone)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				if !p.deliver(h2ev{stream: se.StreamID, err: err}) {
					return
				}
				continue
			}
			p.deliver(h2ev{err: err})
			return
		}
		ev := toEvent(f)
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = p.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = p.write(func(fr *http2.Framer) error { return fr.WritePing(true, f.Data) })
			}
		}
		if !p.deliver(ev) {
			return
		}
	}
}

func (p *h2peer) deliver(ev h2ev) bool {
	select {
	case p.evs <- ev:
		return true
	case <-p.quit:
		return false
	}
}

func (p *h2peer) close() {
	p.closeOnce.Do(func() {
		close(p.quit)
		_ = p.nc.Close()
	})
	<-p.readerDone
}

func (p *h2peer) write(fn func(*http2.Framer) error) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.nc.SetWriteDeadline(time.Now().Add(relayWait))
	return fn(p.wfr)
}

// headers writes a header block, split into HEADERS and CONTINUATION.
func (p *h2peer) headers(id uint32, fields []hpack.HeaderField, end bool) error {
	return p.write(func(fr *http2.Framer) error {
		p.hbuf.Reset()
		for _, f := range fields {
			if err := p.enc.WriteField(f); err != nil {
				return err
			}
		}
		block := p.hbuf.Bytes()
		first := true
		for first || len(block) > 0 {
			n := min(len(block), 16384)
			var err error
			if first {
				err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:n],
					EndStream: end, EndHeaders: n == len(block)})
			} else {
				err = fr.WriteContinuation(id, n == len(block), block[:n])
			}
			if err != nil {
				return err
			}
			block, first = block[n:], false
		}
		return nil
	})
}

// data writes b in DATA frames of at most 16 KiB (one empty frame when b
// is empty), END_STREAM on the last when end.
func (p *h2peer) data(id uint32, b []byte, end bool) error {
	for first := true; first || len(b) > 0; first = false {
		n := min(len(b), 16384)
		last := n == len(b)
		chunk := b[:n]
		if err := p.write(func(fr *http2.Framer) error { return fr.WriteData(id, end && last, chunk) }); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (p *h2peer) rst(id uint32, code http2.ErrCode) error {
	return p.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(id, code) })
}

func (p *h2peer) windowUpdate(id, n uint32) error {
	return p.write(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(id, n) })
}

func (p *h2peer) goAway(last uint32, code http2.ErrCode) error {
	return p.write(func(fr *http2.Framer) error { return fr.WriteGoAway(last, code, nil) })
}

// newStream returns the next client stream id.
func (p *h2peer) newStream() uint32 {
	id := p.nextID
	p.nextID += 2
	return id
}

// nextAny returns the next event, whatever its stream, bypassing what
// next holds; ok is false when d passed or the peer was closed.
func (p *h2peer) nextAny(d time.Duration) (h2ev, bool) {
	if p.readErr != nil {
		return h2ev{err: p.readErr}, true
	}
	var timeout <-chan time.Time
	if d > 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		timeout = tm.C
	}
	select {
	case ev := <-p.evs:
		if ev.err != nil && ev.stream == 0 {
			p.readErr = ev.err
		}
		return ev, true
	case <-timeout:
		return h2ev{}, false
	case <-p.quit:
		return h2ev{err: net.ErrClosed}, true
	}
}

// next returns the next event of stream id (0: the connection's own
// frames), holding those of other streams for later. A connection error
// is returned for any stream.
func (p *h2peer) next(t testing.TB, id uint32) h2ev {
	t.Helper()
	if q := p.held[id]; len(q) > 0 {
		p.held[id] = q[1:]
		return q[0]
	}
	deadline := time.Now().Add(relayWait)
	for {
		ev, ok := p.nextAny(time.Until(deadline))
		if !ok {
			t.Fatalf("stream %d: no frame within %v", id, relayWait)
		}
		if ev.err != nil && ev.stream == 0 || ev.stream == id {
			return ev
		}
		p.held[ev.stream] = append(p.held[ev.stream], ev)
	}
}

// expectConn reads the connection's own frames until one satisfies want.
func (p *h2peer) expectConn(t testing.TB, what string, want func(h2ev) bool) h2ev {
	t.Helper()
	for {
		ev := p.next(t, 0)
		if ev.err != nil {
			t.Fatalf("waiting for %s: %v", what, ev.err)
		}
		if want(ev) {
			return ev
		}
	}
}

// h2answer is what came back on one stream.
type h2answer struct {
	heads   [][]hpack.HeaderField // the informational heads, then the final one
	body    []byte
	trailer []hpack.HeaderField
	end     bool          // END_STREAM received
	reset   bool          // RST_STREAM received
	code    http2.ErrCode // its code
	frames  []string      // every frame, in order
}

func (a h2answer) final() []hpack.HeaderField {
	if len(a.heads) == 0 {
		return nil
	}
	return a.heads[len(a.heads)-1]
}

func (a h2answer) status() string { return fieldValue(a.final(), ":status") }

func (a h2answer) get(name string) string { return fieldValue(a.final(), name) }

func (a h2answer) String() string { return strings.Join(a.frames, "; ") }

func fieldValue(fields []hpack.HeaderField, name string) string {
	v := fieldValues(fields, name)
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func fieldValues(fields []hpack.HeaderField, name string) []string {
	var out []string
	for _, f := range fields {
		if f.Name == name {
			out = append(out, f.Value)
		}
	}
	return out
}

func isFinal(fields []hpack.HeaderField) bool {
	n, err := strconv.Atoi(fieldValue(fields, ":status"))
	return err == nil && n >= 200
}

// answer reads stream id until it ends (END_STREAM or RST_STREAM).
func (p *h2peer) answer(t testing.TB, id uint32) h2answer {
	t.Helper()
	return p.answerWatching(t, id, nil)
}

// answerWatching is answer, calling onBody (if set) with the body so far
// after each DATA frame.
func (p *h2peer) answerWatching(t testing.TB, id uint32, onBody func([]byte)) h2answer {
	t.Helper()
	var a h2answer
	for {
		ev := p.next(t, id)
		if ev.err != nil {
			t.Fatalf("stream %d after %v: %v", id, a, ev.err)
		}
		a.frames = append(a.frames, ev.String())
		switch ev.typ {
		case http2.FrameHeaders:
			if len(a.heads) > 0 && isFinal(a.final()) {
				a.trailer = ev.fields
			} else {
				a.heads = append(a.heads, ev.fields)
			}
		case http2.FrameData:
			a.body = append(a.body, ev.data...)
			if onBody != nil {
				onBody(a.body)
			}
		case http2.FrameRSTStream:
			a.reset, a.code = true, ev.code
			return a
		}
		if ev.ends() {
			a.end = true
			return a
		}
	}
}

// dialOpts is what a test client announces.
type dialOpts struct {
	window     uint32 // SETTINGS_INITIAL_WINDOW_SIZE
	connWindow uint32 // the connection window (WINDOW_UPDATE above 65535)
	noReader   bool   // never read the socket
}

var bigWindows = dialOpts{window: 1 << 30, connWindow: 1 << 30}

// dialRelay opens a client connection to the proxy and checks that the
// relay (not Go's HTTP/2 server) serves it: its first frame is its
// SETTINGS, with the relay's limits.
func dialRelay(t testing.TB, url string, o dialOpts) *h2peer {
	t.Helper()
	nc, err := dialProxy(url, "h2")
	if err != nil {
		t.Fatal(err)
	}
	p := newH2Peer(nc, bufio.NewReader(nc), !o.noReader)
	t.Cleanup(p.close)
	err = p.write(func(fr *http2.Framer) error {
		if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
			return err
		}
		if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: o.window},
			http2.Setting{ID: http2.SettingEnablePush, Val: 0}); err != nil {
			return err
		}
		if o.connWindow > 65535 {
			return fr.WriteWindowUpdate(0, o.connWindow-65535)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.noReader {
		return p
	}
	ev := p.next(t, 0)
	if ev.err != nil || ev.typ != http2.FrameSettings || ev.ack() {
		t.Fatalf("first frame from the proxy: %v, want its SETTINGS", ev)
	}
	got := map[http2.SettingID]uint32{}
	for _, s := range ev.settings {
		got[s.ID] = s.Val
	}
	if got[http2.SettingMaxConcurrentStreams] != relay.MaxClientStreams || got[http2.SettingMaxHeaderListSize] != relay.MaxHeaderList {
		t.Fatalf("proxy SETTINGS %v: not the relay's (want MAX_CONCURRENT_STREAMS %d, MAX_HEADER_LIST_SIZE %d)",
			ev.settings, relay.MaxClientStreams, relay.MaxHeaderList)
	}
	return p
}

// mustHeaders and mustData write or fail the test.
func (p *h2peer) mustHeaders(t testing.TB, id uint32, fields []hpack.HeaderField, end bool) {
	t.Helper()
	if err := p.headers(id, fields, end); err != nil {
		t.Fatal(err)
	}
}

func (p *h2peer) mustData(t testing.TB, id uint32, b []byte, end bool) {
	t.Helper()
	if err := p.data(id, b, end); err != nil {
		t.Fatal(err)
	}
}

// get sends a request without a body and returns its answer.
func (p *h2peer) get(t testing.TB, path, key string, extra ...string) h2answer {
	t.Helper()
	id := p.newStream()
	p.mustHeaders(t, id, reqHead("GET", path, key, extra...), true)
	return p.answer(t, id)
}

// reqHead is a request head: the pseudo-fields, X-Shard-Key when key is
// set, then extra name/value pairs.
func reqHead(method, path, key string, extra ...string) []hpack.HeaderField {
	h := []hpack.HeaderField{{Name: ":method", Value: method}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "shard.test"}, {Name: ":path", Value: path}}
	if key != "" {
		h = append(h, hpack.HeaderField{Name: "x-shard-key", Value: key})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h = append(h, hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return h
}

// eventually waits for cond, polling, up to relayWait.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(relayWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, relayWait)
		}
		time.Sleep(time.Millisecond)
	}
}

// startH2CHandlers serves each handler on its own h2c server, named
// h2-<i>, all ready.
func startH2CHandlers(t testing.TB, handlers ...http.Handler) watch.Topology {
	t.Helper()
	topo := watch.Topology{Replicas: len(handlers)}
	for i, h := range handlers {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		srv := &http.Server{Protocols: &protos, Handler: h}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: fmt.Sprintf("h2-%d", i),
			Addr: ln.Addr().String(), Ready: true, Protocol: watch.H2C})
	}
	return topo
}

// h2RawShard is a scripted HTTP/2 shard: handle sees every frame of every
// connection from the proxy (SETTINGS and PING are acknowledged for it),
// one connection's frames in order.
type h2RawShard struct {
	name  string
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	peers []*h2peer
	conns atomic.Int32
}

func startH2RawShard(t testing.TB, name string, settings []http2.Setting, handle func(p *h2peer, ev h2ev)) *h2RawShard {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &h2RawShard{name: name, ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(nc, settings, handle)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		peers := append([]*h2peer(nil), s.peers...)
		s.mu.Unlock()
		for _, p := range peers {
			p.close()
		}
		s.wg.Wait()
	})
	return s
}

func (s *h2RawShard) serve(nc net.Conn, settings []http2.Setting, handle func(p *h2peer, ev h2ev)) {
	br := bufio.NewReader(nc)
	preface := make([]byte, len(http2.ClientPreface))
	_ = nc.SetReadDeadline(time.Now().Add(relayWait))
	if _, err := io.ReadFull(br, preface); err != nil || string(preface) != http2.ClientPreface {
		_ = nc.Close()
		return
	}
	_ = nc.SetReadDeadline(time.Time{})
	p := newH2Peer(nc, br, true)
	s.mu.Lock()
	s.peers = append(s.peers, p)
	s.mu.Unlock()
	defer p.close()
	if err := p.write(func(fr *http2.Framer) error { return fr.WriteSettings(settings...) }); err != nil {
		return
	}
	for {
		ev, _ := p.nextAny(0)
		if ev.err != nil && ev.stream == 0 {
			return
		}
		handle(p, ev)
	}
}

func (s *h2RawShard) shard(ordinal int) watch.Shard {
	return watch.Shard{Ordinal: ordinal, Name: s.name, Addr: s.ln.Addr().String(), Ready: true, Protocol: watch.H2C}
}

// relayBytes is n deterministic bytes.
func relayBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// TestRelayFraming: what the client sends reaches the shard as sent
// (method, path with %2F and query, fields, a body in several DATA frames,
// trailers), under the header policy (X-Forwarded-*, no client
// X-Shard-Previous, te: trailers kept); the shard's answer (status,
// fields, body in several frames, trailers) comes back with x-shard.
func TestRelayFraming(t *testing.T) {
	type record struct {
		head, trailer []hpack.HeaderField
		body          []byte
		frames        int
	}
	got := make(chan record, 8)
	var mu sync.Mutex
	streams := map[*h2peer]map[uint32]*record{}
	shard := startH2RawShard(t, "raw-0", nil, func(p *h2peer, ev h2ev) {
		mu.Lock()
		m := streams[p]
		if m == nil {
			m = map[uint32]*record{}
			streams[p] = m
		}
		r := m[ev.stream]
		switch ev.typ {
		case http2.FrameHeaders:
			if r == nil {
				r = &record{head: ev.fields}
				m[ev.stream] = r
			} else {
				r.trailer = ev.fields
			}
		case http2.FrameData:
			if r != nil {
				r.body = append(r.body, ev.data...)
				r.frames++
			}
		}
		mu.Unlock()
		if r == nil || !ev.ends() {
			return
		}
		got <- *r
		id := ev.stream
		if fieldValue(r.head, "x-empty") != "" {
			_ = p.headers(id, []hpack.HeaderField{{Name: ":status", Value: "204"}, {Name: "x-answer", Value: "empty"}}, true)
			return
		}
		_ = p.headers(id, []hpack.HeaderField{{Name: ":status", Value: "201"}, {Name: "content-type", Value: "text/plain"},
			{Name: "x-answer", Value: "yes"}, {Name: "x-shard", Value: "spoofed"}, {Name: "set-cookie", Value: "a=1"},
			{Name: "set-cookie", Value: "b=2"}}, false)
		_ = p.data(id, []byte("part1-"), false)
		_ = p.data(id, []byte("part2-"), false)
		_ = p.data(id, relayBytes(16000), false) // within the 16 KiB window the relay gives a shard stream
		_ = p.headers(id, []hpack.HeaderField{{Name: "x-sum", Value: "42"}, {Name: "grpc-status", Value: "0"}}, true)
	})
	topo := watch.Topology{Replicas: 1, Shards: []watch.Shard{shard.shard(0)}}
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	c := dialRelay(t, p.url, bigWindows)

	t.Run("body and trailers", func(t *testing.T) {
		body := [][]byte{[]byte("hello "), {0, 1, 0xff, '\r', '\n'}, relayBytes(20000), relayBytes(70000)[50000:]}
		id := c.newStream()
		c.mustHeaders(t, id, []hpack.HeaderField{{Name: ":method", Value: "PROPPATCH"}, {Name: ":scheme", Value: "http"},
			{Name: ":authority", Value: "api.example:8080"}, {Name: ":path", Value: "/a/b%2Fc?q=1&r=%2F&r=x%20y"},
			{Name: "x-shard-key", Value: "k1"}, {Name: "te", Value: "trailers"}, {Name: "x-shard-previous", Value: "evil"},
			{Name: "x-shard-previous-address", Value: "6.6.6.6:1"}, {Name: "content-type", Value: "application/octet-stream"},
			{Name: "x-multi", Value: "a"}, {Name: "x-multi", Value: "b"}, {Name: "trailer", Value: "x-checksum"}}, false)
		var want []byte
		for _, b := range body {
			c.mustData(t, id, b, false)
			want = append(want, b...)
		}
		c.mustHeaders(t, id, []hpack.HeaderField{{Name: "x-checksum", Value: "abc"}, {Name: "x-count", Value: "4"}}, true)

		var r record
		select {
		case r = <-got:
		case <-time.After(relayWait):
			t.Fatal("the request did not reach the shard")
		}
		for _, c := range []struct{ name, want string }{
			{":method", "PROPPATCH"}, {":path", "/a/b%2Fc?q=1&r=%2F&r=x%20y"}, {":scheme", "http"},
			{":authority", "api.example:8080"}, {"x-shard-key", "k1"}, {"te", "trailers"},
			{"content-type", "application/octet-stream"}, {"x-forwarded-for", "127.0.0.1"},
			{"x-forwarded-proto", forwardedProto(p)}, {"x-forwarded-host", "api.example:8080"}, {"trailer", "x-checksum"},
		} {
			if v := fieldValues(r.head, c.name); len(v) != 1 || v[0] != c.want {
				t.Errorf("shard got %s %q, want %q (head %v)", c.name, v, c.want, r.head)
			}
		}
		if v := fieldValues(r.head, "x-multi"); strings.Join(v, ",") != "a,b" {
			t.Errorf("shard got x-multi %q, want [a b] in order", v)
		}
		if v := append(fieldValues(r.head, "x-shard-previous"), fieldValues(r.head, "x-shard-previous-address")...); len(v) > 0 {
			t.Errorf("the client's own x-shard-previous* reached the shard: %q", v)
		}
		if !bytes.Equal(r.body, want) {
			t.Errorf("shard got %d body bytes, want %d (equal: %v)", len(r.body), len(want), bytes.Equal(r.body, want))
		}
		if fieldValue(r.trailer, "x-checksum") != "abc" || fieldValue(r.trailer, "x-count") != "4" || len(r.trailer) != 2 {
			t.Errorf("shard got trailers %v, want x-checksum abc, x-count 4", r.trailer)
		}

		a := c.answer(t, id)
		if !a.end || a.reset || len(a.heads) != 1 {
			t.Fatalf("answer %v: want one head, then END_STREAM", a)
		}
		for _, c := range []struct{ name, want string }{
			{":status", "201"}, {"content-type", "text/plain"}, {"x-answer", "yes"},
		} {
			if v := a.get(c.name); v != c.want {
				t.Errorf("answer %s %q, want %q", c.name, v, c.want)
			}
		}
		if v := fieldValues(a.final(), "x-shard"); len(v) != 1 || v[0] != "raw-0" {
			t.Errorf("answer x-shard %q, want exactly [raw-0] (the shard's own replaced)", v)
		}
		if v := fieldValues(a.final(), "set-cookie"); strings.Join(v, "|") != "a=1|b=2" {
			t.Errorf("answer set-cookie %q, want both, in order", v)
		}
		if wantBody := append([]byte("part1-part2-"), relayBytes(16000)...); !bytes.Equal(a.body, wantBody) {
			t.Errorf("answer body %d bytes, want %d (equal: false)", len(a.body), len(wantBody))
		}
		if fieldValue(a.trailer, "x-sum") != "42" || fieldValue(a.trailer, "grpc-status") != "0" {
			t.Errorf("answer trailers %v, want x-sum 42 and grpc-status 0", a.trailer)
		}
	})

	t.Run("no body, forwarded fields kept", func(t *testing.T) {
		id := c.newStream()
		c.mustHeaders(t, id, reqHead("GET", "/x?y=%2F", "k2", "x-forwarded-for", "10.0.0.1", "x-forwarded-proto", "https",
			"x-forwarded-host", "front.example", "x-empty", "1"), true)
		var r record
		select {
		case r = <-got:
		case <-time.After(relayWait):
			t.Fatal("the request did not reach the shard")
		}
		if r.frames != 0 || len(r.body) != 0 {
			t.Errorf("shard got %d DATA frames for a request that ended on its head", r.frames)
		}
		for _, c := range []struct{ name, want string }{
			{":path", "/x?y=%2F"}, {"x-forwarded-for", "10.0.0.1, 127.0.0.1"}, {"x-forwarded-proto", "https"},
			{"x-forwarded-host", "front.example"},
		} {
			if v := fieldValues(r.head, c.name); len(v) != 1 || v[0] != c.want {
				t.Errorf("shard got %s %q, want %q", c.name, v, c.want)
			}
		}
		a := c.answer(t, id)
		if !a.end || a.reset || a.status() != "204" || a.get("x-shard") != "raw-0" || a.get("x-answer") != "empty" || len(a.body) != 0 {
			t.Fatalf("answer %v: want 204 ending on its head, x-shard raw-0", a)
		}
	})
}

// TestRelayMalformed: requests RFC 9113 §8.1.1 and §8.2.2 call malformed
// are reset with PROTOCOL_ERROR, never answered, and the connection goes
// on serving.
func TestRelayMalformed(t *testing.T) {
	topo := startH2CShards(t, 1)
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	c := dialRelay(t, p.url, bigWindows)
	base := func(extra ...string) []hpack.HeaderField { return reqHead("POST", "/m", "k", extra...) }
	without := func(name string) []hpack.HeaderField {
		var out []hpack.HeaderField
		for _, f := range base() {
			if f.Name != name {
				out = append(out, f)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		head    []hpack.HeaderField
		data    []string
		trailer []hpack.HeaderField // sent after data, ending the stream unless trailerOpen
		open    bool                // the stream is not ended by the client
	}{
		{name: "connection: close", head: base("connection", "close")},
		{name: "connection: keep-alive", head: base("connection", "keep-alive")},
		{name: "keep-alive", head: base("keep-alive", "timeout=5")},
		{name: "proxy-connection", head: base("proxy-connection", "keep-alive")},
		{name: "upgrade", head: base("upgrade", "websocket")},
		{name: "transfer-encoding", head: base("transfer-encoding", "chunked")},
		{name: "te: gzip", head: base("te", "gzip")},
		{name: "te: trailers, gzip", head: base("te", "trailers, gzip")},
		{name: "missing :path", head: without(":path")},
		{name: "missing :method", head: without(":method")},
		{name: "missing :scheme", head: without(":scheme")},
		{name: "relative :path", head: append([]hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: "m"}}, hpack.HeaderField{Name: "x-shard-key", Value: "k"})},
		{name: ":status in a request", head: append([]hpack.HeaderField{{Name: ":status", Value: "200"}}, base()...)},
		{name: "upper-case field name", head: base("X-Upper", "1")},
		{name: "content-length not a number", head: base("content-length", "five")},
		{name: "content-length 5, 3 bytes", head: base("content-length", "5"), data: []string{"abc"}},
		{name: "content-length 5, 3 bytes in 3 frames", head: base("content-length", "5"), data: []string{"a", "b", "c"}},
		{name: "content-length 1, 3 bytes", head: base("content-length", "1"), data: []string{"abc"}, open: true},
		{name: "content-length 5, 3 bytes, trailers", head: base("content-length", "5"), data: []string{"abc"},
			trailer: []hpack.HeaderField{{Name: "x-t", Value: "1"}}},
		{name: "content-length 0, 1 byte", head: base("content-length", "0"), data: []string{"x"}},
		{name: "two content-lengths", head: base("content-length", "3", "content-length", "4"), data: []string{"abc"}},
		{name: "trailers with a pseudo-field", head: base(), data: []string{"abc"},
			trailer: []hpack.HeaderField{{Name: ":path", Value: "/x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := c.newStream()
			bodyless := len(tc.data) == 0 && tc.trailer == nil
			c.mustHeaders(t, id, tc.head, bodyless && !tc.open)
			for i, d := range tc.data {
				last := i == len(tc.data)-1 && tc.trailer == nil && !tc.open
				if err := c.data(id, []byte(d), last); err != nil {
					t.Fatal(err)
				}
			}
			if tc.trailer != nil {
				c.mustHeaders(t, id, tc.trailer, true)
			}
			a := c.answer(t, id)
			if !a.reset || a.code != http2.ErrCodeProtocol || len(a.heads) > 0 {
				t.Fatalf("answer %v: want RST_STREAM PROTOCOL_ERROR and no answer", a)
			}
			// The connection goes on.
			if a := c.get(t, "/ok", "k"); a.status() != "200" || !strings.HasPrefix(string(a.body), "h2-0 GET /ok") {
				t.Fatalf("next request on the connection: %v %q", a, a.body)
			}
		})
	}
}

// TestRelayFlowControl: the relay keeps to the client's windows, however
// small, and holds the client to its own.
func TestRelayFlowControl(t *testing.T) {
	const size = 200 << 10
	var written atomic.Int64
	topo := startH2CHandlers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := relayBytes(size)
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for len(body) > 0 {
			n := min(len(body), 8192)
			if _, err := w.Write(body[:n]); err != nil {
				return
			}
			written.Add(int64(n))
			body = body[n:]
		}
	}))
	p := startProxy(t, Config{}, ring.Config{}, &topo)

	// download reads stream id to its end, holding the relay to the
	// windows: stream win, connection connWin. It grants more window only
	// once all of it is used, growing from grant.
	download := func(t *testing.T, c *h2peer, id uint32, win, connWin, grant int64) h2answer {
		t.Helper()
		var a h2answer
		first := true
		for {
			ev := c.next(t, id)
			if ev.err != nil {
				t.Fatalf("after %d bytes: %v", len(a.body), ev.err)
			}
			switch ev.typ {
			case http2.FrameHeaders:
				a.heads = append(a.heads, ev.fields)
			case http2.FrameRSTStream:
				t.Fatalf("after %d bytes: %v", len(a.body), ev)
			case http2.FrameData:
				if first && int64(ev.length) > win {
					t.Fatalf("first DATA frame of %d bytes, window %d", ev.length, win)
				}
				first = false
				win -= int64(ev.length)
				connWin -= int64(ev.length)
				if win < 0 || connWin < 0 {
					t.Fatalf("after %d bytes: the relay overran the window by %d (stream), %d (connection)",
						len(a.body), -win, -connWin)
				}
				a.body = append(a.body, ev.data...)
				if win == 0 {
					if err := c.windowUpdate(id, uint32(grant)); err != nil {
						t.Fatal(err)
					}
					win += grant
					grant = min(2*grant, 32<<10)
				}
				if connWin < 16<<10 {
					if err := c.windowUpdate(0, uint32(65535-connWin)); err != nil {
						t.Fatal(err)
					}
					connWin = 65535
				}
			}
			if ev.ends() {
				a.end = true
				return a
			}
		}
	}

	t.Run("tiny client window", func(t *testing.T) {
		c := dialRelay(t, p.url, dialOpts{window: 10, connWindow: 65535})
		id := c.newStream()
		c.mustHeaders(t, id, reqHead("GET", "/big", "k"), true)
		a := download(t, c, id, 10, 65535, 10)
		if a.status() != "200" || !bytes.Equal(a.body, relayBytes(size)) {
			t.Fatalf("status %s, %d bytes (want 200 and the %d bytes sent)", a.status(), len(a.body), size)
		}
	})

	t.Run("zero window opened by SETTINGS", func(t *testing.T) {
		written.Store(0)
		c := dialRelay(t, p.url, dialOpts{window: 0, connWindow: 65535})
		id := c.newStream()
		c.mustHeaders(t, id, reqHead("GET", "/big", "k"), true)
		// The shard writes what its window (16 KiB until the client reads)
		// and its server's buffers take.
		eventually(t, "the shard writing", func() bool { return written.Load() >= 16<<10 })
		// Nothing may come before the window opens.
		if err := c.write(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{'z', 'e', 'r', 'o'}) }); err != nil {
			t.Fatal(err)
		}
		for {
			ev := c.next(t, 0)
			if ev.err != nil {
				t.Fatal(ev.err)
			}
			if ev.typ == http2.FramePing && ev.ack() {
				break
			}
		}
		for _, ev := range c.held[id] {
			if ev.typ == http2.FrameData && ev.length > 0 {
				t.Fatalf("DATA before any window: %v", ev)
			}
		}
		if err := c.write(func(fr *http2.Framer) error {
			return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000})
		}); err != nil {
			t.Fatal(err)
		}
		a := download(t, c, id, 1000, 65535, 1000)
		if !bytes.Equal(a.body, relayBytes(size)) {
			t.Fatalf("%d bytes, want the %d bytes sent", len(a.body), size)
		}
	})

	// A shard that never reads: the relay passes it at most 65535 bytes
	// (its initial windows), so it credits the client at most that much.
	var received atomic.Int64
	sink := startH2RawShard(t, "sink", nil, func(_ *h2peer, ev h2ev) {
		if ev.typ == http2.FrameData {
			received.Add(int64(len(ev.data)))
		}
	})
	sinkTopo := watch.Topology{Replicas: 1, Shards: []watch.Shard{sink.shard(0)}}

	// credit sums the WINDOW_UPDATEs on id until the relay has passed on
	// 65535 bytes and at least 65535-16383 came back (no more can come:
	// it gives window back in steps of 16 KiB).
	credit := func(t *testing.T, c *h2peer, id uint32, skipFirst bool) int64 {
		t.Helper()
		eventually(t, "the sink receiving 65535 bytes", func() bool { return received.Load() >= 65535 })
		var sum int64
		for sum < 65535-16383 {
			ev := c.next(t, id)
			if ev.err != nil || ev.typ == http2.FrameRSTStream || ev.typ == http2.FrameGoAway {
				t.Fatalf("waiting for window: %v", ev)
			}
			if ev.typ == http2.FrameWindowUpdate {
				if skipFirst {
					skipFirst = false
					continue
				}
				sum += int64(ev.incr)
			}
		}
		if received.Load() != 65535 {
			t.Fatalf("the sink got %d bytes, beyond its windows", received.Load())
		}
		return sum
	}

	t.Run("client overruns the stream window", func(t *testing.T) {
		received.Store(0)
		ps := startProxy(t, Config{}, ring.Config{}, &sinkTopo) // a new shard connection, its windows unused
		c := dialRelay(t, ps.url, bigWindows)
		c.expectConn(t, "the relay's connection window", func(ev h2ev) bool { return ev.typ == http2.FrameWindowUpdate })
		id := c.newStream()
		c.mustHeaders(t, id, reqHead("POST", "/up", "k"), false)
		c.mustData(t, id, relayBytes(65535), false)
		allowed := credit(t, c, id, false)
		if allowed > 0 {
			c.mustData(t, id, relayBytes(int(allowed)), false)
		}
		c.mustData(t, id, []byte{'!'}, false) // one byte beyond
		for {
			ev := c.next(t, id)
			if ev.err != nil {
				t.Fatal(ev.err)
			}
			if ev.typ == http2.FrameRSTStream {
				if ev.code != http2.ErrCodeFlowControl {
					t.Fatalf("%v, want FLOW_CONTROL_ERROR", ev)
				}
				break
			}
			if ev.typ == http2.FrameHeaders || ev.typ == http2.FrameData {
				t.Fatalf("%v, want RST_STREAM FLOW_CONTROL_ERROR", ev)
			}
		}
		// A stream error: the connection goes on.
		if err := c.write(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{1}) }); err != nil {
			t.Fatal(err)
		}
		c.expectConn(t, "PING ACK", func(ev h2ev) bool {
			if ev.typ == http2.FrameGoAway {
				t.Fatalf("%v after a stream error", ev)
			}
			return ev.typ == http2.FramePing && ev.ack()
		})
	})

	t.Run("client overruns the connection window", func(t *testing.T) {
		received.Store(0)
		ps := startProxy(t, Config{}, ring.Config{}, &sinkTopo) // a new shard connection, its windows unused
		c := dialRelay(t, ps.url, bigWindows)
		first := c.expectConn(t, "the relay's connection window", func(ev h2ev) bool { return ev.typ == http2.FrameWindowUpdate })
		connWin := 65535 + int64(first.incr)
		id := c.newStream()
		c.mustHeaders(t, id, reqHead("POST", "/up", "k"), false)
		c.mustData(t, id, relayBytes(65535), false)
		connWin -= 65535
		connWin += credit(t, c, 0, false)
		// Spend the rest on streams of 65535 bytes at most (within their
		// own windows), then one byte beyond.
		for connWin > 0 {
			id := c.newStream()
			c.mustHeaders(t, id, reqHead("POST", "/up", "k"), false)
			n := min(connWin, 65535)
			c.mustData(t, id, relayBytes(int(n)), false)
			connWin -= n
		}
		id = c.newStream()
		c.mustHeaders(t, id, reqHead("POST", "/up", "k"), false)
		c.mustData(t, id, []byte{'!'}, false)
		ev := c.expectConn(t, "GOAWAY", func(ev h2ev) bool { return ev.typ == http2.FrameGoAway })
		if ev.code != http2.ErrCodeFlowControl {
			t.Fatalf("%v, want GOAWAY FLOW_CONTROL_ERROR", ev)
		}
	})
}

// TestRelayIsolation: a client that does not read holds back only its own
// stream: another client's requests to the same shard, over the same
// shard connection, go through.
func TestRelayIsolation(t *testing.T) {
	const bigSize = 64 << 20
	var written atomic.Int64
	topo := startH2CHandlers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		chunk := relayBytes(32 << 10)
		for n := 0; n < bigSize; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	}))
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	for _, tc := range []struct {
		name      string
		opts      dialOpts
		threshold int64 // written by the shard before the other client starts
	}{
		{"no window updates", dialOpts{window: 65535, connWindow: 65535}, 64 << 10},
		{"socket not read", dialOpts{window: 1<<31 - 1, connWindow: 1<<31 - 1, noReader: true}, 256 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			written.Store(0)
			stuck := dialRelay(t, p.url, tc.opts)
			stuckID := stuck.newStream()
			stuck.mustHeaders(t, stuckID, reqHead("GET", "/big", "k"), true)
			eventually(t, "the big answer flowing", func() bool { return written.Load() >= tc.threshold })

			other := dialRelay(t, p.url, bigWindows)
			start := time.Now()
			for i := range 50 {
				a := other.get(t, "/small", "k")
				if a.status() != "200" || string(a.body) != "ok" || a.get("x-shard") != "h2-0" {
					t.Fatalf("request %d: %v %q", i, a, a.body)
				}
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("50 requests took %v beside a stuck client", d)
			}
			if w := written.Load(); w >= bigSize {
				t.Errorf("the shard wrote all %d bytes: the stuck client was not stuck", w)
			}
			if tc.opts.noReader {
				return
			}
			// The stuck client got no more than its windows allow.
			if err := stuck.write(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{2}) }); err != nil {
				t.Fatal(err)
			}
			stuck.expectConn(t, "PING ACK", func(ev h2ev) bool { return ev.typ == http2.FramePing && ev.ack() })
			var got int
			for _, ev := range stuck.held[stuckID] {
				if ev.typ == http2.FrameData {
					got += int(ev.length)
				}
			}
			if got > 65535 {
				t.Errorf("the stuck client got %d bytes of DATA, beyond its window 65535", got)
			}
		})
	}
}

// TestRelayManyStreams: streams of one connection go each to its key's
// owner; the 101st concurrent stream is refused, and the connection
// serves again once streams end.
func TestRelayManyStreams(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 200)
	var handlers []http.Handler
	for i := range 3 {
		name := fmt.Sprintf("h2-%d", i)
		handlers = append(handlers, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hold" {
				arrived <- struct{}{}
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "%s %s", name, r.Header.Get("X-Shard-Key"))
		}))
	}
	topo := startH2CHandlers(t, handlers...)
	p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)

	t.Run("each key to its owner", func(t *testing.T) {
		c := dialRelay(t, p.url, bigWindows)
		ids := map[uint32]int{}
		for k := range 60 {
			id := c.newStream()
			ids[id] = k
			c.mustHeaders(t, id, reqHead("GET", "/", strconv.Itoa(k)), true)
		}
		for id, k := range ids {
			a := c.answer(t, id)
			want := fmt.Sprintf("h2-%d", k%3)
			if a.status() != "200" || string(a.body) != fmt.Sprintf("%s %d", want, k) || a.get("x-shard") != want {
				t.Errorf("key %d: %v %q, want 200 from %s", k, a, a.body, want)
			}
		}
	})

	t.Run("101st stream refused", func(t *testing.T) {
		c := dialRelay(t, p.url, bigWindows)
		var held []uint32
		for range relay.MaxClientStreams {
			id := c.newStream()
			held = append(held, id)
			c.mustHeaders(t, id, reqHead("GET", "/hold", "0"), true)
		}
		for i := range relay.MaxClientStreams {
			select {
			case <-arrived:
			case <-time.After(relayWait):
				t.Fatalf("%d of %d held requests reached the shard", i, relay.MaxClientStreams)
			}
		}
		id := c.newStream()
		c.mustHeaders(t, id, reqHead("GET", "/", "1"), true)
		if a := c.answer(t, id); !a.reset || a.code != http2.ErrCodeRefusedStream || len(a.heads) > 0 {
			t.Fatalf("stream %d: %v, want RST_STREAM REFUSED_STREAM", relay.MaxClientStreams+1, a)
		}
		close(release)
		for _, id := range held {
			if a := c.answer(t, id); a.status() != "200" || string(a.body) != "h2-0 0" {
				t.Fatalf("held stream %d: %v %q", id, a, a.body)
			}
		}
		if a := c.get(t, "/", "2"); a.status() != "200" || string(a.body) != "h2-2 2" {
			t.Fatalf("after the held streams: %v %q", a, a.body)
		}
	})
}

// TestRelayShardMisbehaviour: a scripted shard breaks the protocol in one
// way per case; the client gets the documented outcome, and neither that
// client's other streams nor another client are affected.
func TestRelayShardMisbehaviour(t *testing.T) {
	grpcHead := func(key string) []hpack.HeaderField {
		return reqHead("POST", "/pkg.Svc/Call", key, "content-type", "application/grpc", "te", "trailers")
	}
	statusHead := func(status string) []hpack.HeaderField {
		return []hpack.HeaderField{{Name: ":status", Value: status}, {Name: "content-type", Value: "text/plain"}}
	}
	type want struct {
		reset  http2.ErrCode // a RST_STREAM with this code; 0: none
		status string        // the final :status; "" none
		grpc   string        // grpc-status (in the head or the trailers)
		body   string        // the start of the body
		head   bool          // a head must come before the reset
	}
	for _, tc := range []struct {
		name      string
		grpc      bool
		cfg       Config
		window    uint32 // the client's stream window (0: large)
		misbehave func(p *h2peer, id uint32, closeNow <-chan struct{})
		want      want
	}{
		{name: "REFUSED_STREAM before the head",
			misbehave: func(p *h2peer, id uint32, closeNow <-chan struct{}) { _ = p.rst(id, http2.ErrCodeRefusedStream) },
			want:      want{reset: http2.ErrCodeRefusedStream}},
		{name: "INTERNAL_ERROR before the head",
			misbehave: func(p *h2peer, id uint32, closeNow <-chan struct{}) { _ = p.rst(id, http2.ErrCodeInternal) },
			want:      want{status: "502", body: `{"error":"shard unreachable"`}},
		{name: "INTERNAL_ERROR before the head, gRPC", grpc: true,
			misbehave: func(p *h2peer, id uint32, closeNow <-chan struct{}) { _ = p.rst(id, http2.ErrCodeInternal) },
			want:      want{status: "200", grpc: "14"}},
		{name: "reset after the head passes through",
			misbehave: func(p *h2peer, id uint32, closeNow <-chan struct{}) {
				_ = p.headers(id, statusHead("200"), false)
				_ = p.data(id, []byte("par"), false)
				_ = p.rst(id, http2.ErrCodeEnhanceYourCalm)
			},
			want: want{status: "200", body: "par", reset: http2.ErrCodeEnhanceYourCalm, head: true}},
		{name: "connection closed mid-body",
			misbehave: func(p *h2peer, id uint32, closeNow <-chan struct{}) {
				_ = p.headers(id, statusHead("200"), false)
				_ = p.data(id, []byte("partial"), false)
				<-closeNow
				_ = p.nc.Close()
			},
			want: want{status: "200", body: "partial", reset: http2.ErrCodeInternal, head: true}},
		{name: "connection closed mid-body, gRPC", grpc: true,
			misbehave: func(p *h2peer, id uint32, closeNow <-chan struct{}) {
				_ = p.headers(id, []hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"}}, false)
				_ = p.data(id, []byte("partial"), false)
				<-closeNow
				_ = p.nc.Close()
			},
			want: want{status: "200", body: "partial", grpc: "14", head: true}},
		{name: "GOAWAY below the stream",
			misbehave: func(p *h2peer, id uint32, closeNow <-chan struct{}) { _ = p.goAway(max(id, 2)-2, http2.ErrCodeNo) },
			want:      want{reset: http2.ErrCodeRefusedStream}},
		{name: "GOAWAY at the stream, then the answer",
			misbehave: func(p *h2peer, id uint32, closeNow <-chan struct{}) {
				_ = p.goAway(id, http2.ErrCodeNo)
				_ = p.headers(id, statusHead("200"), false)
				_ = p.data(id, []byte("after goaway"), true)
			},
			want: want{status: "200", body: "after goaway"}},
		{name: "no answer", cfg: Config{UpstreamTimeout: 300 * time.Millisecond},
			misbehave: func(*h2peer, uint32, <-chan struct{}) {},
			want:      want{status: "504", body: `{"error":"shard timeout"`}},
		{name: "no answer, gRPC", grpc: true, cfg: Config{UpstreamTimeout: 300 * time.Millisecond},
			misbehave: func(*h2peer, uint32, <-chan struct{}) {},
			want:      want{status: "200", grpc: "4"}},
		{name: "content-length longer than the body",
			misbehave: func(p *h2peer, id uint32, closeNow <-chan struct{}) {
				_ = p.headers(id, []hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "content-length", Value: "10"}}, false)
				_ = p.data(id, []byte("short"), true)
			},
			// RFC 9113 §8.1.1: a malformed answer must not be passed on
			// as a complete one.
			want: want{status: "200", body: "short", reset: http2.ErrCodeInternal, head: true}},
		{name: "upper-case field name in the head",
			misbehave: func(p *h2peer, id uint32, closeNow <-chan struct{}) {
				_ = p.headers(id, []hpack.HeaderField{{Name: ":status", Value: "200"}, {Name: "X-Bad", Value: "1"}}, false)
				_ = p.data(id, []byte("body"), true)
			},
			want: want{status: "502", body: `{"error":"invalid response from shard"`}},
		{name: "shard overruns the stream window", window: 1,
			misbehave: func(p *h2peer, id uint32, closeNow <-chan struct{}) {
				_ = p.headers(id, statusHead("200"), false)
				_ = p.data(id, relayBytes(65536), false)
			},
			want: want{status: "200", reset: http2.ErrCodeInternal, head: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			closeNow := make(chan struct{})
			var closeOnce sync.Once
			closeShard := func() { closeOnce.Do(func() { close(closeNow) }) }
			raw := startH2RawShard(t, "raw-0", nil, func(p *h2peer, ev h2ev) {
				if ev.typ != http2.FrameHeaders || !ev.ends() {
					return
				}
				if fieldValue(ev.fields, "x-behave") == "good" {
					_ = p.headers(ev.stream, statusHead("200"), false)
					_ = p.data(ev.stream, []byte("fine"), true)
					return
				}
				tc.misbehave(p, ev.stream, closeNow)
			})
			t.Cleanup(closeShard) // before the shard's own cleanup
			good := startH2CShards(t, 2).Shards[1]
			topo := watch.Topology{Replicas: 2, Shards: []watch.Shard{raw.shard(0), good}}
			p := startProxy(t, tc.cfg, ring.Config{Algorithm: ring.Modulus}, &topo)
			other := dialRelay(t, p.url, bigWindows)
			opts := bigWindows
			if tc.window != 0 {
				opts.window = tc.window
			}
			c := dialRelay(t, p.url, opts)

			// A stream of the same connection, open at the shard meanwhile.
			sideID := c.newStream()
			c.mustHeaders(t, sideID, reqHead("GET", "/side", "1"), true)

			id := c.newStream()
			head := reqHead("GET", "/bad", "0")
			if tc.grpc {
				head = grpcHead("0")
			}
			c.mustHeaders(t, id, head, true)
			a := c.answerWatching(t, id, func(body []byte) {
				if string(body) == "partial" {
					closeShard() // the client has the start of the body
				}
			})
			w := tc.want
			switch {
			case w.reset != 0 && (!a.reset || a.code != w.reset):
				t.Errorf("answer %v: want RST_STREAM %v", a, w.reset)
			case w.reset == 0 && (a.reset || !a.end):
				t.Errorf("answer %v: want a complete answer", a)
			case w.reset != 0 && !w.head && len(a.heads) > 0:
				t.Errorf("answer %v: want no head before the reset", a)
			}
			if a.status() != w.status {
				t.Errorf("answer %v: status %q, want %q", a, a.status(), w.status)
			}
			if !strings.HasPrefix(string(a.body), w.body) {
				t.Errorf("answer body %q, want it to start %q", a.body, w.body)
			}
			if w.status != "" && a.get("x-shard") != "raw-0" {
				t.Errorf("answer %v: x-shard %q, want raw-0", a, a.get("x-shard"))
			}
			if w.status != "" && w.status != "200" && a.get("content-type") != "application/json" {
				t.Errorf("answer %v: want a JSON error", a)
			}
			if w.grpc != "" {
				gs := fieldValue(a.trailer, "grpc-status")
				if len(a.trailer) == 0 {
					gs = a.get("grpc-status")
				}
				if gs != w.grpc || !a.end || a.reset {
					t.Errorf("answer %v: grpc-status %q, want %q ending the stream", a, gs, w.grpc)
				}
			}
			closeShard()
			if tc.window != 0 { // open the windows for what follows
				if err := c.write(func(fr *http2.Framer) error {
					return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
				}); err != nil {
					t.Fatal(err)
				}
			}

			// The other stream of the connection, to another shard.
			if side := c.answer(t, sideID); side.status() != "200" || side.get("x-shard") != "h2-1" {
				t.Errorf("the connection's other stream: %v", side)
			}
			// The same connection, and another one, still serve, the
			// misbehaving shard included.
			for _, peer := range []*h2peer{c, other} {
				if a := peer.get(t, "/after", "1"); a.status() != "200" || a.get("x-shard") != "h2-1" {
					t.Errorf("a request to the good shard afterwards: %v", a)
				}
				if a := peer.get(t, "/after", "0", "x-behave", "good"); a.status() != "200" || string(a.body) != "fine" || a.get("x-shard") != "raw-0" {
					t.Errorf("a good request to raw-0 afterwards: %v %q", a, a.body)
				}
			}
		})
	}
}

// TestRelayInvalidStatus: an answer head whose :status is not a valid
// final or informational status is a bad answer: 502.
func TestRelayInvalidStatus(t *testing.T) {
	var mu sync.Mutex
	status := map[string]string{} // key -> :status the shard sends
	raw := startH2RawShard(t, "raw-0", nil, func(p *h2peer, ev h2ev) {
		if ev.typ != http2.FrameHeaders || !ev.ends() {
			return
		}
		mu.Lock()
		st := status[fieldValue(ev.fields, "x-shard-key")]
		mu.Unlock()
		end := st == "103 ending"
		if end {
			st = "103"
		}
		_ = p.headers(ev.stream, []hpack.HeaderField{{Name: ":status", Value: st}}, end)
		if !end {
			_ = p.data(ev.stream, []byte("body"), true)
		}
	})
	topo := watch.Topology{Replicas: 1, Shards: []watch.Shard{raw.shard(0)}}
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	c := dialRelay(t, p.url, bigWindows)
	for i, st := range []string{"abc", "", "1000", "20", "101", "103 ending", "+200", "0200", "2e2", "200 "} {
		t.Run(fmt.Sprintf("%q", st), func(t *testing.T) {
			key := strconv.Itoa(i)
			mu.Lock()
			status[key] = st
			mu.Unlock()
			a := c.get(t, "/", key)
			if a.status() != "502" || a.get("x-shard") != "raw-0" || !strings.Contains(string(a.body), "invalid response from shard") {
				t.Errorf(":status %q from the shard: the client got %v %q, want 502 with x-shard raw-0", st, a, a.body)
			}
		})
	}
}

// TestRelayClientCancel: a client's RST_STREAM cancels the shard's request
// (its context), and only that one.
func TestRelayClientCancel(t *testing.T) {
	started := make(chan context.Context, 8)
	release := make(chan struct{})
	topo := startH2CHandlers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/answer-first" {
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "x")
			w.(http.Flusher).Flush()
		}
		started <- r.Context()
		select {
		case <-r.Context().Done():
		case <-release:
			_, _ = io.WriteString(w, "released")
		}
	}))
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	c := dialRelay(t, p.url, bigWindows)
	waitStarted := func(t *testing.T) context.Context {
		t.Helper()
		select {
		case ctx := <-started:
			return ctx
		case <-time.After(relayWait):
			t.Fatal("the request did not reach the shard")
			return nil
		}
	}
	waitCancelled := func(t *testing.T, ctx context.Context) {
		t.Helper()
		select {
		case <-ctx.Done():
		case <-time.After(relayWait):
			t.Fatal("the shard's request was not cancelled")
		}
	}
	for _, tc := range []struct {
		name string
		send func(id uint32)
	}{
		{"before the answer", func(id uint32) { c.mustHeaders(t, id, reqHead("GET", "/wait", "k"), true) }},
		{"request body still open", func(id uint32) {
			c.mustHeaders(t, id, reqHead("POST", "/wait", "k"), false)
			c.mustData(t, id, []byte("abc"), false)
		}},
		{"answer started", func(id uint32) { c.mustHeaders(t, id, reqHead("GET", "/answer-first", "k"), true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := c.newStream()
			tc.send(id)
			ctx := waitStarted(t)
			if strings.Contains(tc.name, "answer started") {
				if ev := c.next(t, id); ev.typ != http2.FrameHeaders {
					t.Fatalf("%v, want the answer's head", ev)
				}
			}
			if err := c.rst(id, http2.ErrCodeCancel); err != nil {
				t.Fatal(err)
			}
			waitCancelled(t, ctx)
		})
	}

	t.Run("only the stream reset", func(t *testing.T) {
		a, b := c.newStream(), c.newStream()
		c.mustHeaders(t, a, reqHead("GET", "/wait", "k"), true)
		ctxA := waitStarted(t)
		c.mustHeaders(t, b, reqHead("GET", "/wait", "k"), true)
		ctxB := waitStarted(t)
		if err := c.rst(a, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
		waitCancelled(t, ctxA)
		if ctxB.Err() != nil {
			t.Fatal("resetting one stream cancelled another")
		}
		close(release)
		if ans := c.answer(t, b); ans.status() != "200" || string(ans.body) != "released" {
			t.Fatalf("the other stream: %v %q", ans, ans.body)
		}
	})
}

// TestRelayPingSettings: PING is acknowledged with its payload, at once
// even while a stream waits; SETTINGS are acknowledged.
func TestRelayPingSettings(t *testing.T) {
	release := make(chan struct{})
	topo := startH2CHandlers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	defer close(release)
	c := dialRelay(t, p.url, bigWindows)
	c.expectConn(t, "SETTINGS ACK", func(ev h2ev) bool { return ev.typ == http2.FrameSettings && ev.ack() })

	id := c.newStream()
	c.mustHeaders(t, id, reqHead("GET", "/", "k"), true) // waits at the shard
	for _, payload := range [][8]byte{{'p', 'i', 'n', 'g', 'p', 'o', 'n', 'g'}, {0, 0, 0, 0, 0, 0, 0, 1}} {
		if err := c.write(func(fr *http2.Framer) error { return fr.WritePing(false, payload) }); err != nil {
			t.Fatal(err)
		}
		ev := c.expectConn(t, "PING ACK", func(ev h2ev) bool { return ev.typ == http2.FramePing })
		if !ev.ack() || ev.ping != payload {
			t.Fatalf("%v with %q, want a PING ACK with %q", ev, ev.ping, payload)
		}
	}
	if err := c.write(func(fr *http2.Framer) error {
		return fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 8192},
			http2.Setting{ID: http2.SettingMaxFrameSize, Val: 32768})
	}); err != nil {
		t.Fatal(err)
	}
	c.expectConn(t, "SETTINGS ACK", func(ev h2ev) bool {
		if ev.typ == http2.FrameGoAway {
			t.Fatalf("%v", ev)
		}
		return ev.typ == http2.FrameSettings && ev.ack()
	})
	// An empty SETTINGS too.
	if err := c.write(func(fr *http2.Framer) error { return fr.WriteSettings() }); err != nil {
		t.Fatal(err)
	}
	c.expectConn(t, "SETTINGS ACK", func(ev h2ev) bool { return ev.typ == http2.FrameSettings && ev.ack() })
}

// TestRelayEarlyHints: informational answers reach the client before the
// final one, in order.
func TestRelayEarlyHints(t *testing.T) {
	topo := startH2CHandlers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Add("Link", "</b.js>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "done")
	}))
	raw := startH2RawShard(t, "raw-1", nil, func(p *h2peer, ev h2ev) {
		if ev.typ != http2.FrameHeaders || !ev.ends() {
			return
		}
		_ = p.headers(ev.stream, []hpack.HeaderField{{Name: ":status", Value: "100"}}, false)
		_ = p.headers(ev.stream, []hpack.HeaderField{{Name: ":status", Value: "103"}, {Name: "link", Value: "</c.css>"}}, false)
		_ = p.headers(ev.stream, []hpack.HeaderField{{Name: ":status", Value: "200"}}, false)
		_ = p.data(ev.stream, []byte("raw done"), true)
	})
	topo.Replicas = 2
	topo.Shards = append(topo.Shards, raw.shard(1))
	p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := dialRelay(t, p.url, bigWindows)

	a := c.get(t, "/", "0")
	if len(a.heads) != 3 || fieldValue(a.heads[0], ":status") != "103" || fieldValue(a.heads[1], ":status") != "103" ||
		a.status() != "200" || string(a.body) != "done" || !a.end {
		t.Fatalf("answer %v: want 103, 103, 200, then the body", a)
	}
	if v := fieldValues(a.heads[0], "link"); len(v) != 1 || v[0] != "</a.css>; rel=preload" {
		t.Errorf("first 103 link %q", v)
	}
	if v := fieldValues(a.heads[1], "link"); len(v) != 2 {
		t.Errorf("second 103 link %q, want both", v)
	}
	if a.get("x-shard") != "h2-0" {
		t.Errorf("x-shard %q", a.get("x-shard"))
	}

	a = c.get(t, "/", "1")
	if len(a.heads) != 3 || fieldValue(a.heads[0], ":status") != "100" || fieldValue(a.heads[1], ":status") != "103" ||
		fieldValue(a.heads[1], "link") != "</c.css>" || a.status() != "200" || string(a.body) != "raw done" {
		t.Fatalf("answer %v: want 100, 103, 200, then the body", a)
	}
}

// TestRelayProxyErrors: the relay's own answers: JSON for plain HTTP/2, a
// trailers-only gRPC status for gRPC, x-shard when a shard was chosen; a
// stream whose owner became an HTTP/1.1 shard is refused and the
// connection told to go away.
func TestRelayProxyErrors(t *testing.T) {
	topo := startH2CShards(t, 3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	_ = ln.Close()
	topo.Shards[1].Addr = deadAddr
	topo.Shards[2].Ready = false
	p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := dialRelay(t, p.url, bigWindows)
	grpcExtra := []string{"content-type", "application/grpc", "te", "trailers"}
	for _, tc := range []struct {
		name, key     string
		grpc          bool
		status, error string
		grpcStatus    string
		shard         string
	}{
		{name: "no key", status: "400", error: "no shard key"},
		{name: "no key, gRPC", grpc: true, grpcStatus: "3"},
		{name: "shard unreachable", key: "1", status: "502", error: "shard unreachable", shard: "h2-1"},
		{name: "shard unreachable, gRPC", key: "1", grpc: true, grpcStatus: "14", shard: "h2-1"},
		{name: "shard not ready", key: "2", status: "503", error: "shard not ready", shard: "h2-2"},
		{name: "shard not ready, gRPC", key: "2", grpc: true, grpcStatus: "14", shard: "h2-2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			if tc.grpc {
				extra = grpcExtra
			}
			a := c.get(t, "/x", tc.key, extra...)
			if !a.end || a.reset || a.get("x-shard") != tc.shard {
				t.Fatalf("answer %v: want a complete answer, x-shard %q", a, tc.shard)
			}
			if tc.grpc {
				if a.status() != "200" || a.get("grpc-status") != tc.grpcStatus || len(a.heads) != 1 || len(a.body) != 0 || a.trailer != nil {
					t.Fatalf("answer %v: want a trailers-only answer with grpc-status %s", a, tc.grpcStatus)
				}
				return
			}
			if a.status() != tc.status || a.get("content-type") != "application/json" ||
				!strings.Contains(string(a.body), `"error":`+jsonString(tc.error)) || a.get("content-length") != strconv.Itoa(len(a.body)) {
				t.Fatalf("answer %v %q: want %s with the JSON error %q", a, a.body, tc.status, tc.error)
			}
		})
	}
	t.Run("owner became HTTP/1.1", func(t *testing.T) {
		// The relay now speaks HTTP/1.1 to such an owner on the same
		// connection; this one only speaks h2c, so its answer is not
		// HTTP/1.1: 502, naming it, and the connection goes on.
		h1 := topo
		h1.Shards = append([]watch.Shard(nil), topo.Shards...)
		h1.Shards[0].Protocol = watch.HTTP1
		p.apply(t, h1)
		id := c.newStream()
		c.mustHeaders(t, id, reqHead("GET", "/", "0"), true)
		if a := c.answer(t, id); a.status() != "502" || a.get("x-shard") != "h2-0" {
			t.Fatalf("answer %v: want 502 from h2-0", a)
		}
		p.apply(t, topo)
		if a := c.get(t, "/ok", "0"); a.status() != "200" {
			t.Fatalf("next request on the connection: %v", a)
		}
	})
}

// TestRelayHeaderBlocks: header blocks larger than a frame cross both ways
// in CONTINUATION frames; a request head over the 64 KiB header list
// limit gets 431, and the connection's HPACK state stays in step.
func TestRelayHeaderBlocks(t *testing.T) {
	big := strings.Repeat("v", 40000)
	topo := startH2CHandlers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big-Answer", big)
		fmt.Fprintf(w, "%d %s", len(r.Header.Get("X-Big")), r.Header.Get("X-After"))
	}))
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	c := dialRelay(t, p.url, bigWindows)

	a := c.get(t, "/", "k", "x-big", big)
	if a.status() != "200" || string(a.body) != "40000 " || a.get("x-big-answer") != big {
		t.Fatalf("a 40 KB field each way: %s, body %q, answer field of %d bytes", a.status(), a.body, len(a.get("x-big-answer")))
	}
	// Over the limit in 16 fields (112 KB; some 84 KB encoded, in six
	// frames): refused with 431, the block decoded to its end all the
	// same.
	var huge []string
	for i := range 16 {
		huge = append(huge, fmt.Sprintf("x-huge-%d", i), strings.Repeat("h", 7000))
	}
	huge = append(huge, "x-after", "in the table") // entered in both ends' dynamic tables
	a = c.get(t, "/", "k", huge...)
	if a.status() != "431" || !strings.Contains(string(a.body), "request headers too large") {
		t.Fatalf("a 112 KB head: %s %q, want 431", a.status(), a.body)
	}
	// The same fields again, now sent as indexes into the dynamic table
	// both ends must still agree on.
	for range 3 {
		a = c.get(t, "/again", "k", "x-after", "in the table")
		if a.status() != "200" || string(a.body) != "0 in the table" {
			t.Fatalf("after the refused head: %v", a)
		}
	}
}

// TestRelayWindowOverflow: a WINDOW_UPDATE or SETTINGS that takes a
// window past 2^31-1 is a flow-control error (RFC 9113 §6.9.1, §6.9.2).
func TestRelayWindowOverflow(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	topo := startH2CHandlers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	p := startProxy(t, Config{}, ring.Config{}, &topo)

	t.Run("stream WINDOW_UPDATE", func(t *testing.T) {
		c := dialRelay(t, p.url, bigWindows)
		id := c.newStream()
		c.mustHeaders(t, id, reqHead("GET", "/", "k"), true)
		if ev := c.next(t, id); ev.typ != http2.FrameHeaders {
			t.Fatalf("%v, want the answer's head", ev)
		}
		if err := c.windowUpdate(id, 1<<31-1); err != nil { // 2^30 + 2^31-1
			t.Fatal(err)
		}
		ev := c.next(t, id)
		if ev.typ != http2.FrameRSTStream || ev.code != http2.ErrCodeFlowControl {
			t.Fatalf("%v, want RST_STREAM FLOW_CONTROL_ERROR", ev)
		}
	})
	t.Run("connection WINDOW_UPDATE", func(t *testing.T) {
		c := dialRelay(t, p.url, bigWindows)
		if err := c.windowUpdate(0, 1<<31-1); err != nil {
			t.Fatal(err)
		}
		ev := c.expectConn(t, "GOAWAY", func(ev h2ev) bool { return ev.typ == http2.FrameGoAway })
		if ev.code != http2.ErrCodeFlowControl {
			t.Fatalf("%v, want GOAWAY FLOW_CONTROL_ERROR", ev)
		}
	})
	t.Run("SETTINGS_INITIAL_WINDOW_SIZE", func(t *testing.T) {
		c := dialRelay(t, p.url, dialOpts{window: 1000, connWindow: 1 << 30})
		id := c.newStream()
		c.mustHeaders(t, id, reqHead("GET", "/", "k"), true)
		if ev := c.next(t, id); ev.typ != http2.FrameHeaders {
			t.Fatalf("%v, want the answer's head", ev)
		}
		if err := c.windowUpdate(id, 1<<31-1-1000); err != nil { // the stream's window at the maximum
			t.Fatal(err)
		}
		if err := c.write(func(fr *http2.Framer) error {
			return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 2000})
		}); err != nil {
			t.Fatal(err)
		}
		ev := c.expectConn(t, "GOAWAY", func(ev h2ev) bool { return ev.typ == http2.FrameGoAway })
		if ev.code != http2.ErrCodeFlowControl {
			t.Fatalf("%v, want GOAWAY FLOW_CONTROL_ERROR", ev)
		}
	})
}

// TestRelayHalfClosed: DATA on a stream the client already ended is a
// stream error STREAM_CLOSED (RFC 9113 §5.1, half-closed (remote)).
func TestRelayHalfClosed(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	topo := startH2CHandlers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	c := dialRelay(t, p.url, bigWindows)
	id := c.newStream()
	c.mustHeaders(t, id, reqHead("POST", "/", "k"), true)
	c.mustData(t, id, []byte("late"), false)
	ev := c.next(t, id)
	if ev.typ == http2.FrameGoAway || ev.typ == http2.FrameRSTStream && ev.code == http2.ErrCodeStreamClosed {
		return
	}
	t.Fatalf("%v, want RST_STREAM STREAM_CLOSED (or a connection error)", ev)
}

// TestRelayProbesSilentShard: a shard connection that went silent (the
// shard reads but never answers, not even a PING, as a vanished host
// whose end was never closed) is closed once a stream on it timed out
// and a PING went unanswered; the next request dials a new connection
// instead of waiting on the dead one.
func TestRelayProbesSilentShard(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var accepted atomic.Int32
	closedByProxy := make(chan struct{}, 8)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer nc.Close()
				_, _ = io.Copy(io.Discard, nc) // reads, never writes
				closedByProxy <- struct{}{}
			}()
		}
	}()
	topo := watch.Topology{Replicas: 1, Shards: []watch.Shard{{Name: "silent-0", Addr: ln.Addr().String(), Ready: true, Protocol: watch.H2C}}}
	p := startProxy(t, Config{UpstreamTimeout: 200 * time.Millisecond}, ring.Config{}, &topo)
	c := dialRelay(t, p.url, bigWindows)
	if a := c.get(t, "/", "k"); a.status() != "504" {
		t.Fatalf("first request: %v, want 504", a)
	}
	select {
	case <-closedByProxy:
	case <-time.After(10 * time.Second):
		t.Fatal("the silent connection was not closed within 10s of the timeout")
	}
	if a := c.get(t, "/", "k"); a.status() != "504" || accepted.Load() != 2 {
		t.Fatalf("second request: %v over %d connection(s), want 504 over a second connection", a, accepted.Load())
	}
}

// TestRelayRapidReset: a client that opens streams and cancels them at
// once, before any answer (CVE-2023-44487), is told to go away (GOAWAY
// ENHANCE_YOUR_CALM) after a budget; one that cancels some of its
// streams now and then keeps its connection.
func TestRelayRapidReset(t *testing.T) {
	topo := startH2CHandlers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done() // answers only what is not cancelled
			return
		}
		fmt.Fprint(w, "ok")
	}))
	p := startProxy(t, Config{}, ring.Config{}, &topo)

	polite := dialRelay(t, p.url, bigWindows)
	for i := range 3 * relay.ResetBudget {
		if i%10 == 0 { // one in ten cancelled before its answer
			id := polite.newStream()
			polite.mustHeaders(t, id, reqHead("GET", "/slow", "k"), true)
			if err := polite.rst(id, http2.ErrCodeCancel); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if a := polite.get(t, "/", "k"); a.status() != "200" {
			t.Fatalf("request %d of the polite client: %v", i, a)
		}
	}

	rapid := dialRelay(t, p.url, bigWindows)
	for range 2 * relay.ResetBudget {
		id := rapid.newStream()
		if rapid.headers(id, reqHead("GET", "/slow", "k"), true) != nil || rapid.rst(id, http2.ErrCodeCancel) != nil {
			break // the proxy closed the connection
		}
	}
	ev := rapid.expectConn(t, "GOAWAY", func(ev h2ev) bool { return ev.typ == http2.FrameGoAway })
	if ev.code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("%v, want GOAWAY ENHANCE_YOUR_CALM", ev)
	}
	if a := polite.get(t, "/", "k"); a.status() != "200" {
		t.Fatalf("the polite client afterwards: %v", a)
	}
}

// TestRelayUnreadBacklog: a client that never reads, yet keeps sending
// frames that need an answer (PINGs), is disconnected once a few MiB of
// answers wait for it, instead of the proxy queuing them without bound.
func TestRelayUnreadBacklog(t *testing.T) {
	topo := startH2CShards(t, 1)
	p := startProxy(t, Config{}, ring.Config{}, &topo)
	c := dialRelay(t, p.url, dialOpts{window: 65535, connWindow: 65535, noReader: true})
	ping := make([]byte, 0, 17*1024)
	for range 1024 {
		ping = append(ping, 0, 0, 8, byte(http2.FramePing), 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8)
	}
	deadline := time.Now().Add(30 * time.Second)
	sent := 0
	for sent < 256<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("still connected after %d MiB of PINGs in 30s", sent>>20)
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		n, err := c.nc.Write(ping)
		sent += n
		if err != nil {
			t.Logf("disconnected after %d MiB of PINGs: %v", sent>>20, err)
			return
		}
	}
	t.Fatalf("still connected after %d MiB of PINGs whose answers it never read", sent>>20)
}

// TestRelayReviewFindings: cases a review of the relay found. A SETTINGS
// value out of range is a connection error (a MAX_FRAME_SIZE of 0 once
// made header encoding loop forever); a connection idle after its last
// stream closes after IdleTimeout; an upload the shard reset before
// taking gives its window back to the client's connection.
func TestRelayReviewFindings(t *testing.T) {
	t.Run("SETTINGS out of range", func(t *testing.T) {
		topo := startH2CShards(t, 1)
		p := startProxy(t, Config{}, ring.Config{}, &topo)
		for _, s := range []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 0}, {ID: http2.SettingMaxFrameSize, Val: 1 << 24},
			{ID: http2.SettingEnablePush, Val: 2}} {
			c := dialRelay(t, p.url, bigWindows)
			if err := c.write(func(fr *http2.Framer) error { return fr.WriteSettings(s) }); err != nil {
				t.Fatal(err)
			}
			id := c.newStream()
			_ = c.headers(id, reqHead("GET", "/", "k"), true)
			ev := c.expectConn(t, "GOAWAY", func(ev h2ev) bool { return ev.typ == http2.FrameGoAway })
			if ev.code != http2.ErrCodeProtocol {
				t.Errorf("%v: %v, want GOAWAY PROTOCOL_ERROR", s, ev)
			}
		}
		if a := dialRelay(t, p.url, bigWindows).get(t, "/", "k"); a.status() != "200" {
			t.Fatalf("afterwards: %v", a)
		}
	})
	t.Run("idle after a stream", func(t *testing.T) {
		topo := startH2CShards(t, 1)
		p := startProxy(t, Config{IdleTimeout: 300 * time.Millisecond}, ring.Config{}, &topo)
		c := dialRelay(t, p.url, bigWindows)
		if a := c.get(t, "/", "k"); a.status() != "200" {
			t.Fatalf("%v", a)
		}
		start := time.Now()
		c.expectConn(t, "GOAWAY", func(ev h2ev) bool { return ev.typ == http2.FrameGoAway })
		if waited := time.Since(start); waited > 5*time.Second {
			t.Errorf("closed %v after its last stream, want about 300ms", waited)
		}
	})
	t.Run("upload reset by the shard", func(t *testing.T) {
		// The shard gives each stream a window of 1 byte and resets it:
		// the upload waits in the proxy, then is dropped.
		raw := startH2RawShard(t, "raw-0", []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1}}, func(p *h2peer, ev h2ev) {
			if ev.typ == http2.FrameData {
				_ = p.rst(ev.stream, http2.ErrCodeCancel)
			}
		})
		topo := watch.Topology{Replicas: 1, Shards: []watch.Shard{raw.shard(0)}}
		p := startProxy(t, Config{}, ring.Config{}, &topo)
		c := dialRelay(t, p.url, bigWindows)
		for i := range 24 { // 24 x 60 KB: past the 1 MiB connection window
			id := c.newStream()
			c.mustHeaders(t, id, reqHead("POST", "/", "k"), false)
			c.mustData(t, id, relayBytes(60000), true)
			if a := c.answer(t, id); a.status() != "502" {
				t.Fatalf("upload %d: %v, want 502 (the shard reset it)", i, a)
			}
		}
	})
}
