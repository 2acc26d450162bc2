package http2

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/answer"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h2hpack"
	"github.com/shard-proxy/shard-proxy/internal/proxy/h2wire"
	"github.com/shard-proxy/shard-proxy/internal/proxy/route"
	"github.com/shard-proxy/shard-proxy/internal/proxy/sock"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// shardConn is one multiplexed h2c connection from the relay to a shard. Its
// reader passes the shard's answers to the client streams; a shard's
// connection window is given back as data arrives, so a client that does
// not read holds back only its own streams (each holds at most a stream
// window), never the connection other clients share.
type shardConn struct {
	pool *shardPool
	w    *h2wire.Conn
	fr   *http2.Framer

	active     atomic.Int32 // streams open or reserved
	maxStreams atomic.Uint32
	unusable   atomic.Bool // GOAWAY received, or closed

	fields []hpack.HeaderField // the reader's scratch for answer heads
	blk    *h2hpack.Block      // the reader's header block decoder

	// guarded by w.mu
	streams   map[uint32]*stream
	nextID    uint32
	idleSince time.Time
	probing   bool // a PING is out, and not yet answered
}

// probeMax bounds how long a probed shard connection has to answer its
// PING (see probe).
const probeMax = 5 * time.Second

// probe checks, after a stream on u timed out, that the shard still
// answers on the connection: a PING not acknowledged within the upstream
// timeout (at most probeMax) closes it, its streams fail, and new ones
// dial afresh. A shard that vanished without closing its end (a node
// lost) would otherwise draw every new stream into the same silence.
func (u *shardConn) probe() {
	u.w.Lock()
	if u.probing || u.w.Dead || u.w.Closing {
		u.w.Unlock()
		return
	}
	u.probing = true
	u.w.Ping(0, [8]byte{'s', 'h', 'a', 'r', 'd', 'p', 'r', 'x'})
	u.w.Signal()
	u.w.Unlock()
	time.AfterFunc(min(u.pool.relay.cfg.UpstreamTimeout, probeMax), func() {
		u.w.Lock()
		silent := u.probing
		u.w.Unlock()
		if silent {
			u.kill() // the reader fails, and lost() ends the streams
		}
	})
}

// shardPool holds the relay's connections to one backend.
type shardPool struct {
	b     *route.Backend
	relay *Relay

	mu      sync.Mutex
	conns   []*shardConn
	dialing *dialing
	stopped bool
}

// dialing is a dial in progress, which other streams wait for.
type dialing struct {
	done chan struct{}
	err  error
}

var _ route.Pool = (*shardPool)(nil)

// poolOf returns the relay's pool for b, made on first use.
func poolOf(r *Relay, b *route.Backend) *shardPool {
	return b.Pool(route.PoolHTTP2, func(b *route.Backend) route.Pool { return &shardPool{b: b, relay: r} }).(*shardPool)
}

// usable returns a connection with a free stream, reserved, or nil.
func (pl *shardPool) usable() *shardConn {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for _, u := range pl.conns {
		if u.unusable.Load() {
			continue
		}
		if n := u.active.Add(1); uint32(n) <= u.maxStreams.Load() {
			return u
		}
		u.active.Add(-1)
	}
	return nil
}

// get returns a connection with a free stream, reserved, dialing one when
// none has room.
func (pl *shardPool) get() (*shardConn, error) {
	for {
		if u := pl.usable(); u != nil {
			return u, nil
		}
		pl.mu.Lock()
		if pl.stopped {
			pl.mu.Unlock()
			return nil, answer.ErrShardDown
		}
		if d := pl.dialing; d != nil {
			pl.mu.Unlock()
			<-d.done
			if d.err != nil {
				return nil, d.err
			}
			continue
		}
		if len(pl.conns) >= pl.b.MaxConns {
			pl.mu.Unlock()
			return nil, answer.ErrShardBusy
		}
		d := &dialing{done: make(chan struct{})}
		pl.dialing = d
		pl.mu.Unlock()
		u, err := pl.dial()
		pl.mu.Lock()
		pl.dialing, d.err = nil, err
		if err == nil {
			pl.conns = append(pl.conns, u)
		}
		pl.mu.Unlock()
		close(d.done)
		if err != nil {
			return nil, err
		}
	}
}

// dial opens a connection: preface, our settings, a larger connection
// window; it does not wait for the shard's settings (RFC 9113 §3.4).
func (pl *shardPool) dial() (*shardConn, error) {
	nc, err := pl.b.Dial()
	if err != nil {
		return nil, err
	}
	u := &shardConn{pool: pl, streams: map[uint32]*stream{}, nextID: 1, idleSince: time.Now()}
	u.maxStreams.Store(100) // until the shard says (RFC 9113 §6.5.2 advises at least 100)
	u.w = h2wire.New(nc, pl.relay.cfg.UpstreamTimeout)
	u.fr = http2.NewFramer(nil, sock.NewReader(nc, nil, readBufs))
	u.fr.SetMaxReadFrameSize(16384)
	u.blk = h2hpack.NewBlock(MaxHeaderList)
	u.fr.SetReuseFrames()
	u.w.Lock()
	u.w.Out = append(u.w.Out, preface...)
	u.w.Settings(http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: MaxHeaderList},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2wire.ShardStreamWindow})
	u.w.WindowUpdate(0, connWindow-65535)
	u.w.RecvWin = connWindow
	u.w.Signal()
	u.w.Unlock()
	go u.serve()
	return u, nil
}

// kill closes the connection at once; it takes no new stream from now on
// (lost, run by its reader, ends those it has).
func (u *shardConn) kill() {
	u.unusable.Store(true)
	_ = u.w.NC.Close()
}

// release gives back a reserved stream that was not opened.
func (u *shardConn) release() { u.active.Add(-1) }

// forget drops a stream; w.mu held.
func (u *shardConn) forget(id uint32) {
	if _, ok := u.streams[id]; !ok {
		return
	}
	delete(u.streams, id)
	u.active.Add(-1)
	if len(u.streams) == 0 {
		u.idleSince = time.Now()
		if u.unusable.Load() {
			u.w.Closing = true
			u.w.Signal()
		}
	}
}

// serve reads the shard's frames until the connection ends.
func (u *shardConn) serve() {
	defer u.lost()
	for {
		u.w.Lock()
		backlog := len(u.w.Out)
		u.w.Unlock()
		if backlog > outHardCap { // the shard does not read what it asks for
			u.kill()
			return
		}
		f, err := u.fr.ReadFrame()
		if err != nil {
			return // a stream error too: HPACK may be out of step (RFC 9113 §4.3)
		}
		if !u.frame(f) {
			return
		}
	}
}

// frame handles one frame from the shard; false ends the connection.
func (u *shardConn) frame(f http2.Frame) bool {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		if done, err := u.blk.Start(f); err != nil || !done {
			return err == nil
		}
		u.onHeaders(u.blk)
	case *http2.ContinuationFrame:
		if done, err := u.blk.More(f); err != nil || !done {
			return err == nil
		}
		u.onHeaders(u.blk)
	case *http2.DataFrame:
		return u.onData(f)
	case *http2.WindowUpdateFrame:
		u.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		u.onReset(f.StreamID, f.ErrCode)
	case *http2.SettingsFrame:
		if !f.IsAck() {
			u.onSettings(f)
		}
	case *http2.PingFrame:
		if f.IsAck() {
			u.w.Lock()
			u.probing = false
			u.w.Unlock()
		} else {
			u.w.PingAck(f.Data)
		}
	case *http2.GoAwayFrame:
		u.onGoAway(f.LastStreamID)
	case *http2.PushPromiseFrame:
		return false // we said ENABLE_PUSH 0
	}
	return true
}

// onHeaders passes a header block from the shard to its stream.
func (u *shardConn) onHeaders(b *h2hpack.Block) {
	u.w.Lock()
	s := u.streams[b.ID]
	if s != nil && b.StreamEnded() {
		s.resp.SrcDone = true
	}
	u.w.Unlock()
	switch {
	case s == nil:
	case b.Invalid || b.Truncated:
		s.fail(answer.ErrBadResponse, s.b.Name)
	default:
		s.onShardHeaders(b)
	}
}

func (u *shardConn) stream(id uint32) *stream {
	u.w.Lock()
	defer u.w.Unlock()
	return u.streams[id]
}

func (u *shardConn) onSettings(f *http2.SettingsFrame) {
	u.w.Lock()
	old := u.w.InitWin
	n, err := u.w.ApplySettings(f)
	if err != nil {
		u.w.Unlock()
		u.kill() // a shard that breaks SETTINGS: its streams fail
		return
	}
	if n > 0 {
		u.maxStreams.Store(n)
	}
	var credits []h2wire.Credit
	if d := int64(u.w.InitWin - old); d != 0 {
		for _, s := range u.streams {
			if n := s.req.WindowUpdate(d); n > 0 {
				credits = append(credits, h2wire.Credit{H: &s.req, N: n})
			}
		}
	}
	u.w.Signal()
	u.w.Unlock()
	h2wire.GiveCredits(credits)
}

func (u *shardConn) onWindowUpdate(f *http2.WindowUpdateFrame) {
	u.w.Lock()
	var credits []h2wire.Credit
	var broken *stream
	if f.StreamID == 0 {
		u.w.SendWin += int64(f.Increment)
		credits = u.w.Resume(nil)
	} else if s := u.streams[f.StreamID]; s != nil {
		if s.req.Win+int64(f.Increment) > maxWindow {
			broken = s
		} else if n := s.req.WindowUpdate(int64(f.Increment)); n > 0 {
			credits = append(credits, h2wire.Credit{H: &s.req, N: n})
		}
	}
	u.w.Unlock()
	h2wire.GiveCredits(credits)
	if broken != nil {
		broken.fail(answer.ErrBadResponse, broken.b.Name)
	}
}

// onData passes the shard's DATA on to the client's stream.
func (u *shardConn) onData(f *http2.DataFrame) bool {
	n := int(f.Length)
	u.w.Lock()
	if !u.w.Consumed(n) {
		u.w.Unlock()
		return false
	}
	u.w.GiveBack(n)
	s := u.streams[f.StreamID]
	if s == nil {
		u.w.Unlock()
		return true
	}
	if !s.resp.Received(n) {
		u.w.Unlock()
		u.streamBroken(f.StreamID)
		return true
	}
	end := f.StreamEnded()
	s.resp.SrcDone = end
	u.w.Unlock()
	data := f.Data()
	if s.respDeclared >= 0 { // a malformed answer is not passed on whole (§8.1.1)
		if s.respLen += int64(len(data)); s.respLen > s.respDeclared || end && s.respLen != s.respDeclared {
			s.resp.Push(data, false) // what came, then the reset
			s.fail(answer.ErrBadResponse, s.b.Name)
			return true
		}
	}
	s.bytesOut.Add(int64(len(data)))
	s.resp.Push(data, end)
	if pad := n - len(data); pad > 0 {
		s.resp.Credit(pad)
	}
	return true
}

// onReset: the shard reset a stream.
func (u *shardConn) onReset(id uint32, code http2.ErrCode) {
	u.w.Lock()
	s := u.streams[id]
	var finished bool
	var dropped int
	if s != nil {
		s.shardGone = true // nothing more is sent there
		dropped = len(s.req.Pend)
		s.req.Closed, s.req.Pend = true, nil
		u.forget(id)
		// After its whole answer, a reset only tells us to stop sending
		// (RFC 9113 §8.1): the answer still reaches the client.
		finished = s.resp.SrcDone
	}
	u.w.Unlock()
	if s == nil {
		return
	}
	if dropped > 0 { // the client's upload that will not be sent
		s.c.w.Lock()
		s.c.w.GiveBack(dropped)
		s.c.w.Unlock()
	}
	if !finished {
		s.shardReset(code)
	}
}

// streamBroken: the shard broke a stream's rules (a malformed head, a
// window overrun): the stream is reset on both sides.
func (u *shardConn) streamBroken(id uint32) {
	if s := u.stream(id); s != nil {
		s.fail(answer.ErrBadResponse, s.b.Name)
	}
}

// onGoAway: the shard takes no new streams; those above last were not
// processed and are refused to their clients, which retry them.
func (u *shardConn) onGoAway(last uint32) {
	u.unusable.Store(true)
	u.w.Lock()
	var refused []uint32
	for id := range u.streams {
		if id > last {
			refused = append(refused, id)
		}
	}
	if len(u.streams) == 0 {
		u.w.Closing = true
		u.w.Signal()
	}
	u.w.Unlock()
	for _, id := range refused {
		u.onReset(id, http2.ErrCodeRefusedStream)
	}
}

// lost ends the connection's streams when it closed, and takes it out of
// its pool.
func (u *shardConn) lost() {
	u.unusable.Store(true)
	u.w.Close()
	pl := u.pool
	pl.mu.Lock()
	for i, x := range pl.conns {
		if x == u {
			pl.conns = append(pl.conns[:i], pl.conns[i+1:]...)
			break
		}
	}
	pl.mu.Unlock()
	u.w.Lock()
	streams := make([]*stream, 0, len(u.streams))
	for _, s := range u.streams {
		s.shardGone = true
		s.req.Closed = true
		streams = append(streams, s)
	}
	u.w.Dead = true
	u.w.Unlock()
	for _, s := range streams {
		s.fail(answer.ErrShardDown, s.b.Name)
	}
}

// Stats implements route.Pool.
func (pl *shardPool) Stats() route.PoolStats {
	pl.mu.Lock()
	conns := append([]*shardConn(nil), pl.conns...)
	pl.mu.Unlock()
	st := route.PoolStats{Open: len(conns)}
	for _, u := range conns {
		u.w.Lock()
		st.Streams += len(u.streams)
		if len(u.streams) == 0 {
			st.Idle++
		}
		u.w.Unlock()
	}
	return st
}

// CloseIdle implements route.Pool: it closes connections without streams
// idle for maxIdle; with stop, every idle one, and no new one is dialed.
func (pl *shardPool) CloseIdle(maxIdle time.Duration, stop bool) {
	pl.mu.Lock()
	pl.stopped = pl.stopped || stop
	conns := append([]*shardConn(nil), pl.conns...)
	pl.mu.Unlock()
	for _, u := range conns {
		u.w.Lock()
		if len(u.streams) == 0 && u.active.Load() == 0 && time.Since(u.idleSince) >= maxIdle {
			u.unusable.Store(true)
			u.w.GoAway(0, http2.ErrCodeNo)
			u.w.Closing = true
			u.w.Signal()
		} else if stop {
			u.unusable.Store(true) // closes when its last stream ends
		}
		u.w.Unlock()
	}
}
