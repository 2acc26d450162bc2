package h1

import (
	"bytes"
	"iter"
	"math"
	"strconv"
)

// Limits of the chunked scanner. A size line is a few bytes in practice;
// extensions are almost never sent. Trailers are rare and small.
const (
	// MaxChunkLine bounds a chunk-size line, extensions and CRLF included;
	// it is the bound of Go's net/http, whose line must fit its 4 KiB
	// read buffer, so the two never disagree on a long extension.
	MaxChunkLine = 4 << 10
	// MaxTrailer bounds the trailer section, its final CRLF included.
	MaxTrailer = 16 << 10
)

// Chunked scans a chunked body (RFC 9112 §7.1) fed in pieces of any size,
// down to one byte. It validates every framing byte: chunk-size is
// 1*HEXDIG, extensions follow the token / quoted-string grammar, lines end
// in CRLF and nothing else, chunk data is followed by CRLF, and trailer
// field lines obey the same rules as header field lines. A chunk-size has
// at most 16 digits and must fit an int64; nothing is ever sized from it,
// payload is passed through as it arrives.
//
// Its zero value is ready to use. A Chunked is not safe for concurrent
// use; reuse one with Reset.
type Chunked struct {
	state chunkState
	size  int64 // chunk-size being read, then payload bytes left
	n     int   // bytes of the current size line, or of the trailer section
	err   error
}

type chunkState uint8

const (
	stSize           chunkState = iota // expecting the first HEXDIG
	stSizeDigits                       // in chunk-size
	stExtSemi                          // BWS that must lead to ";"
	stExtName0                         // after ";" BWS, expecting a name
	stExtName                          // in chunk-ext-name
	stExtAfterName                     // BWS after a name, before "=" or ";"
	stExtVal0                          // after "=" BWS, expecting a value
	stExtValToken                      // in a token value
	stExtQuoted                        // in a quoted-string value
	stExtQuotedPair                    // after a backslash in a quoted-string
	stExtAfterQuoted                   // after the closing DQUOTE
	stSizeLF                           // after the CR of the size line
	stData                             // in chunk data
	stDataCR                           // expecting the CR after chunk data
	stDataLF                           // expecting the LF after chunk data
	stTrailerStart                     // at the start of a trailer line
	stTrailerName                      // in a trailer field name
	stTrailerValue                     // in a trailer field value
	stTrailerLF                        // after the CR of a trailer line
	stFinalLF                          // after the CR of the last line
	stDone                             // message complete
)

// Next consumes the next piece of framing or data from p. It returns how
// many bytes of p it consumed and, when those bytes end in chunk payload,
// that payload as data (a sub-slice of p); framing bytes never appear in
// data. A proxy relaying the body verbatim forwards p[:consumed]; one
// decoding it forwards data. Callers loop until p is used up or done.
//
// done is true once the last chunk, the trailer section and its final
// CRLF have been consumed; bytes of p after that belong to the next
// message. After an error, which matches ErrMalformed, every later call
// returns the same error.
func (c *Chunked) Next(p []byte) (consumed int, data []byte, done bool, err error) {
	if c.err != nil {
		return 0, nil, false, c.err
	}
	for i := 0; i < len(p); i++ {
		switch c.state {
		case stData:
			n := int(min(int64(len(p)-i), c.size))
			if c.size -= int64(n); c.size == 0 {
				c.state = stDataCR
			}
			return i + n, p[i : i+n], false, nil
		case stDone:
			return i, nil, true, nil
		}
		if err := c.step(p[i]); err != nil {
			c.err = err
			return i, nil, false, err
		}
	}
	return len(p), nil, c.state == stDone, nil
}

// Reset makes c ready for a new body.
func (c *Chunked) Reset() { *c = Chunked{} }

// step advances the state machine over one framing byte.
func (c *Chunked) step(b byte) error {
	switch {
	case c.state < stData:
		if c.n++; c.n > MaxChunkLine {
			return errChunkLineLong
		}
		return c.sizeLine(b)
	case c.state >= stTrailerStart:
		if c.n++; c.n > MaxTrailer {
			return errTrailerTooLarge
		}
		return c.trailer(b)
	case c.state == stDataCR && b == '\r':
		c.state = stDataLF
	case c.state == stDataLF && b == '\n':
		c.state, c.n = stSize, 0
	default:
		return errChunkDataEnd
	}
	return nil
}

// sizeLine handles one byte of chunk-size [ chunk-ext ] CRLF, where
//
//	chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//
// (RFC 9112 §7.1.1). Whitespace is accepted only where BWS stands, so
// "5 \r\n" and "5; a \r\n" are errors.
func (c *Chunked) sizeLine(b byte) error {
	switch c.state {
	case stSize, stSizeDigits:
		return c.sizeDigit(b)
	case stExtSemi:
		return c.expect(b, ';', stExtName0, stExtSemi)
	case stExtName0:
		if isTchar(b) {
			c.state = stExtName
			return nil
		}
		return c.expect(b, 0, 0, stExtName0)
	case stExtName:
		return c.afterToken(b, stExtName, stExtAfterName, true)
	case stExtAfterName:
		if b == '=' {
			c.state = stExtVal0
			return nil
		}
		return c.expect(b, ';', stExtName0, stExtAfterName)
	case stExtVal0:
		return c.extValueStart(b)
	case stExtValToken:
		return c.afterToken(b, stExtValToken, stExtSemi, false)
	case stExtQuoted, stExtQuotedPair:
		return c.quoted(b)
	case stExtAfterQuoted:
		return c.afterToken(b, 0, stExtSemi, false)
	}
	// stSizeLF
	if b != '\n' {
		return errBareCR
	}
	if c.size == 0 {
		c.state, c.n = stTrailerStart, 0
	} else {
		c.state = stData
	}
	return nil
}

// sizeDigit reads one byte of chunk-size, or what follows it.
func (c *Chunked) sizeDigit(b byte) error {
	if chars[b]&cHex == 0 {
		switch {
		case c.state == stSize:
			return errChunkSize
		case b == ';', b == '\r', b == '\n', isWS(b):
			return c.afterToken(b, 0, stExtSemi, false)
		}
		return errChunkSize
	}
	if c.state = stSizeDigits; c.n > 16 {
		// Go's net/http refuses more than 16 digits even with leading
		// zeros; agreeing with it is worth more than the odd zero.
		return errChunkSizeLong
	}
	if c.size > math.MaxInt64>>4 {
		return errChunkSizeLong
	}
	c.size = c.size<<4 | int64(unhex(b))
	return nil
}

// afterToken handles the byte after a size, an extension name or a token
// value: stay while tchar (if stay is non-zero), ";" starts the next
// extension, "=" a value (after names only), SP/HTAB go to ws, CR ends the
// line.
func (c *Chunked) afterToken(b byte, stay, ws chunkState, name bool) error {
	switch {
	case stay != 0 && isTchar(b):
	case b == ';':
		c.state = stExtName0
	case b == '=' && name:
		c.state = stExtVal0
	case isWS(b):
		c.state = ws
	case b == '\r':
		c.state = stSizeLF
	case b == '\n':
		return errBareLF
	default:
		return errChunkExt
	}
	return nil
}

// expect moves to next on want (if want is non-zero), stays in ws on
// SP/HTAB, and rejects anything else.
func (c *Chunked) expect(b, want byte, next, ws chunkState) error {
	switch {
	case want != 0 && b == want:
		c.state = next
	case isWS(b):
		c.state = ws
	default:
		return errChunkExt
	}
	return nil
}

func (c *Chunked) extValueStart(b byte) error {
	switch {
	case isTchar(b):
		c.state = stExtValToken
	case b == '"':
		c.state = stExtQuoted
	default:
		return c.expect(b, 0, 0, stExtVal0)
	}
	return nil
}

// quoted handles one byte inside a quoted-string (RFC 9110 §5.6.4).
func (c *Chunked) quoted(b byte) error {
	switch {
	case c.state == stExtQuotedPair:
		if chars[b]&cValue == 0 {
			return errChunkExt
		}
		c.state = stExtQuoted
	case b == '"':
		c.state = stExtAfterQuoted
	case b == '\\':
		c.state = stExtQuotedPair
	case chars[b]&cQdtext == 0:
		return errChunkExt
	}
	return nil
}

// trailer handles one byte of the trailer section (RFC 9112 §7.1.2),
// which has the syntax of a header section: field lines, then CRLF.
func (c *Chunked) trailer(b byte) error {
	switch c.state {
	case stTrailerStart:
		switch {
		case b == '\r':
			c.state = stFinalLF
		case isTchar(b):
			c.state = stTrailerName
		case isWS(b):
			return errObsFold
		case b == ':':
			return errEmptyName
		case b == '\n':
			return errBareLF
		default:
			return errFieldNameByte
		}
	case stTrailerName:
		switch {
		case b == ':':
			c.state = stTrailerValue
		case !isTchar(b):
			return nameError(b)
		}
	case stTrailerValue:
		switch {
		case b == '\r':
			c.state = stTrailerLF
		case b == '\n':
			return errBareLF
		case chars[b]&cValue == 0:
			return errFieldValueByte
		}
	case stTrailerLF:
		if b != '\n' {
			return errBareCR
		}
		c.state = stTrailerStart
	case stFinalLF:
		if b != '\n' {
			return errBareCR
		}
		c.state = stDone
	}
	return nil
}

func unhex(b byte) byte {
	switch {
	case b <= '9':
		return b - '0'
	case b >= 'a':
		return b - 'a' + 10
	}
	return b - 'A' + 10
}

// AppendChunk appends data framed as one chunk of a chunked body.
func AppendChunk(dst, data []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(data)), 16)
	dst = append(dst, "\r\n"...)
	dst = append(dst, data...)
	return append(dst, "\r\n"...)
}

// AppendLastChunk appends the end of a chunked body: the last chunk, the
// trailer fields (name, value), the final CRLF.
func AppendLastChunk(dst []byte, trailers [][2]string) []byte {
	dst = append(dst, "0\r\n"...)
	for _, f := range trailers {
		dst = append(dst, f[0]...)
		dst = append(dst, ": "...)
		dst = append(dst, f[1]...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// TrailerSection reads the trailer fields out of a chunked body's last
// framing bytes, as Chunked consumed them after the last payload (the
// CRLF that ends it, the last chunk's line, the trailer lines, the final
// CRLF); Chunked has checked their syntax. Values are trimmed of OWS.
func TrailerSection(framing []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func(name, value []byte) bool) {
		rest := bytes.TrimPrefix(framing, []byte("\r\n"))
		_, rest, _ = bytes.Cut(rest, []byte("\r\n")) // the last chunk's line
		for {
			line, more, ok := bytes.Cut(rest, []byte("\r\n"))
			if !ok || len(line) == 0 {
				return
			}
			rest = more
			name, value, _ := bytes.Cut(line, []byte(":"))
			if !yield(name, bytes.Trim(value, " \t")) {
				return
			}
		}
	}
}
