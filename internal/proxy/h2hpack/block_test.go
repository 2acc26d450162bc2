package h2hpack

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// blockOf decodes fields, encoded by x/net's encoder and split into
// HEADERS + CONTINUATION frames of at most chunk bytes, with an block.
func blockOf(t *testing.T, fields []hpack.HeaderField, chunk int) (*Block, error) {
	t.Helper()
	var enc bytes.Buffer
	e := hpack.NewEncoder(&enc)
	for _, f := range fields {
		_ = e.WriteField(f)
	}
	frag := enc.Bytes()
	var wire bytes.Buffer
	fr := http2.NewFramer(&wire, &wire)
	first := frag[:min(chunk, len(frag))]
	frag = frag[len(first):]
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndHeaders: len(frag) == 0, EndStream: true})
	for len(frag) > 0 {
		n := min(chunk, len(frag))
		_ = fr.WriteContinuation(1, n == len(frag), frag[:n])
		frag = frag[n:]
	}
	b := NewBlock(maxList)
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	done, err := b.Start(f.(*http2.HeadersFrame))
	for err == nil && !done {
		if f, err = fr.ReadFrame(); err != nil {
			t.Fatal(err)
		}
		done, err = b.More(f.(*http2.ContinuationFrame))
	}
	return b, err
}

// TestH2Block: header blocks decode across CONTINUATION frames; the
// checks of RFC 9113 §8.2 and §8.3 flag what breaks them; an oversized
// list is flagged as such, and a flood of fragments ends the connection.
func TestH2Block(t *testing.T) {
	req := []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: "/x"}}
	with := func(extra ...hpack.HeaderField) []hpack.HeaderField {
		return append(append([]hpack.HeaderField(nil), req...), extra...)
	}
	tests := []struct {
		name               string
		fields             []hpack.HeaderField
		invalid, truncated bool
	}{
		{"valid", with(hpack.HeaderField{Name: "x-a", Value: "1"}), false, false},
		{"upper-case name", with(hpack.HeaderField{Name: "X-A", Value: "1"}), true, false},
		{"name not a token", with(hpack.HeaderField{Name: "x a", Value: "1"}), true, false},
		{"control character in value", with(hpack.HeaderField{Name: "x-a", Value: "a\x00b"}), true, false},
		{"pseudo after regular", with(hpack.HeaderField{Name: "x-a", Value: "1"}, hpack.HeaderField{Name: ":authority", Value: "h"}), true, false},
		{"duplicate pseudo", with(hpack.HeaderField{Name: ":path", Value: "/y"}), true, false},
		{"unknown pseudo", with(hpack.HeaderField{Name: ":foo", Value: "1"}), true, false},
		{"request and response pseudo", with(hpack.HeaderField{Name: ":status", Value: "200"}), true, false},
		{"list too large", with(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("a", maxList)}), false, true},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1 << 20, 7} {
			b, err := blockOf(t, tt.fields, chunk)
			if tt.truncated && chunk == 7 {
				continue // covered by the flood case below
			}
			if err != nil {
				t.Fatalf("%s (chunks of %d): %v", tt.name, chunk, err)
			}
			if b.Invalid != tt.invalid || b.Truncated != tt.truncated {
				t.Errorf("%s (chunks of %d): invalid %v truncated %v, want %v %v", tt.name, chunk, b.Invalid, b.Truncated, tt.invalid, tt.truncated)
			}
			if !tt.invalid && !tt.truncated && (len(b.Fields) != len(tt.fields) || b.PseudoValue("path") != "/x" || len(b.RegularFields()) != 1) {
				t.Errorf("%s: decoded %+v", tt.name, b.Fields)
			}
		}
	}
	// Raw fragments beyond twice the list bound end the connection.
	var big []hpack.HeaderField
	for i := range 5 * maxList / 1024 {
		big = append(big, hpack.HeaderField{Name: "x-f", Value: strconv.Itoa(i) + strings.Repeat("a", 1024)})
	}
	var ce http2.ConnectionError
	if _, err := blockOf(t, big, 16384); !errors.As(err, &ce) || http2.ErrCode(ce) != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("oversized block: %v, want a connection error ENHANCE_YOUR_CALM", err)
	}
}

// maxList is the bound the tests decode with, the relay's.
const maxList = 64 << 10
