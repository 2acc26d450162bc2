package http1

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy/h1write"
	"github.com/shard-proxy/shard-proxy/internal/proxy/upstream"
	"github.com/shard-proxy/shard-proxy/internal/proxy/wsframe"
)

// tunnel relays an upgraded connection (WebSocket after 101): the answer's
// head goes to the client, then bytes flow both ways until either side
// closes or the tunnel idles past TunnelIdleTimeout. Neither connection is
// reused afterwards.
func (x *exchange) tunnel(uc *upstream.Conn) bool {
	cc := x.cc
	x.d.Status = 101
	head := h1write.AppendResponse(cc.scratch(), &x.resp, h1write.ResponseHead{Shard: x.b.Name, Upgrade: true})
	cc.keepScratch(head)
	defer upstream.PoolOf(x.b).Discard(uc)
	if x.stopCopy(); !cc.bodyDone() {
		return false // an upgrade request with a body still arriving
	}
	if err := x.writeHead(head, x.ub[x.ur:x.uw]); err != nil {
		return false
	}
	if early := cc.takeUnread(); len(early) > 0 { // the client spoke the new protocol right away
		if _, err := uc.NC.Write(early); err != nil {
			return false
		}
	}
	x.b.Metrics.Tunnels.Inc()
	defer x.b.Metrics.Tunnels.Dec()
	t := &tunnelState{shard: uc.NC, idle: cc.s.cfg.TunnelIdleTimeout, ws: x.websocket}
	if t.ws {
		t.frames.Advance(x.ub[x.ur:x.uw], false) // what came with the 101
	}
	x.ur = x.uw
	live := cc.s.router.Track(x.key, x.b.Name, func() {
		// Stops the shard-to-client copy: at once, or for a WebSocket at
		// the end of the frame under way, given wsFinishFrame to come.
		end := time.Unix(1, 0)
		if t.ws {
			end = time.Now().Add(wsFinishFrame)
		}
		t.movedEnd.Store(end.UnixNano())
		t.moved.Store(true)
		_ = uc.NC.SetReadDeadline(end)
	})
	defer cc.s.router.Untrack(live)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.pipe(uc.NC, cc.nc, cc.readBuffer(), uc.NC)
	}()
	t.pipe(cc.nc, uc.NC, x.ub, cc.nc)
	if t.moved.Load() && x.websocket {
		// The key's owner changed: a WebSocket close, 1012 "service
		// restart", tells the client to reconnect (to the new owner). The
		// copy towards the client stopped between two frames; if a frame
		// was still incomplete after wsFinishFrame, the connection just
		// closes, rather than put the close frame inside it.
		if t.frames.AtBoundary() {
			_ = cc.nc.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = cc.nc.Write(wsClose1012)
		}
		_ = cc.nc.Close()
		_ = uc.NC.Close()
	}
	<-done
	x.d.BytesOut += t.out.Load()
	x.bodyIn.Add(t.in.Load())
	cc.takeUnread() // the tunnel's bytes were no request
	return false
}

// wsClose1012 is an unmasked WebSocket close frame (RFC 6455 §5.5.1) with
// status 1012, service restart.
var wsClose1012 = []byte{0x88, 0x02, 0x03, 0xF4}

// tunnelLinger is how long the other direction of a tunnel may still flow
// once one side has closed (a WebSocket close handshake, say).
const tunnelLinger = 2 * time.Second

// wsFinishFrame is how long a moved WebSocket tunnel waits for the
// frame under way from the shard to end before its close frame.
const wsFinishFrame = time.Second

type tunnelState struct {
	shard net.Conn // the shard side: its copy stops when the key moves
	idle  time.Duration
	// ws: a WebSocket tunnel; frames follows the shard's frames (only
	// the shard-to-client copy touches it until that copy ends).
	ws     bool
	frames wsframe.Frames
	moved  atomic.Bool // the key's owner changed (route.Router.Track)
	// movedEnd: unix nanoseconds by which a moved tunnel's shard-to-client
	// copy stops; set before moved.
	movedEnd atomic.Int64
	endAt    atomic.Int64 // unix nanoseconds; 0 while both directions flow
	// in and out count the bytes relayed to the shard and to the client
	// (the access log's bytes_in and bytes_out of a tunnel).
	in, out atomic.Int64
}

// pipe copies from src to dst until either fails or src idles past idle.
// Then it half-closes dst, so its peer sees the end of the stream, and
// gives the other direction (which reads other) tunnelLinger to finish.
func (t *tunnelState) pipe(dst, src net.Conn, buf []byte, other net.Conn) {
	for {
		_ = src.SetReadDeadline(time.Now().Add(t.idle))
		// Looked at after setting our deadline, so that a linger or a move
		// decided concurrently is never overwritten: either we see it here,
		// or its own deadline comes after ours.
		if end := t.endAt.Load(); end != 0 {
			_ = src.SetReadDeadline(time.Unix(0, end))
		}
		fromShard := src == t.shard
		if fromShard && t.moved.Load() {
			if !t.ws || t.frames.AtBoundary() {
				return
			}
			_ = src.SetReadDeadline(time.Unix(0, t.movedEnd.Load())) // the frame under way may end
		}
		n, err := src.Read(buf)
		if fromShard && t.ws && n > 0 {
			moved := t.moved.Load()
			n = t.frames.Advance(buf[:n], moved) // a moved tunnel stops at the frame's end
			if moved && t.frames.AtBoundary() {
				_, _ = dst.Write(buf[:n])
				return
			}
		}
		if n > 0 {
			_ = dst.SetWriteDeadline(time.Now().Add(t.idle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
			t.count(fromShard, n)
		}
		if err != nil {
			if cw, ok := dst.(closeWriter); ok && !t.moved.Load() {
				_ = cw.CloseWrite() // (a moved tunnel still sends its close frame)
			}
			end := time.Now().Add(tunnelLinger)
			if t.endAt.CompareAndSwap(0, end.UnixNano()) {
				_ = other.SetReadDeadline(end)
			}
			return
		}
	}
}

// count adds n bytes relayed in one direction.
func (t *tunnelState) count(fromShard bool, n int) {
	if fromShard {
		t.out.Add(int64(n))
	} else {
		t.in.Add(int64(n))
	}
}

// closeWriter is a connection that can half-close (TCP): a tunnel closes
// one direction and lets the other finish.
type closeWriter interface{ CloseWrite() error }

var _ closeWriter = (*net.TCPConn)(nil)
