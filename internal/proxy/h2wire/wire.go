// Package h2wire is the sending side of the relay's HTTP/2 connections,
// client and shard alike, and the flow control of a relayed stream. Frames
// are parsed by x/net/http2's Framer and HPACK decoder; what the relay
// sends it appends, already framed, to the connection's output buffer
// under the connection's lock, and a writer goroutine moves that buffer to
// the socket. Whoever has something to send (the connection's own reader,
// the reader of the connection on the other side of a stream, a timer)
// appends and moves on: a peer that does not read never blocks another
// connection, and frames written while the writer is busy go out together
// in one write. The writer runs only while there is output: an idle
// connection has neither a writer goroutine nor an output buffer.
//
// A relayed stream has two Halves, one per direction: a half holds what
// its source sent and its destination has not yet taken, and gives the
// source its window back as the data leaves.
package h2wire

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

// The limits a Conn holds to, and the flow-control windows of an answer
// half (one whose source is a shard).
const (
	// outCap is how much output a connection queues before DATA stops
	// moving to it (control frames and headers still go).
	outCap = 64 << 10
	// creditMin batches window updates: a window is given back once this
	// much of it is free.
	creditMin = 16 << 10
	// ShardStreamWindow is the window each stream starts with towards a
	// shard (the relay's SETTINGS_INITIAL_WINDOW_SIZE on shard
	// connections): what a shard may send, and the relay then holds, for a
	// client that does not read. A stream whose client reads grows it, up
	// to MaxStreamWindow, within its client connection's AnswerBudget.
	ShardStreamWindow = 16 << 10
	// MaxStreamWindow is the most an answer half's window grows to.
	MaxStreamWindow = 256 << 10
	// AnswerBudget bounds the window a client connection's answer halves
	// have grown beyond ShardStreamWindow, together: with the relay's
	// stream limit it bounds what the relay holds of answers for one
	// client connection (100 × 16 KiB + 1 MiB), however many of its
	// streams stall.
	AnswerBudget = 1 << 20
)

// Conn is one HTTP/2 connection's sending side and its flow-control
// state. Its lock guards every field, and the fields of each half that names
// it as dst (its destination side) or src (its source side).
type Conn struct {
	sync.Mutex
	NC   net.Conn
	Out  []byte  // framed output waiting for the writer
	outH *[]byte // Out's holder in outBufs; nil while the Conn holds no buffer
	hb   []byte  // a header block being encoded
	// tableUpdate: the peer set SETTINGS_HEADER_TABLE_SIZE; the next
	// header block confirms our (empty) dynamic table's size, 0.
	tableUpdate bool

	maxFrame int   // peer's SETTINGS_MAX_FRAME_SIZE
	InitWin  int32 // peer's SETTINGS_INITIAL_WINDOW_SIZE
	SendWin  int64 // connection window for what we send
	waiting  []*Half

	RecvWin int64 // connection window the peer still has
	unacked int64 // received and passed on, not yet given back

	Closing bool // write what is queued, then close
	Dead    bool // closed: nothing more is queued
	// writing: a writer goroutine runs; it looks at Out again before it
	// ends, so whoever queues output while it runs need not wake it.
	writing  bool
	timeout  time.Duration // per socket write
	deadline time.Time     // the write deadline last set (the writer's)

	// after is the work left by Defer for whoever unlocks next: the first
	// few in place (a lock held usually ends one stream), the rest in more.
	after  [4]Deferred
	nAfter int
	more   []Deferred
}

// Deferred is work that a holder of a Conn's lock decides on but that
// need not, and should not, run under it (a stream's access log line and
// span: see Conn.Defer).
type Deferred interface {
	// RunUnlocked does the work; the Conn is not locked.
	RunUnlocked()
}

// Defer leaves d for the goroutine that unlocks the Conn next, which runs
// it after unlocking, before Unlock returns; the Conn locked. Each d runs
// once, in the order deferred.
func (w *Conn) Defer(d Deferred) {
	if w.nAfter < len(w.after) {
		w.after[w.nAfter] = d
		w.nAfter++
		return
	}
	w.more = append(w.more, d)
}

// Unlock unlocks the Conn, then runs what was deferred while it was
// locked (Defer).
func (w *Conn) Unlock() {
	if w.nAfter == 0 {
		w.Mutex.Unlock()
		return
	}
	after, n, more := w.after, w.nAfter, w.more
	w.after, w.nAfter, w.more = [4]Deferred{}, 0, nil
	w.Mutex.Unlock()
	for i := range n {
		after[i].RunUnlocked()
	}
	for _, d := range more {
		d.RunUnlocked()
	}
}

// New returns the sending side of nc, with RFC 9113's initial settings
// and windows until the peer's SETTINGS; writeTimeout bounds each socket
// write. The caller runs WriteLoop.
func New(nc net.Conn, writeTimeout time.Duration) *Conn {
	w := &Conn{NC: nc, maxFrame: 16384, InitWin: 65535, SendWin: 65535, RecvWin: 65535,
		timeout: writeTimeout}
	return w
}

// Signal starts the writer when there is something to write (or the
// connection is closing) and none runs; the Conn locked.
func (w *Conn) Signal() {
	if len(w.Out) == 0 && !w.Closing || w.writing || w.Dead {
		return
	}
	w.writing = true
	go w.write()
}

// outBufs holds output buffers between bursts (each in a holder that
// travels with it): an idle connection keeps none.
var outBufs = sync.Pool{New: func() any { return new([]byte) }}

// outKeep is the largest output buffer given back to outBufs.
const outKeep = 4 * outCap

// grab gives Out a buffer from outBufs to append to, unless it has one;
// the Conn locked.
func (w *Conn) grab() {
	if w.outH == nil {
		w.outH = outBufs.Get().(*[]byte)
		if w.Out == nil {
			w.Out = (*w.outH)[:0]
		}
	}
}

// giveOut puts b back in outBufs, in its holder h.
func giveOut(h *[]byte, b []byte) {
	if h == nil {
		return
	}
	if cap(b) > outKeep {
		b = nil
	}
	*h = b[:0]
	outBufs.Put(h)
}

// Room tells whether DATA may be queued; the Conn locked.
func (w *Conn) Room() bool { return !w.Dead && len(w.Out) < outCap }

func (w *Conn) frameHeader(length int, t http2.FrameType, f http2.Flags, id uint32) {
	w.grab()
	w.Out = append(w.Out, byte(length>>16), byte(length>>8), byte(length), byte(t), byte(f))
	w.Out = binary.BigEndian.AppendUint32(w.Out, id&(1<<31-1))
}

// Headers queues a header block, split into HEADERS and CONTINUATION
// frames; the Conn locked.
func (w *Conn) Headers(id uint32, fields []hpack.HeaderField, end bool) {
	if w.Dead {
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
		w.Out = append(w.Out, block[:n]...)
		block = block[n:]
		t = http2.FrameContinuation
	}
}

// Data queues one DATA frame; the Conn locked. p fits the peer's frame size.
func (w *Conn) Data(id uint32, p []byte, end bool) {
	var flags http2.Flags
	if end {
		flags = http2.FlagDataEndStream
	}
	w.frameHeader(len(p), http2.FrameData, flags, id)
	w.Out = append(w.Out, p...)
}

// RST queues a RST_STREAM; the Conn locked.
func (w *Conn) RST(id uint32, code http2.ErrCode) {
	if w.Dead {
		return
	}
	w.frameHeader(4, http2.FrameRSTStream, 0, id)
	w.Out = binary.BigEndian.AppendUint32(w.Out, uint32(code))
}

// WindowUpdate queues a WINDOW_UPDATE (id 0: the connection's); the Conn
// locked.
func (w *Conn) WindowUpdate(id uint32, n int64) {
	w.frameHeader(4, http2.FrameWindowUpdate, 0, id)
	w.Out = binary.BigEndian.AppendUint32(w.Out, uint32(n))
}

// GoAway queues a GOAWAY; the Conn locked.
func (w *Conn) GoAway(last uint32, code http2.ErrCode) {
	w.frameHeader(8, http2.FrameGoAway, 0, 0)
	w.Out = binary.BigEndian.AppendUint32(w.Out, last)
	w.Out = binary.BigEndian.AppendUint32(w.Out, uint32(code))
}

// Ping queues a PING (flags: 0, or the ACK flag); the Conn locked.
func (w *Conn) Ping(flags http2.Flags, data [8]byte) {
	w.frameHeader(8, http2.FramePing, flags, 0)
	w.Out = append(w.Out, data[:]...)
}

// PingAck answers a PING with its own payload.
func (w *Conn) PingAck(data [8]byte) {
	w.Lock()
	w.Ping(http2.FlagPingAck, data)
	w.Signal()
	w.Unlock()
}

// Settings queues a SETTINGS frame; the Conn locked.
func (w *Conn) Settings(s ...http2.Setting) {
	w.frameHeader(6*len(s), http2.FrameSettings, 0, 0)
	for _, x := range s {
		w.Out = binary.BigEndian.AppendUint16(w.Out, uint16(x.ID))
		w.Out = binary.BigEndian.AppendUint32(w.Out, x.Val)
	}
}

// ApplySettings checks the peer's SETTINGS (RFC 9113 §6.5.2: a value out
// of range is a connection error), takes them and acknowledges them; the Conn
// locked. It returns the peer's MAX_CONCURRENT_STREAMS, or 0 when the frame
// does not set it.
func (w *Conn) ApplySettings(f *http2.SettingsFrame) (maxStreams uint32, err error) {
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
			w.InitWin = int32(s.Val)
		case http2.SettingMaxConcurrentStreams:
			maxStreams = max(s.Val, 1)
		}
		return nil
	})
	w.frameHeader(0, http2.FrameSettings, http2.FlagSettingsAck, 0)
	return maxStreams, nil
}

// Resume moves what waits for connection window or room; the Conn locked. It
// returns the halves that sent something, with how much, to credit. A
// half that still cannot send all it holds puts itself back in waiting
// (flush), which is the list kept.
func (w *Conn) Resume(credits []Credit) []Credit {
	kept := w.waiting[:0]
	for _, h := range w.waiting {
		h.queued = false
		if n := h.Flush(); n > 0 {
			credits = append(credits, Credit{h, n})
		}
		if h.queued {
			kept = append(kept, h)
		}
	}
	clear(w.waiting[len(kept):])
	w.waiting = kept
	return credits
}

// write moves queued frames to the socket while there are any (Signal
// starts it): it ends, giving its buffers back, when a round finds
// nothing queued, and when the connection dies, which it closes.
func (w *Conn) write() {
	var buf []byte
	var bufH *[]byte
	var credits []Credit
	for {
		// Let the goroutines that are ready to run (readers with frames
		// in hand) queue theirs first: fewer, fuller writes, for us and
		// for the peer.
		runtime.Gosched()
		w.Lock()
		buf, w.Out = w.Out, buf[:0]
		bufH, w.outH = w.outH, bufH
		closing := w.Closing
		w.Unlock()
		if len(buf) > 0 && !w.send(buf) {
			break
		}
		if cap(buf) > outKeep {
			buf = nil
		}
		if closing {
			break
		}
		w.Lock()
		credits = w.Resume(credits[:0])
		if len(w.Out) == 0 && !w.Closing {
			// Nothing more: the writer ends, and the connection keeps no
			// buffer until its next output.
			w.writing = false
			giveOut(w.outH, w.Out)
			w.Out, w.outH = nil, nil
			w.Unlock()
			giveOut(bufH, buf)
			GiveCredits(credits)
			return
		}
		w.Unlock()
		GiveCredits(credits)
	}
	w.Lock()
	w.Dead = true
	w.Out, w.outH = nil, nil
	w.Unlock()
	_ = w.NC.Close()
}

// send writes buf to the socket; false when the connection is dead.
func (w *Conn) send(buf []byte) bool {
	// The deadline moves only once half of it has passed: setting it
	// costs about as much as a small write.
	if now := time.Now(); w.deadline.Sub(now) < w.timeout/2 {
		w.deadline = now.Add(w.timeout)
		_ = w.NC.SetWriteDeadline(w.deadline)
	}
	_, err := w.NC.Write(buf)
	return err == nil
}

// Close queues nothing more: the writer sends what is queued (a GOAWAY),
// then closes the socket.
func (w *Conn) Close() {
	w.Lock()
	w.Closing = true
	w.Signal()
	w.Unlock()
}

// Consumed counts n bytes received on the connection against its window;
// the Conn locked. False: the peer sent more than it was allowed.
func (w *Conn) Consumed(n int) bool {
	w.RecvWin -= int64(n)
	return w.RecvWin >= 0
}

// GiveBack returns n bytes of connection window to the peer, batched; the Conn
// locked.
func (w *Conn) GiveBack(n int) {
	w.unacked += int64(n)
	if w.unacked >= creditMin {
		w.WindowUpdate(0, w.unacked)
		w.RecvWin += w.unacked
		w.unacked = 0
		w.Signal()
	}
}

// Half is one direction of a relayed stream: what its source sent and
// its destination has not yet taken. Fields marked dst are guarded by
// Dst's lock, those marked src by Src's lock.
type Half struct {
	Dst     *Conn
	ID      uint32              // dst: stream id on dst; 0 until the stream is open there
	Win     int64               // dst: dst's window for the stream
	Pend    []byte              // dst: data waiting for window or room
	End     bool                // dst: END_STREAM once pend (and trailer) is out
	Trailer []hpack.HeaderField // dst: sent with END_STREAM after pend
	Closed  bool                // dst: END_STREAM or RST_STREAM sent; nothing more goes
	queued  bool                // dst: in dst.waiting
	// OnClose runs (Dst locked) when END_STREAM was queued; OnDrain when
	// Pend is empty after a flush (an HTTP/1.1 exchange reads on).
	OnClose func()
	OnDrain func()

	Src     *Conn
	SrcID   uint32
	RecvWin int64 // src: what the source may still send on the stream
	unacked int64 // src: passed on, not yet given back
	SrcDone bool  // src: the source ended the stream; no stream credits
	// ConnCredit: the source connection's window is given back when data
	// leaves the relay (a client: bounds what it may have waiting in us),
	// not when it arrives (a shard: see the relay's shard connection).
	ConnCredit bool
	// Grant (src) is the stream window the source has been given; Budget,
	// for an answer half, is its client connection's growth in use (see
	// AnswerBudget); nil for a request half, whose window does not grow.
	Grant  int64
	Budget *atomic.Int64
	// Prepaid (src) counts bytes already given back to the source
	// connection while they were buffered for a body rule: they are not
	// given back again when they leave.
	Prepaid int64
}

// Credit is window to give back to a half's source: N bytes sent of H.
type Credit struct {
	H *Half
	N int
}

// GiveCredits gives each credit back; the caller holds no lock.
func GiveCredits(cs []Credit) {
	for _, c := range cs {
		c.H.Credit(c.N)
	}
}

// Open binds the half to its stream on dst and starts sending; Dst's lock
// held. It returns what was sent, to credit.
func (h *Half) Open(id uint32) int {
	h.ID = id
	h.Win = int64(h.Dst.InitWin)
	return h.Flush()
}

// Flush sends what pend holds, as far as the windows and room allow, then
// the end of the stream; dst.the Conn locked. It returns the bytes sent.
func (h *Half) Flush() (sent int) {
	w := h.Dst
	if h.Closed || h.ID == 0 || w.Dead {
		return 0
	}
	for len(h.Pend) > 0 {
		n := int(min(int64(len(h.Pend)), int64(w.maxFrame), h.Win, w.SendWin))
		if n <= 0 || !w.Room() {
			break
		}
		end := n == len(h.Pend) && h.End && h.Trailer == nil
		w.Data(h.ID, h.Pend[:n], end)
		h.Pend = h.Pend[n:]
		h.Win -= int64(n)
		w.SendWin -= int64(n)
		sent += n
		h.Closed = end
	}
	if len(h.Pend) == 0 {
		h.Pend = nil
		if h.End && !h.Closed {
			if h.Trailer != nil {
				w.Headers(h.ID, h.Trailer, true)
			} else {
				w.Data(h.ID, nil, true)
			}
			h.Closed = true
		}
	} else if !h.queued && h.Win > 0 {
		// Waiting for the connection's window or for room; a stream
		// window update flushes the half directly.
		w.waiting = append(w.waiting, h)
		h.queued = true
	}
	if sent > 0 || h.Closed {
		w.Signal()
	}
	if len(h.Pend) == 0 && h.OnDrain != nil {
		h.OnDrain()
	}
	if h.Closed && h.OnClose != nil {
		h.OnClose()
	}
	return sent
}

// Push passes data (and the end of the stream) from the source on; the
// caller holds no lock. What does not fit the windows waits in pend.
func (h *Half) Push(p []byte, end bool) {
	w := h.Dst
	w.Lock()
	if h.Closed || h.End || h.ID == 0 {
		w.Unlock()
		h.Credit(len(p)) // dropped: the source's window is not lost
		return
	}
	h.End = end
	var sent int
	if len(h.Pend) == 0 {
		h.Pend = p // borrowed: sent from directly, copied if it must wait
		sent = h.Flush()
		if len(h.Pend) > 0 {
			h.Pend = append([]byte(nil), h.Pend...)
		}
	} else {
		h.Pend = append(h.Pend, p...)
		sent = h.Flush()
	}
	w.Unlock()
	h.Credit(sent)
}

// Finish ends the half with trailers (nil: an empty DATA with END_STREAM)
// once pend is out; the caller holds no lock.
func (h *Half) Finish(trailer []hpack.HeaderField) {
	w := h.Dst
	w.Lock()
	if !h.Closed {
		h.End, h.Trailer = true, trailer
		h.Flush()
	}
	w.Unlock()
}

// WindowUpdate adds n to the stream's window on dst and sends what waited
// for it; dst.the Conn locked.
func (h *Half) WindowUpdate(n int64) int {
	h.Win += n
	return h.Flush()
}

// Abandon ends the half without sending anything more (the stream was
// reset); dst.the Conn locked.
func (h *Half) Abandon() {
	h.Pend = nil
	h.Closed = true
}

// Credit gives n bytes back to the source: the stream's window when
// enough is free and the stream still sends, and the connection's when
// the source is a client. The caller holds no lock.
func (h *Half) Credit(n int) {
	if n <= 0 || h.Src == nil { // no source window: an HTTP/1.1 shard's answer
		return
	}
	s := h.Src
	s.Lock()
	paid := min(int64(n), h.Prepaid)
	h.Prepaid -= paid
	if h.ConnCredit {
		s.GiveBack(n - int(paid))
	}
	h.CreditStream(n)
	s.Unlock()
}

// CreditStream gives n bytes of the stream's window back to its source,
// batched, while the source still sends on it; src.the Conn locked.
func (h *Half) CreditStream(n int) {
	if h.SrcDone || n <= 0 {
		return
	}
	h.unacked += int64(n)
	if h.unacked >= min(creditMin, h.Grant/2) {
		inc := h.unacked + h.grow()
		h.Src.WindowUpdate(h.SrcID, inc)
		h.RecvWin += inc
		h.unacked = 0
		h.Src.Signal()
	}
}

// grow doubles an answer half's window, up to MaxStreamWindow, when its
// client connection's budget allows: the client took what was sent, so
// the stream may have more in flight. It returns the increase; Src's lock
// held.
func (h *Half) grow() int64 {
	extra := min(h.Grant, MaxStreamWindow-h.Grant)
	if h.Budget == nil || extra <= 0 {
		return 0
	}
	if h.Budget.Add(extra) > AnswerBudget {
		h.Budget.Add(-extra)
		return 0
	}
	h.Grant += extra
	return extra
}

// ReleaseGrowth gives back to the client connection's budget what the
// half's window grew; src.the Conn locked. The half grows no more.
func (h *Half) ReleaseGrowth() {
	if h.Budget != nil {
		h.Budget.Add(-(h.Grant - ShardStreamWindow))
		h.Budget = nil
	}
}

// Received counts n bytes of DATA from the source against the stream's
// window; src.the Conn locked. False: the source overran it.
func (h *Half) Received(n int) bool {
	h.RecvWin -= int64(n)
	return h.RecvWin >= 0
}
