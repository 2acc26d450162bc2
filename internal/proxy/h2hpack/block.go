// Package h2hpack holds the HTTP/2 relay's header blocks: decoding a block
// (HEADERS and its CONTINUATION frames, x/net's HPACK decoder) with the
// checks of RFC 9113 §8.2 and §8.3 and a bound on the list, reading a
// request head from it (ParseRequest), and encoding fields with the static
// table and literals only, as HAProxy does (no dynamic table to search or
// evict from).
package h2hpack

import (
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// block decodes one connection's header blocks (HEADERS and its
// CONTINUATION frames) into a slice it reuses, with the checks x/net's
// MetaHeadersFrame makes (RFC 9113 §8.2, §8.3): valid names (lower case)
// and values, pseudo-fields first and once each, of one kind, and the
// header list size bound. Only the connection's reader uses it; Fields is
// valid until the next block.
type Block struct {
	dec    *hpack.Decoder
	Fields []hpack.HeaderField
	// ID is the stream the block belongs to.
	ID     uint32
	end    bool // END_STREAM on the HEADERS frame
	size   int  // decoded list size (RFC 9113 §6.5.2)
	pseudo int  // how many of Fields are pseudo-fields (they come first)
	raw    int  // encoded bytes so far
	// Invalid: a field broke the rules (a stream error); Truncated: the
	// list exceeded the bound.
	Invalid, Truncated bool
	sawRegular         bool
	max                int // the header list bound
}

func NewBlock(maxList int) *Block {
	b := &Block{max: maxList}
	b.dec = hpack.NewDecoder(4096, b.emit)
	b.dec.SetMaxStringLength(maxList)
	return b
}

func (b *Block) emit(f hpack.HeaderField) {
	if b.Invalid || b.Truncated {
		return
	}
	if b.size += int(f.Size()); b.size > b.max {
		b.Truncated = true
		return
	}
	if !httpguts.ValidHeaderFieldValue(f.Value) {
		b.Invalid = true
		return
	}
	if strings.HasPrefix(f.Name, ":") {
		b.Invalid = b.sawRegular || !validPseudo(f.Name, b.Fields)
		b.pseudo++
	} else {
		b.sawRegular = true
		b.Invalid = !validFieldName(f.Name)
	}
	b.Fields = append(b.Fields, f)
}

// validPseudo: a known pseudo-field, not yet seen, of the same kind
// (request or response) as those before it.
func validPseudo(name string, seen []hpack.HeaderField) bool {
	response := name == ":status"
	switch name {
	case ":method", ":path", ":scheme", ":authority", ":protocol", ":status":
	default:
		return false
	}
	for _, f := range seen {
		if f.Name == name || (f.Name == ":status") != response {
			return false
		}
	}
	return true
}

// validFieldName: a token with no upper-case letter.
func validFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' || !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}

// start begins a block with a HEADERS frame. It returns whether the
// block is complete, or a connection error.
func (b *Block) Start(f *http2.HeadersFrame) (bool, error) {
	clear(b.Fields)
	b.Fields = b.Fields[:0]
	b.ID, b.end = f.StreamID, f.StreamEnded()
	b.size, b.raw, b.pseudo = 0, 0, 0
	b.Invalid, b.Truncated, b.sawRegular = false, false, false
	return b.add(f.HeaderBlockFragment(), f.HeadersEnded())
}

// more continues the block with a CONTINUATION frame (the Framer checks
// that it belongs to the block's stream).
func (b *Block) More(f *http2.ContinuationFrame) (bool, error) {
	return b.add(f.HeaderBlockFragment(), f.HeadersEnded())
}

func (b *Block) add(frag []byte, ended bool) (bool, error) {
	// A block far larger than the list it may decode to is a flood of
	// CONTINUATION frames (CVE-2024-27316's kind): the connection ends.
	if b.raw += len(frag); b.raw > 2*b.max {
		return false, http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	if _, err := b.dec.Write(frag); err != nil {
		return false, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if !ended {
		return false, nil
	}
	if err := b.dec.Close(); err != nil {
		return false, http2.ConnectionError(http2.ErrCodeCompression)
	}
	return true, nil
}

// StreamEnded tells whether the HEADERS frame ended the stream.
func (b *Block) StreamEnded() bool { return b.end }

// PseudoFields are the pseudo-fields, which come first.
func (b *Block) PseudoFields() []hpack.HeaderField { return b.Fields[:b.pseudo] }

// RegularFields are the fields after the pseudo-fields.
func (b *Block) RegularFields() []hpack.HeaderField { return b.Fields[b.pseudo:] }

// PseudoValue is the value of pseudo-field ":"+name, "" if absent.
func (b *Block) PseudoValue(name string) string {
	for _, f := range b.PseudoFields() {
		if f.Name[1:] == name {
			return f.Value
		}
	}
	return ""
}

// value is the value of the first regular field named name, "" if none.
func (b *Block) Value(name string) string {
	for _, f := range b.RegularFields() {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}
