package wsframe

import (
	"bytes"
	"slices"
	"testing"
)

// TestWSFrames: frame boundaries are found whatever the head's form
// (7-, 16- and 64-bit lengths, masked or not, empty payloads) and however
// the bytes are split; with stop, Advance ends exactly at the next one.
func TestWSFrames(t *testing.T) {
	frames := [][]byte{
		{0x81, 0x02, 'h', 'i'},
		append([]byte{0x82, 0x7e, 0x01, 0x00}, bytes.Repeat([]byte{1}, 256)...),
		append([]byte{0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0x01, 0x02}, bytes.Repeat([]byte{2}, 258)...),
		{0x89, 0x00}, // empty ping
		{0x81, 0x83, 1, 2, 3, 4, 'a' ^ 1, 'b' ^ 2, 'c' ^ 3}, // masked
	}
	var stream []byte
	var ends []int // offsets where a frame ends
	for _, f := range frames {
		stream = append(stream, f...)
		ends = append(ends, len(stream))
	}
	for split := 1; split <= len(stream); split++ {
		var f Frames
		var got []int
		off := 0
		for off < len(stream) {
			chunk := stream[off:min(off+split, len(stream))]
			n := f.Advance(chunk, true)
			if n == 0 { // at a boundary already: step over one byte to go on
				n = f.Advance(chunk[:1], false)
			}
			off += n
			if f.AtBoundary() {
				got = append(got, off)
			}
		}
		if !slices.Equal(got, ends) {
			t.Fatalf("chunks of %d: boundaries at %v, want %v", split, got, ends)
		}
	}
}
