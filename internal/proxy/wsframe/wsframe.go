// Package wsframe follows WebSocket frame boundaries (RFC 6455 §5.2) in a
// byte stream, for the tunnels of the front ends.
package wsframe

import "encoding/binary"

// Frames follows WebSocket frame boundaries (RFC 6455 §5.2) in the
// bytes a shard sends through a tunnel, so that the proxy's own close
// frame (1012, when the key moved) goes between two frames, never inside
// one.
type Frames struct {
	head [14]byte
	hn   int    // bytes of the current frame's head seen so far
	left uint64 // bytes of the current frame's payload still to come
}

// AtBoundary tells whether the bytes so far end a frame.
func (f *Frames) AtBoundary() bool { return f.hn == 0 && f.left == 0 }

// Advance follows p. With stop, it stops at the first frame boundary and
// returns how much of p comes before it (0 when already at one);
// otherwise it returns len(p).
func (f *Frames) Advance(p []byte, stop bool) int {
	i := 0
	for i < len(p) {
		if stop && f.AtBoundary() {
			return i
		}
		if f.left > 0 {
			n := min(uint64(len(p)-i), f.left)
			i += int(n)
			f.left -= n
			continue
		}
		f.head[f.hn] = p[i]
		f.hn++
		i++
		if f.hn >= 2 && f.hn == wsHeadLen(f.head[1]) {
			f.left = wsPayloadLen(f.head[:f.hn])
			f.hn = 0
		}
	}
	return i
}

// wsHeadLen is the length of a frame head whose second byte is b1.
func wsHeadLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 { // masked
		n += 4
	}
	return n
}

// wsPayloadLen is the payload length a complete frame head declares.
func wsPayloadLen(h []byte) uint64 {
	switch l := h[1] & 0x7f; l {
	case 126:
		return uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		return binary.BigEndian.Uint64(h[2:10]) &^ (1 << 63)
	default:
		return uint64(l)
	}
}
