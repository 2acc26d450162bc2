package ring

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file reads and writes testdata/vectors.json; the layout is described
// in the package documentation (doc.go), which is what clients in other
// languages read, so the two must change together.

// vectorsFormat names the layout. A reader refuses any other value, so a
// future layout can never be misread as this one.
const vectorsFormat = "shard-proxy ring vectors v1"

// vectorFile is the whole document.
type vectorFile struct {
	Format     string      `json:"format"`
	About      string      `json:"about"`
	Seed       string      `json:"seed"`
	Regenerate string      `json:"regenerate"`
	Sets       []vectorSet `json:"sets"`
}

// vectorSet is one ring: an algorithm over n named shards, and the owner of
// each of its keys.
type vectorSet struct {
	Ring       Algorithm `json:"ring"`
	N          int       `json:"n"`
	Partitions int       `json:"partitions,omitempty"` // consistent only
	Names      []string  `json:"names"`
	Vectors    []vector  `json:"vectors"`

	line int // of the set's opening brace
}

// vector is one key and its owner. The key is Key when its bytes are valid
// UTF-8 and Hex otherwise, since a JSON string cannot hold other bytes;
// Quoted then shows it to people and is never hashed.
type vector struct {
	Key     *string `json:"key,omitempty"`
	Hex     *string `json:"hex,omitempty"`
	Quoted  *string `json:"quoted,omitempty"`
	Ordinal *int    `json:"ordinal"`

	key  []byte // the key's bytes, from Key or Hex
	line int
}

// newVector is the one way the generator writes a key, so that a key that
// could be a JSON string always is one.
func newVector(key []byte, ordinal int) vector {
	v := vector{Ordinal: &ordinal, key: key}
	if utf8.Valid(key) {
		s := string(key)
		v.Key = &s
	} else {
		h, q := hex.EncodeToString(key), quoteKey(key)
		v.Hex, v.Quoted = &h, &q
	}
	return v
}

// quoteKey is the readable form of a key beside its hex: Go's escapes
// (\xff, \u00a0, \n) without the surrounding quotes.
func quoteKey(key []byte) string {
	q := strconv.Quote(string(key))
	return q[1 : len(q)-1]
}

// encodeVectors writes f with one vector per line, so a diff of the file
// shows which keys changed and an error names a line worth reading.
func encodeVectors(f *vectorFile) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep <, > and & readable in keys
	put := func(v any) error { return enc.Encode(v) }
	trim := func() { b.Truncate(b.Len() - 1) } // Encode ends every value with \n

	b.WriteString("{\n")
	for _, field := range []struct{ name, value string }{
		{"format", f.Format}, {"about", f.About}, {"seed", f.Seed}, {"regenerate", f.Regenerate},
	} {
		fmt.Fprintf(&b, "%q: ", field.name)
		if err := put(field.value); err != nil {
			return nil, err
		}
		trim()
		b.WriteString(",\n")
	}
	b.WriteString("\"sets\": [\n")
	for i, s := range f.Sets {
		fmt.Fprintf(&b, "{\"ring\":%q,\"n\":%d,", s.Ring, s.N)
		if s.Partitions != 0 {
			fmt.Fprintf(&b, "\"partitions\":%d,", s.Partitions)
		}
		b.WriteString("\"names\":")
		if err := put(s.Names); err != nil {
			return nil, err
		}
		trim()
		b.WriteString(",\"vectors\":[\n")
		for j, v := range s.Vectors {
			if err := put(v); err != nil {
				return nil, err
			}
			if j < len(s.Vectors)-1 {
				trim()
				b.WriteString(",\n")
			}
		}
		b.WriteString("]}")
		if i < len(f.Sets)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("]\n}\n")
	return b.Bytes(), nil
}

// parseVectors reads a vectors file named name. Every error, of JSON syntax
// or of content, begins "name:line: ".
func parseVectors(name string, data []byte) (*vectorFile, error) {
	p := &vectorParser{name: name, data: data, dec: json.NewDecoder(bytes.NewReader(data)), line: 1}
	p.dec.DisallowUnknownFields()
	// JSON text is UTF-8 (RFC 8259 section 8.1), and Go would quietly read
	// a stray byte in a string as U+FFFD, another key than the one written.
	if !utf8.Valid(data) {
		off := 0
		for off < len(data) {
			r, size := utf8.DecodeRune(data[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return nil, p.errAt(int64(off), "byte %#x is not UTF-8 (write such keys as hex)", data[off])
	}
	return p.file()
}

// vectorParser walks the document with a streaming decoder, which knows the
// offset of every set and vector, so that errors can name their line.
type vectorParser struct {
	name string
	data []byte
	dec  *json.Decoder

	// Offsets only grow as the parser reads, so lines are counted from
	// the last one asked for rather than from the start each time.
	lineOff int64
	line    int
}

func (p *vectorParser) lineAt(off int64) int {
	off = min(max(off, 0), int64(len(p.data)))
	if off < p.lineOff {
		p.lineOff, p.line = 0, 1
	}
	p.line += bytes.Count(p.data[p.lineOff:off], []byte("\n"))
	p.lineOff = off
	return p.line
}

func (p *vectorParser) errAt(off int64, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", p.name, p.lineAt(off), fmt.Sprintf(format, args...))
}

// jsonErr places a decoder error. The streaming decoder's offsets in syntax
// errors are not positions in the file, so a syntax error is found again by
// the one-shot scanner, whose offsets are; anything else (a wrong type, an
// unknown field) is blamed on the value at off.
func (p *vectorParser) jsonErr(err error, off int64) error {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		var raw json.RawMessage
		if errors.As(json.Unmarshal(p.data, &raw), &syntax) {
			return p.errAt(syntax.Offset-1, "%v", syntax) // Offset counts the bad byte
		}
	}
	return p.errAt(off, "%v", err)
}

// next returns the offset of the next token: the decoder's own offset is
// the end of the previous one, before any comma and newline.
func (p *vectorParser) next() int64 { return p.skip(" \t\r\n,:") }

// skip returns the offset of the first byte from the decoder's offset on
// that is not in set.
func (p *vectorParser) skip(set string) int64 {
	off := p.dec.InputOffset()
	for off < int64(len(p.data)) && strings.IndexByte(set, p.data[off]) >= 0 {
		off++
	}
	return off
}

func (p *vectorParser) delim(want json.Delim) (int64, error) {
	off := p.next()
	tok, err := p.dec.Token()
	if err != nil {
		return off, p.jsonErr(err, off)
	}
	if tok != want {
		return off, p.errAt(off, "want %q, got %v", want, tok)
	}
	return off, nil
}

// field reads an object's next member name.
func (p *vectorParser) field() (string, int64, error) {
	off := p.next()
	tok, err := p.dec.Token()
	if err != nil {
		return "", off, p.jsonErr(err, off)
	}
	name, _ := tok.(string)
	return name, off, nil
}

func (p *vectorParser) value(v any) error {
	off := p.next()
	if err := p.dec.Decode(v); err != nil {
		return p.jsonErr(err, off)
	}
	return nil
}

func (p *vectorParser) file() (*vectorFile, error) {
	if _, err := p.delim('{'); err != nil {
		return nil, err
	}
	var f vectorFile
	formatOff := int64(-1)
	for p.dec.More() {
		name, off, err := p.field()
		if err != nil {
			return nil, err
		}
		switch name {
		case "format":
			formatOff = p.next()
			err = p.value(&f.Format)
		case "about":
			err = p.value(&f.About)
		case "seed":
			err = p.value(&f.Seed)
		case "regenerate":
			err = p.value(&f.Regenerate)
		case "sets":
			err = p.sets(&f)
		default:
			err = p.errAt(off, "unknown field %q", name)
		}
		if err != nil {
			return nil, err
		}
	}
	if _, err := p.delim('}'); err != nil {
		return nil, err
	}
	if off := p.skip(" \t\r\n"); off != int64(len(p.data)) {
		return nil, p.errAt(off, "data after the end of the document")
	}
	if formatOff < 0 {
		return nil, p.errAt(0, "no \"format\" field (want %q)", vectorsFormat)
	}
	if f.Format != vectorsFormat {
		return nil, p.errAt(formatOff, "format is %q, want %q", f.Format, vectorsFormat)
	}
	return &f, nil
}

func (p *vectorParser) sets(f *vectorFile) error {
	if _, err := p.delim('['); err != nil {
		return err
	}
	for p.dec.More() {
		s, err := p.set()
		if err != nil {
			return err
		}
		f.Sets = append(f.Sets, s)
	}
	_, err := p.delim(']')
	return err
}

func (p *vectorParser) set() (vectorSet, error) {
	var s vectorSet
	start, err := p.delim('{')
	if err != nil {
		return s, err
	}
	s.line = p.lineAt(start)
	for p.dec.More() {
		name, off, err := p.field()
		if err != nil {
			return s, err
		}
		switch name {
		case "ring":
			err = p.value(&s.Ring)
		case "n":
			err = p.value(&s.N)
		case "partitions":
			err = p.value(&s.Partitions)
		case "names":
			err = p.value(&s.Names)
		case "vectors":
			err = p.vectors(&s)
		default:
			err = p.errAt(off, "unknown field %q", name)
		}
		if err != nil {
			return s, err
		}
	}
	if _, err := p.delim('}'); err != nil {
		return s, err
	}
	return s, p.checkSet(&s)
}

func (p *vectorParser) vectors(s *vectorSet) error {
	if _, err := p.delim('['); err != nil {
		return err
	}
	for p.dec.More() {
		off := p.next()
		var v vector
		if err := p.value(&v); err != nil {
			return err
		}
		v.line = p.lineAt(off)
		if err := v.decodeKey(); err != nil {
			return fmt.Errorf("%s:%d: %w", p.name, v.line, err)
		}
		s.Vectors = append(s.Vectors, v)
	}
	_, err := p.delim(']')
	return err
}

// decodeKey fills v.key, and holds each vector to the one spelling the
// generator writes, so that the file stays easy to read in any language.
func (v *vector) decodeKey() error {
	switch {
	case v.Ordinal == nil:
		return errors.New(`vector has no "ordinal"`)
	case (v.Key == nil) == (v.Hex == nil):
		return errors.New(`vector needs exactly one of "key" and "hex"`)
	case v.Key != nil:
		if v.Quoted != nil {
			return errors.New(`"quoted" goes only beside "hex"`)
		}
		v.key = []byte(*v.Key)
	default:
		b, err := hex.DecodeString(*v.Hex)
		if err != nil || hex.EncodeToString(b) != *v.Hex {
			return fmt.Errorf("hex %q is not lowercase hex, two digits a byte", *v.Hex)
		}
		if utf8.Valid(b) {
			return fmt.Errorf("hex %q is valid UTF-8: write it as \"key\": %q", *v.Hex, b)
		}
		if want := quoteKey(b); v.Quoted == nil || *v.Quoted != want {
			return fmt.Errorf("hex %q needs \"quoted\": %q beside it", *v.Hex, want)
		}
		v.key = b
	}
	if len(v.key) == 0 {
		return errors.New("empty key: the proxy never routes one (it answers 400 no shard key), so no vector holds it")
	}
	return nil
}

// checkSet holds a set to what a ring needs, before any ring is built.
func (p *vectorParser) checkSet(s *vectorSet) error {
	at := func(format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", p.name, s.line, fmt.Sprintf(format, args...))
	}
	if _, err := ParseAlgorithm(string(s.Ring)); err != nil {
		return at("%v", err)
	}
	if s.N < 1 || len(s.Names) != s.N {
		return at("%s set has n = %d and %d names; want n >= 1 and a name per shard", s.Ring, s.N, len(s.Names))
	}
	if (s.Ring == Consistent) != (s.Partitions > 0) {
		return at("%s set has partitions = %d: consistent needs a positive count, the others none", s.Ring, s.Partitions)
	}
	seen := make(map[string]int, len(s.Vectors))
	for _, v := range s.Vectors {
		if *v.Ordinal < 0 || *v.Ordinal >= s.N {
			return fmt.Errorf("%s:%d: ordinal %d is not in [0, %d)", p.name, v.line, *v.Ordinal, s.N)
		}
		if first, ok := seen[string(v.key)]; ok {
			return fmt.Errorf("%s:%d: key %s is also on line %d", p.name, v.line, describeKey(v.key), first)
		}
		seen[string(v.key)] = v.line
	}
	return nil
}

// describeKey quotes a key for a message, cutting long ones short.
func describeKey(key []byte) string {
	const show = 48
	if len(key) <= show {
		return strconv.Quote(string(key))
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(string(key[:show])), len(key))
}
