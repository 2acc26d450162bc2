package h2wire

import (
	"bytes"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// peer is the far end of a Conn: it reads what the Conn writes, frame by
// frame.
type peer struct {
	frames chan http2.Frame
}

func newPair(t *testing.T) (*Conn, *peer) {
	t.Helper()
	ours, theirs := net.Pipe()
	w := New(ours, 5*time.Second)
	p := &peer{frames: make(chan http2.Frame, 1024)}
	go func() {
		fr := http2.NewFramer(nil, theirs)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				close(p.frames)
				return
			}
			if d, ok := f.(*http2.DataFrame); ok {
				// the Framer reuses its buffer: keep a copy
				c := *d
				f = &dataCopy{DataFrame: &c, data: bytes.Clone(d.Data())}
			}
			p.frames <- f
		}
	}()
	t.Cleanup(func() {
		w.Close()
		_ = theirs.Close()
	})
	return w, p
}

type dataCopy struct {
	*http2.DataFrame
	data []byte
}

// next returns the next frame, failing the test after a deadline.
func (p *peer) next(t *testing.T) http2.Frame {
	t.Helper()
	select {
	case f, ok := <-p.frames:
		if !ok {
			t.Fatal("the connection closed")
		}
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no frame within 5 s")
	}
	return nil
}

// quiet checks that no frame comes within d.
func (p *peer) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case f := <-p.frames:
		t.Fatalf("unexpected frame %v", f.Header())
	case <-time.After(d):
	}
}

// TestHalfWindows relays 70,000 bytes from a source connection to a
// destination whose stream window is the initial 65,535: what fits goes
// out in frames of the peer's size, the rest waits for the destination's
// window update, and the source is given its windows back (stream and
// connection) for exactly what left.
func TestHalfWindows(t *testing.T) {
	src, srcPeer := newPair(t)
	dst, dstPeer := newPair(t)
	h := &Half{Dst: dst, Src: src, SrcID: 1, RecvWin: 65535, Grant: 65535, ConnCredit: true}
	dst.Lock()
	if sent := h.Open(3); sent != 0 {
		t.Fatalf("Open sent %d bytes of nothing", sent)
	}
	dst.Unlock()

	body := bytes.Repeat([]byte("x"), 70000)
	src.Lock()
	if h.Received(len(body)) {
		t.Fatal("Received accepted 70,000 bytes on a 65,535-byte window")
	}
	src.Unlock()
	h.Push(body, true)

	got := 0
	for got < 65535 {
		d := dstPeer.next(t).(*dataCopy)
		if d.StreamID != 3 || len(d.data) > 16384 {
			t.Fatalf("DATA on stream %d of %d bytes, want stream 3 and at most 16384", d.StreamID, len(d.data))
		}
		if d.StreamEnded() {
			t.Fatal("END_STREAM before the whole body")
		}
		got += len(d.data)
	}
	if got != 65535 {
		t.Fatalf("sent %d bytes on a 65,535-byte window", got)
	}
	dstPeer.quiet(t, 50*time.Millisecond)
	dst.Lock()
	if len(h.Pend) != 70000-65535 {
		t.Fatalf("holds %d bytes, want %d", len(h.Pend), 70000-65535)
	}
	dst.Unlock()

	// The source got back what left: WINDOW_UPDATEs for the stream and
	// the connection.
	expectUpdates(t, srcPeer, 65535, 65535)

	// The destination opens the stream's window (its connection window
	// is also spent: open both): the rest goes, with END_STREAM.
	dst.Lock()
	dst.SendWin += 10000
	credits := dst.Resume(nil)
	sent := h.WindowUpdate(10000)
	dst.Unlock()
	GiveCredits(credits)
	h.Credit(sent)
	rest := 0
	for {
		d := dstPeer.next(t).(*dataCopy)
		rest += len(d.data)
		if d.StreamEnded() {
			break
		}
	}
	if rest != 70000-65535 {
		t.Fatalf("the rest was %d bytes, want %d", rest, 70000-65535)
	}
}

// TestPrepaid checks that bytes already given back to the source
// connection (buffered for a body rule) are not given back again when they
// leave, while the stream's window still is.
func TestPrepaid(t *testing.T) {
	src, srcPeer := newPair(t)
	h := &Half{Src: src, SrcID: 5, RecvWin: 65535, Grant: 65535, ConnCredit: true}
	src.Lock()
	h.Prepaid = 40000
	src.Unlock()
	h.Credit(40000)
	expectUpdates(t, srcPeer, 40000, 0)
	// Beyond what was prepaid, the connection's window comes back too.
	h.Credit(20000)
	expectUpdates(t, srcPeer, 20000, 20000)
}

// TestAnswerBudget checks that answer halves of one client connection
// grow their windows only within AnswerBudget together.
func TestAnswerBudget(t *testing.T) {
	src, _ := newPair(t)
	budget := new(atomic.Int64)
	total := int64(0)
	for i := range 200 {
		h := &Half{Src: src, SrcID: uint32(2*i + 1), RecvWin: ShardStreamWindow, Grant: ShardStreamWindow, Budget: budget}
		src.Lock()
		for range 10 {
			total += h.grow()
		}
		if h.Grant > MaxStreamWindow {
			t.Fatalf("a half's window grew to %d, past %d", h.Grant, MaxStreamWindow)
		}
		src.Unlock()
	}
	if total != AnswerBudget || budget.Load() != AnswerBudget {
		t.Fatalf("halves grew by %d in all (budget in use %d), want exactly %d", total, budget.Load(), AnswerBudget)
	}
}

// expectUpdates reads WINDOW_UPDATE frames until their increments add up
// to stream (for streams) and conn (for the connection), then checks that
// nothing more comes for a moment: a test fails on an update too many as
// on one missing.
func expectUpdates(t *testing.T, p *peer, stream, conn int) {
	t.Helper()
	var gotStream, gotConn int
	for gotStream < stream || gotConn < conn {
		wu, ok := p.next(t).(*http2.WindowUpdateFrame)
		if !ok {
			t.Fatal("a frame other than WINDOW_UPDATE")
		}
		if wu.StreamID == 0 {
			gotConn += int(wu.Increment)
		} else {
			gotStream += int(wu.Increment)
		}
	}
	if gotStream != stream || gotConn != conn {
		t.Fatalf("given back %d (stream) and %d (connection), want %d and %d", gotStream, gotConn, stream, conn)
	}
	p.quiet(t, 50*time.Millisecond)
}

// deferred records when it ran and whether its Conn was unlocked then.
type deferred struct {
	w        *Conn
	id       int
	ran      *[]int
	unlocked *[]bool
}

func (d deferred) RunUnlocked() {
	*d.ran = append(*d.ran, d.id)
	ok := d.w.TryLock()
	if ok {
		d.w.Mutex.Unlock()
	}
	*d.unlocked = append(*d.unlocked, ok)
}

// TestDefer: work deferred under the lock runs once, in order, unlocked,
// when the holder unlocks (past the four kept in place too); an Unlock
// with nothing deferred runs nothing, and a later holder's Unlock runs
// only what it deferred.
func TestDefer(t *testing.T) {
	w := New(nil, time.Second)
	var ran []int
	var unlocked []bool
	w.Lock()
	for i := range 7 {
		w.Defer(deferred{w, i, &ran, &unlocked})
	}
	w.Unlock()
	if want := []int{0, 1, 2, 3, 4, 5, 6}; !slices.Equal(ran, want) {
		t.Fatalf("ran %v, want %v", ran, want)
	}
	if slices.Contains(unlocked, false) {
		t.Fatalf("ran with the Conn locked: %v", unlocked)
	}
	w.Lock()
	w.Signal() // nothing to write: a hold that defers nothing
	w.Unlock()
	w.Lock()
	w.Defer(deferred{w, 7, &ran, &unlocked})
	w.Unlock()
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7}; !slices.Equal(ran, want) {
		t.Fatalf("ran %v, want %v", ran, want)
	}
}

// TestIdleConnHoldsNoWriter: once what was queued is written, the Conn has
// no writer goroutine and no output buffer; the next frame starts one
// again, and Close still sends what is queued and closes the socket.
func TestIdleConnHoldsNoWriter(t *testing.T) {
	w, p := newPair(t)
	idle := func() bool {
		w.Lock()
		defer w.Unlock()
		return !w.writing && w.Out == nil && w.outH == nil
	}
	for round := range 3 {
		w.Lock()
		w.Ping(0, [8]byte{byte(round)})
		w.Signal()
		w.Unlock()
		if f, ok := p.next(t).(*http2.PingFrame); !ok || f.Data[0] != byte(round) {
			t.Fatalf("round %d: got %v, want its PING", round, f)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !idle() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the writer still runs, or the Conn holds a buffer, 5 s after its output was written", round)
			}
			time.Sleep(time.Millisecond)
		}
	}
	w.Lock()
	w.GoAway(7, http2.ErrCodeNo)
	w.Unlock()
	w.Close()
	if f, ok := p.next(t).(*http2.GoAwayFrame); !ok || f.LastStreamID != 7 {
		t.Fatalf("got %v, want the GOAWAY queued before Close", f)
	}
	select {
	case _, open := <-p.frames:
		if open {
			t.Fatal("a frame after the GOAWAY")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the socket was not closed 5 s after Close")
	}
}
