package http2

import (
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/h2hpack"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 relay's sending side. Frames are parsed by x/net/http2's
// Framer and HPACK decoder; what the relay sends it appends, already
// framed, to the connection's output buffer under the connection's lock,
// and one writer goroutine per connection moves that buffer to the socket.
// Whoever has something to send (the connection's own reader, the reader
// of the connection on the other side of a stream, a timer) appends and
// moves on: a peer that does not read never blocks another connection, and
// frames written while the writer is busy go out together in one write.

// Flow-control windows the relay advertises, and the limits it holds to.
const (
	// streamWindow is the window of every stream we receive on: RFC
	// 9113's initial 65,535, so no SETTINGS is needed for it. A stream
	// holds at most this much waiting for its destination.
	streamWindow = 65535
	// connWindow is the client connection's window: what one client
	// connection may have waiting in the relay, over all its streams.
	connWindow = 1 << 20
	// MaxClientStreams is how many streams a client may have open at once
	// (HAProxy's default is 100, nginx's 128).
	MaxClientStreams = 100
	// MaxHeaderList bounds a decoded header list (RFC 9113 §6.5.2
	// SETTINGS_MAX_HEADER_LIST_SIZE), either way.
	MaxHeaderList = 64 << 10
	// outCap is how much output a connection queues before the relay
	// stops moving DATA to it (control frames and headers still go).
	outCap = 64 << 10
	// readBufSize is each connection's read buffer: small frames are read
	// many at a time, larger DATA frames straight into the Framer's
	// buffer; an idle connection keeps no more than this.
	readBufSize = 4 << 10
	// creditMin batches window updates: a window is given back once this
	// much of it is free.
	creditMin = 16 << 10
	// shardStreamWindow is the window each stream starts with towards a
	// shard (our SETTINGS_INITIAL_WINDOW_SIZE on shard connections): what
	// a shard may send, and the relay then holds, for a client that does
	// not read. A stream whose client reads grows it, up to
	// maxStreamWindow, within its client connection's answerBudget.
	shardStreamWindow = 16 << 10
	maxStreamWindow   = 256 << 10
	// answerBudget bounds the window a client connection's streams have
	// grown beyond shardStreamWindow, together: with MaxClientStreams, it
	// bounds what the relay holds of answers for one client connection
	// (100 × 16 KiB + 1 MiB), however many of its streams stall.
	answerBudget = 1 << 20
)

// wire is one HTTP/2 connection's sending side and its flow-control
// state. mu guards every field, and the fields of each half that names
// it as dst (its destination side) or src (its source side).
type wire struct {
	mu  sync.Mutex
	nc  net.Conn
	out []byte
	hb  []byte // a header block being encoded
	// tableUpdate: the peer set SETTINGS_HEADER_TABLE_SIZE; the next
	// header block confirms our (empty) dynamic table's size, 0.
	tableUpdate bool

	maxFrame int   // peer's SETTINGS_MAX_FRAME_SIZE
	initWin  int32 // peer's SETTINGS_INITIAL_WINDOW_SIZE
	sendWin  int64 // connection window for what we send
	waiting  []*half

	recvWin int64 // connection window the peer still has
	unacked int64 // received and passed on, not yet given back

	closing bool // write what is queued, then close
	dead    bool // closed: nothing more is queued
	kick    chan struct{}
	timeout time.Duration // per socket write
}

func newWire(nc net.Conn, writeTimeout time.Duration) *wire {
	w := &wire{nc: nc, maxFrame: 16384, initWin: 65535, sendWin: 65535, recvWin: 65535,
		kick: make(chan struct{}, 1), timeout: writeTimeout}
	return w
}

// signal wakes the writer when there is something to write; mu held.
func (w *wire) signal() {
	if len(w.out) == 0 && !w.closing {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// room tells whether DATA may be queued; mu held.
func (w *wire) room() bool { return !w.dead && len(w.out) < outCap }

func (w *wire) frameHeader(length int, t http2.FrameType, f http2.Flags, id uint32) {
	w.out = append(w.out, byte(length>>16), byte(length>>8), byte(length), byte(t), byte(f))
	w.out = binary.BigEndian.AppendUint32(w.out, id&(1<<31-1))
}

// headers queues a header block, split into HEADERS and CONTINUATION
// frames; mu held.
func (w *wire) headers(id uint32, fields []hpack.HeaderField, end bool) {
	if w.dead {
		return
	}
	block := w.hb[:0]
	if w.tableUpdate {
		block = append(block, 0x20) // dynamic table size update: 0
		w.tableUpdate = false
	}
	for _, f := range fields {
		block = h2hpack.AppendField(block, f)
	}
	w.hb = block
	t := http2.FrameHeaders
	for first := true; first || len(block) > 0; first = false {
		n := min(len(block), w.maxFrame)
		var flags http2.Flags
		if first && end {
			flags |= http2.FlagHeadersEndStream
		}
		if n == len(block) {
			flags |= http2.FlagHeadersEndHeaders
		}
		w.frameHeader(n, t, flags, id)
		w.out = append(w.out, block[:n]...)
		block = block[n:]
		t = http2.FrameContinuation
	}
}

// data queues one DATA frame; mu held. p fits the peer's frame size.
func (w *wire) data(id uint32, p []byte, end bool) {
	var flags http2.Flags
	if end {
		flags = http2.FlagDataEndStream
	}
	w.frameHeader(len(p), http2.FrameData, flags, id)
	w.out = append(w.out, p...)
}

func (w *wire) rst(id uint32, code http2.ErrCode) {
	if w.dead {
		return
	}
	w.frameHeader(4, http2.FrameRSTStream, 0, id)
	w.out = binary.BigEndian.AppendUint32(w.out, uint32(code))
}

func (w *wire) windowUpdate(id uint32, n int64) {
	w.frameHeader(4, http2.FrameWindowUpdate, 0, id)
	w.out = binary.BigEndian.AppendUint32(w.out, uint32(n))
}

func (w *wire) goAway(last uint32, code http2.ErrCode) {
	w.frameHeader(8, http2.FrameGoAway, 0, 0)
	w.out = binary.BigEndian.AppendUint32(w.out, last)
	w.out = binary.BigEndian.AppendUint32(w.out, uint32(code))
}

// ping queues a PING (flags: 0, or the ACK flag); mu held.
func (w *wire) ping(flags http2.Flags, data [8]byte) {
	w.frameHeader(8, http2.FramePing, flags, 0)
	w.out = append(w.out, data[:]...)
}

// pingAck answers a PING with its own payload.
func (w *wire) pingAck(data [8]byte) {
	w.mu.Lock()
	w.ping(http2.FlagPingAck, data)
	w.signal()
	w.mu.Unlock()
}

func (w *wire) settings(s ...http2.Setting) {
	w.frameHeader(6*len(s), http2.FrameSettings, 0, 0)
	for _, x := range s {
		w.out = binary.BigEndian.AppendUint16(w.out, uint16(x.ID))
		w.out = binary.BigEndian.AppendUint32(w.out, x.Val)
	}
}

// applySettings checks the peer's SETTINGS (RFC 9113 §6.5.2: a value out
// of range is a connection error), takes them and acknowledges them; mu
// held. It returns the peer's MAX_CONCURRENT_STREAMS, or 0 when the frame
// does not set it.
func (w *wire) applySettings(f *http2.SettingsFrame) (maxStreams uint32, err error) {
	if err := f.ForeachSetting(http2.Setting.Valid); err != nil {
		return 0, err
	}
	_ = f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingMaxFrameSize:
			w.maxFrame = int(s.Val)
		case http2.SettingHeaderTableSize:
			w.tableUpdate = true
		case http2.SettingInitialWindowSize:
			w.initWin = int32(s.Val)
		case http2.SettingMaxConcurrentStreams:
			maxStreams = max(s.Val, 1)
		}
		return nil
	})
	w.frameHeader(0, http2.FrameSettings, http2.FlagSettingsAck, 0)
	return maxStreams, nil
}

// resume moves what waits for connection window or room; mu held. It
// returns the halves that sent something, with how much, to credit. A
// half that still cannot send all it holds puts itself back in waiting
// (flush), which is the list kept.
func (w *wire) resume(credits []credit) []credit {
	kept := w.waiting[:0]
	for _, h := range w.waiting {
		h.queued = false
		if n := h.flush(); n > 0 {
			credits = append(credits, credit{h, n})
		}
		if h.queued {
			kept = append(kept, h)
		}
	}
	clear(w.waiting[len(kept):])
	w.waiting = kept
	return credits
}

// writeLoop moves queued frames to the socket until the connection dies;
// it closes the socket on its way out.
func (w *wire) writeLoop() {
	var buf []byte
	var credits []credit
	var deadline time.Time
	for range w.kick {
		// Let the goroutines that are ready to run (readers with frames
		// in hand) queue theirs first: fewer, fuller writes, for us and
		// for the peer.
		runtime.Gosched()
		w.mu.Lock()
		buf, w.out = w.out, buf[:0]
		closing := w.closing
		w.mu.Unlock()
		if len(buf) > 0 {
			// The deadline moves only once half of it has passed: setting
			// it costs about as much as a small write.
			if now := time.Now(); deadline.Sub(now) < w.timeout/2 {
				deadline = now.Add(w.timeout)
				_ = w.nc.SetWriteDeadline(deadline)
			}
			if _, err := w.nc.Write(buf); err != nil {
				break
			}
		}
		if cap(buf) > 4*outCap {
			buf = nil
		}
		if closing {
			break
		}
		w.mu.Lock()
		credits = w.resume(credits[:0])
		w.signal()
		w.mu.Unlock()
		giveCredits(credits)
	}
	w.mu.Lock()
	w.dead = true
	w.out = nil
	w.mu.Unlock()
	_ = w.nc.Close()
}

// close queues nothing more: the writer sends what is queued (a GOAWAY),
// then closes the socket.
func (w *wire) close() {
	w.mu.Lock()
	w.closing = true
	w.signal()
	w.mu.Unlock()
}

// consumed counts n bytes received on the connection against its window;
// mu held. False: the peer sent more than it was allowed.
func (w *wire) consumed(n int) bool {
	w.recvWin -= int64(n)
	return w.recvWin >= 0
}

// giveBack returns n bytes of connection window to the peer, batched; mu
// held.
func (w *wire) giveBack(n int) {
	w.unacked += int64(n)
	if w.unacked >= creditMin {
		w.windowUpdate(0, w.unacked)
		w.recvWin += w.unacked
		w.unacked = 0
		w.signal()
	}
}

// half is one direction of a relayed stream: what its source sent and
// its destination has not yet taken. Fields marked dst are guarded by
// dst.mu, those marked src by src.mu.
type half struct {
	dst     *wire
	id      uint32              // dst: stream id on dst; 0 until the stream is open there
	win     int64               // dst: dst's window for the stream
	pend    []byte              // dst: data waiting for window or room
	end     bool                // dst: END_STREAM once pend (and trailer) is out
	trailer []hpack.HeaderField // dst: sent with END_STREAM after pend
	closed  bool                // dst: END_STREAM or RST_STREAM sent; nothing more goes
	queued  bool                // dst: in dst.waiting
	// onClose runs (dst.mu held) when END_STREAM was queued; onDrain when
	// pend is empty after a flush (an HTTP/1.1 exchange reads on).
	onClose func()
	onDrain func()

	src     *wire
	srcID   uint32
	recvWin int64 // src: what the source may still send on the stream
	unacked int64 // src: passed on, not yet given back
	srcDone bool  // src: the source ended the stream; no stream credits
	// connCredit: the source connection's window is given back when data
	// leaves the relay (a client: bounds what it may have waiting in us),
	// not when it arrives (a shard: see shardConn).
	connCredit bool
	// grant (src) is the stream window the source has been given; budget,
	// for an answer half, is its client connection's growth in use (see
	// answerBudget); nil for a request half, whose window does not grow.
	grant  int64
	budget *atomic.Int64
	// prepaid (src) counts bytes already given back to the source
	// connection while they were buffered for a body rule (see
	// stream.buffer): they are not given back again when they leave.
	prepaid int64
}

// credit is window to give back to a half's source.
type credit struct {
	h *half
	n int
}

func giveCredits(cs []credit) {
	for _, c := range cs {
		c.h.credit(c.n)
	}
}

// open binds the half to its stream on dst and starts sending; dst.mu
// held. It returns what was sent, to credit.
func (h *half) open(id uint32) int {
	h.id = id
	h.win = int64(h.dst.initWin)
	return h.flush()
}

// flush sends what pend holds, as far as the windows and room allow, then
// the end of the stream; dst.mu held. It returns the bytes sent.
func (h *half) flush() (sent int) {
	w := h.dst
	if h.closed || h.id == 0 || w.dead {
		return 0
	}
	for len(h.pend) > 0 {
		n := int(min(int64(len(h.pend)), int64(w.maxFrame), h.win, w.sendWin))
		if n <= 0 || !w.room() {
			break
		}
		end := n == len(h.pend) && h.end && h.trailer == nil
		w.data(h.id, h.pend[:n], end)
		h.pend = h.pend[n:]
		h.win -= int64(n)
		w.sendWin -= int64(n)
		sent += n
		h.closed = end
	}
	if len(h.pend) == 0 {
		h.pend = nil
		if h.end && !h.closed {
			if h.trailer != nil {
				w.headers(h.id, h.trailer, true)
			} else {
				w.data(h.id, nil, true)
			}
			h.closed = true
		}
	} else if !h.queued && h.win > 0 {
		// Waiting for the connection's window or for room; a stream
		// window update flushes the half directly.
		w.waiting = append(w.waiting, h)
		h.queued = true
	}
	if sent > 0 || h.closed {
		w.signal()
	}
	if len(h.pend) == 0 && h.onDrain != nil {
		h.onDrain()
	}
	if h.closed && h.onClose != nil {
		h.onClose()
	}
	return sent
}

// push passes data (and the end of the stream) from the source on; the
// caller holds no lock. What does not fit the windows waits in pend.
func (h *half) push(p []byte, end bool) {
	w := h.dst
	w.mu.Lock()
	if h.closed || h.end || h.id == 0 {
		w.mu.Unlock()
		h.credit(len(p)) // dropped: the source's window is not lost
		return
	}
	h.end = end
	var sent int
	if len(h.pend) == 0 {
		h.pend = p // borrowed: sent from directly, copied if it must wait
		sent = h.flush()
		if len(h.pend) > 0 {
			h.pend = append([]byte(nil), h.pend...)
		}
	} else {
		h.pend = append(h.pend, p...)
		sent = h.flush()
	}
	w.mu.Unlock()
	h.credit(sent)
}

// finish ends the half with trailers (nil: an empty DATA with END_STREAM)
// once pend is out; the caller holds no lock.
func (h *half) finish(trailer []hpack.HeaderField) {
	w := h.dst
	w.mu.Lock()
	if !h.closed {
		h.end, h.trailer = true, trailer
		h.flush()
	}
	w.mu.Unlock()
}

// windowUpdate adds n to the stream's window on dst and sends what waited
// for it; dst.mu held.
func (h *half) windowUpdate(n int64) int {
	h.win += n
	return h.flush()
}

// abandon ends the half without sending anything more (the stream was
// reset); dst.mu held.
func (h *half) abandon() {
	h.pend = nil
	h.closed = true
}

// credit gives n bytes back to the source: the stream's window when
// enough is free and the stream still sends, and the connection's when
// the source is a client. The caller holds no lock.
func (h *half) credit(n int) {
	if n <= 0 || h.src == nil { // no source window: an HTTP/1.1 shard's answer
		return
	}
	s := h.src
	s.mu.Lock()
	paid := min(int64(n), h.prepaid)
	h.prepaid -= paid
	if h.connCredit {
		s.giveBack(n - int(paid))
	}
	h.creditStream(n)
	s.mu.Unlock()
}

// creditStream gives n bytes of the stream's window back to its source,
// batched, while the source still sends on it; src.mu held.
func (h *half) creditStream(n int) {
	if h.srcDone || n <= 0 {
		return
	}
	h.unacked += int64(n)
	if h.unacked >= min(creditMin, h.grant/2) {
		inc := h.unacked + h.grow()
		h.src.windowUpdate(h.srcID, inc)
		h.recvWin += inc
		h.unacked = 0
		h.src.signal()
	}
}

// grow doubles an answer half's window, up to maxStreamWindow, when its
// client connection's budget allows: the client took what was sent, so
// the stream may have more in flight. It returns the increase; src.mu
// held.
func (h *half) grow() int64 {
	extra := min(h.grant, maxStreamWindow-h.grant)
	if h.budget == nil || extra <= 0 {
		return 0
	}
	if h.budget.Add(extra) > answerBudget {
		h.budget.Add(-extra)
		return 0
	}
	h.grant += extra
	return extra
}

// releaseGrowth gives back to the client connection's budget what the
// half's window grew; src.mu held. The half grows no more.
func (h *half) releaseGrowth() {
	if h.budget != nil {
		h.budget.Add(-(h.grant - shardStreamWindow))
		h.budget = nil
	}
}

// received counts n bytes of DATA from the source against the stream's
// window; src.mu held. False: the source overran it.
func (h *half) received(n int) bool {
	h.recvWin -= int64(n)
	return h.recvWin >= 0
}
