package keys

import (
	"encoding/binary"
	"errors"
	"unicode"
	"unicode/utf8"
)

// The body:FIELD rule reads its key with a scanner of its own rather than a
// general JSON library, for three reasons: a recursive validator lets a body
// of '[' exhaust the goroutine stack; a library that stops at the first
// match routes {"id":"1","id":"2"} by "1" where encoding/json keeps "2"; and
// the rule must refuse what a shard could read two ways (DESIGN.md §4,
// "A key is read the way the shard will read it"). The scanner is one state
// machine over the bytes with an explicit stack of one bit per level.

// Refusals of jsonKey, told apart so that the caller can answer each one.
var (
	// errJSONInvalid: the body is not one JSON value as encoding/json
	// accepts it (json.Valid).
	errJSONInvalid = errors.New("request body is not valid JSON")
	// errJSONTooDeep: objects and arrays nest deeper than allowed. The scan
	// stops there, so the rest of the body is not known to be valid.
	errJSONTooDeep = errors.New("request body nests JSON too deeply")
	// errJSONAmbiguous: an object along the path names the field twice, or
	// holds a name that encoding/json's struct decoder would take for the
	// field while a map decoder would not.
	errJSONAmbiguous = errors.New("ambiguous shard key")
	// errJSONBadKey: the value at the path cannot be a key as written: a
	// string that is not valid Unicode, or a number that is not an integer
	// every decoder reads the same way.
	errJSONBadKey = errors.New("invalid shard key")
)

// jsonDepthLimit is encoding/json's own nesting limit (maxNestingDepth in
// its scanner): deeper documents are not valid JSON to Go, whatever the
// configured depth.
const jsonDepthLimit = 10000

// jsonMaxSafeInt is 2^53, the largest integer magnitude up to which every
// integer is exact in an IEEE 754 double, i.e. read alike by JavaScript, by
// float64 decoders and by integer decoders.
const jsonMaxSafeInt = "9007199254740992"

// jsonKey returns the value at path (the rule's dotted field split on '.',
// each segment an object member name, or a non-negative decimal array index
// when the value there is an array) in body.
//
// The whole body must be one JSON value that json.Valid accepts, else
// errJSONInvalid (an empty body included). Objects and arrays may nest
// maxDepth levels (the top-level value is level 1; maxDepth is taken as at
// least 1 and at most encoding/json's 10000), else errJSONTooDeep. In every
// object the path descends through, the member naming the next segment must
// appear once and be spelled exactly as the segment after unescaping; a
// second one, or another name that encoding/json's struct decoder would take
// for it (a case-folded variant such as "ID" or "\u212a" for "k", or one that
// only equals it once invalid UTF-8 is replaced by U+FFFD), is
// errJSONAmbiguous, whatever the values. Names in other objects do not
// matter.
//
// A string at the path yields its unescaped bytes, which must be valid UTF-8
// without a lone surrogate escape (else errJSONBadKey); the empty string
// yields no key. A number yields its text if it is an integer (no fraction,
// no exponent) of magnitude at most 2^53, except -0, which JavaScript reads
// as 0 but Go as the text "-0"; any other number is errJSONBadKey (send such
// keys as strings). null, true, false, an object, an array, or a path that
// does not exist (a missing member, an index out of range or not written as
// a canonical decimal, a scalar where the path goes on) yield no key: nil and
// no error.
//
// The body is read once, to its end, so that a duplicate after the key and a
// syntax error anywhere are seen. A refusal takes precedence in the order
// errJSONInvalid or errJSONTooDeep (whichever the scan meets first),
// errJSONAmbiguous, errJSONBadKey. The key is appended to dst[:0]; nothing
// else is allocated unless maxDepth exceeds 256.
func jsonKey(body []byte, path []string, maxDepth int, dst []byte) (key []byte, err error) {
	maxDepth = min(max(maxDepth, 1), jsonDepthLimit)
	s := jsonScan{body: body, path: path, maxDepth: maxDepth, dst: dst[:0]}
	if maxDepth > 64*len(s.small) {
		s.big = make([]uint64, (maxDepth+63)/64)
	}
	if err := s.run(); err != nil {
		return nil, err
	}
	switch {
	case s.ambiguous:
		return nil, errJSONAmbiguous
	case s.bad:
		return nil, errJSONBadKey
	case s.found:
		return s.dst, nil
	}
	return nil, nil
}

// jsonRole says what a value about to be read is to the path.
type jsonRole uint8

const (
	jsonOff   jsonRole = iota // not on the path
	jsonStep                  // the value at a proper prefix of the path: a container here is descended
	jsonAtKey                 // the value at the whole path: the key
)

// jsonScan is the state of one jsonKey call. Containers at depths
// 1..pathLevel are the ones the path descends through; only the innermost of
// them can still be looking for its child on the path, since the scan
// descends into that child as soon as it starts.
type jsonScan struct {
	body     []byte
	pos      int
	path     []string
	depth    int
	maxDepth int
	// Bit d-1 is set when the container at depth d is an object: in small
	// (held here so that it needs no allocation) up to 256 levels, else in big.
	small [4]uint64
	big   []uint64

	pathLevel int  // containers at depths 1..pathLevel are on the path
	reached   bool // the innermost path container's child on the path has started
	index     int  // elements started so far in the innermost path container (an array)
	want      int  // the index it looks for, or -1

	dst       []byte // the key, once found
	found     bool
	ambiguous bool
	bad       bool
}

// run scans the whole body. It returns errJSONInvalid or errJSONTooDeep;
// other findings are left in s.
func (s *jsonScan) run() error {
	role := jsonStep
	if len(s.path) == 0 {
		role = jsonAtKey
	}
	for {
		complete, err := s.value(role)
		if err != nil {
			return err
		}
		if complete {
			if more, err := s.close(); err != nil || !more {
				return err
			}
		}
		// A member or an element starts.
		if s.inObject() {
			var ok bool
			if role, ok = s.member(); !ok {
				return errJSONInvalid
			}
		} else {
			role = s.element()
		}
	}
}

// value reads a scalar, or opens a container. It reports whether the value
// is complete: a scalar or an empty container, not one with content to read.
func (s *jsonScan) value(role jsonRole) (complete bool, err error) {
	c, ok := s.skipSpace()
	switch {
	case !ok:
		return false, errJSONInvalid
	case c == '{' || c == '[':
		if s.depth == s.maxDepth {
			return false, errJSONTooDeep
		}
		s.push(c == '{', role)
		s.pos++
		if c, ok = s.skipSpace(); ok && (c == '}' && s.inObject() || c == ']' && !s.inObject()) {
			s.pos++
			s.pop()
			return true, nil
		}
		return false, nil
	case c == '"':
		if role == jsonAtKey {
			ok = s.keyString()
		} else {
			ok = s.skipString()
		}
	case c == '-' || c >= '0' && c <= '9':
		ok = s.number(role)
	case c == 't':
		ok = s.literal("true")
	case c == 'f':
		ok = s.literal("false")
	case c == 'n':
		ok = s.literal("null")
	default:
		ok = false
	}
	if !ok {
		return false, errJSONInvalid
	}
	return true, nil
}

// close moves on after a complete value: it closes containers until a ','
// says that a member or an element follows (more), or until the top-level
// value has ended, after which only white space may follow.
func (s *jsonScan) close() (more bool, err error) {
	for s.depth > 0 {
		c, ok := s.skipSpace()
		if !ok {
			return false, errJSONInvalid
		}
		s.pos++
		if c == ',' {
			return true, nil
		}
		if c != '}' && c != ']' || (c == '}') != s.inObject() {
			return false, errJSONInvalid
		}
		s.pop()
	}
	if _, trailing := s.skipSpace(); trailing {
		return false, errJSONInvalid
	}
	return false, nil
}

// skipSpace moves past JSON white space and returns the byte there, or false
// at the end of the body.
func (s *jsonScan) skipSpace() (byte, bool) {
	b := s.body
	for i := s.pos; i < len(b); i++ {
		if c := b[i]; c > ' ' || c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			s.pos = i
			return c, true
		}
	}
	s.pos = len(b)
	return 0, false
}

func (s *jsonScan) inObject() bool {
	d := s.depth - 1
	return *s.kindWord(d)&(1<<(d&63)) != 0
}

func (s *jsonScan) kindWord(d int) *uint64 {
	if s.big != nil {
		return &s.big[d>>6]
	}
	return &s.small[d>>6]
}

// push opens a container; the caller has checked the depth.
func (s *jsonScan) push(object bool, role jsonRole) {
	d := s.depth
	s.depth++
	if w := s.kindWord(d); object {
		*w |= 1 << (d & 63)
	} else {
		*w &^= 1 << (d & 63)
	}
	if role != jsonStep {
		return
	}
	s.pathLevel, s.reached, s.index, s.want = s.depth, false, 0, -1
	if !object {
		s.want = jsonIndex(s.path[s.depth-1])
	}
}

// pop closes the innermost container. When it was on the path, its parent
// is the innermost path container again, and has already met its child.
func (s *jsonScan) pop() {
	if s.depth == s.pathLevel {
		s.pathLevel--
		s.reached = true
	}
	s.depth--
}

// child returns the role of the innermost path container's child on the
// path, which is starting.
func (s *jsonScan) child() jsonRole {
	s.reached = true
	if s.pathLevel == len(s.path) {
		return jsonAtKey
	}
	return jsonStep
}

// element returns the role of the array element starting at s.pos.
func (s *jsonScan) element() jsonRole {
	if s.depth != s.pathLevel || s.reached {
		return jsonOff
	}
	i := s.index
	s.index++
	if i == s.want {
		return s.child()
	}
	return jsonOff
}

// member reads a member name and its ':' and returns the role of the value
// that follows.
func (s *jsonScan) member() (jsonRole, bool) {
	if c, ok := s.skipSpace(); !ok || c != '"' {
		return jsonOff, false
	}
	if s.depth != s.pathLevel {
		return jsonOff, s.skipString() && s.colon()
	}
	exact, other, ok := s.name(s.path[s.depth-1])
	if !ok || !s.colon() {
		return jsonOff, false
	}
	switch {
	case exact && !s.reached:
		return s.child(), true
	case exact || other:
		// Nothing on the path matters any more: the answer is this refusal
		// unless the body turns out not to be JSON.
		s.ambiguous = true
		s.pathLevel = 0
	}
	return jsonOff, true
}

// colon moves past the ':' after a member name.
func (s *jsonScan) colon() bool {
	if c, ok := s.skipSpace(); !ok || c != ':' {
		return false
	}
	s.pos++
	return true
}

// jsonPlain tells the string bytes that need no attention: not '"', not '\\'
// and not a control character.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipString moves past the string whose opening quote is at s.pos,
// checking only what json.Valid checks: escapes and control characters.
func (s *jsonScan) skipString() bool {
	b := s.body
	i := s.pos + 1
	for {
		for i+8 <= len(b) && !jsonSpecial8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && jsonPlain[b[i]] {
			i++
		}
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '"':
			s.pos = i + 1
			return true
		case '\\':
			_, n, _ := jsonEscape(b, i)
			if n == 0 {
				return false
			}
			i += n
		default:
			return false
		}
	}
}

// jsonSpecial8 tells whether any of the eight bytes in x is '"', '\\' or a
// control character: the bytes jsonPlain does not pass. Long strings are
// skipped a word at a time.
func jsonSpecial8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote := x ^ (ones * '"')
	backslash := x ^ (ones * '\\')
	return ((quote-ones)&^quote|(backslash-ones)&^backslash|(x-ones*0x20)&^x)&highs != 0
}

// keyString appends the string at s.pos, unescaped, to s.dst: it is the key.
func (s *jsonScan) keyString() bool {
	b := s.body
	d := s.dst[:0]
	clean := true
	i := s.pos + 1
	for {
		if i >= len(b) {
			return false
		}
		c := b[i]
		switch {
		case c == '"':
			s.pos = i + 1
			s.dst = d
			switch {
			case !clean:
				s.bad = true
			case len(d) > 0:
				s.found = true
			}
			return true
		case c < 0x20:
			return false
		case c == '\\':
			r, n, lone := jsonEscape(b, i)
			if n == 0 {
				return false
			}
			clean = clean && !lone
			d = utf8.AppendRune(d, r)
			i += n
		case c < utf8.RuneSelf:
			d = append(d, c)
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			clean = clean && !(r == utf8.RuneError && n == 1)
			d = append(d, b[i:i+n]...)
			i += n
		}
	}
}

// name compares the member name at s.pos with want as encoding/json reads
// it: unescaped, invalid UTF-8 and lone surrogates replaced by U+FFFD.
// exact reports a name spelled exactly as want without any replacement;
// other, a name that is not but that the struct decoder would still take
// for want: equal once replaced, or equal under its case folding.
func (s *jsonScan) name(want string) (exact, other, ok bool) {
	b := s.body
	i := s.pos + 1
	j, k := 0, 0 // bytes of want compared exactly, and under folding
	same, folds, clean := true, true, true
	for {
		if i >= len(b) {
			return false, false, false
		}
		c := b[i]
		var r rune
		switch {
		case c == '"':
			s.pos = i + 1
			same = same && j == len(want)
			folds = folds && k == len(want)
			return same && clean, folds && !(same && clean), true
		case c < 0x20:
			return false, false, false
		case c == '\\':
			var n int
			var lone bool
			if r, n, lone = jsonEscape(b, i); n == 0 {
				return false, false, false
			}
			clean = clean && !lone
			i += n
		case c < utf8.RuneSelf:
			r = rune(c)
			i++
		default:
			var n int
			r, n = utf8.DecodeRune(b[i:])
			clean = clean && !(r == utf8.RuneError && n == 1)
			i += n
		}
		if !same && !folds {
			continue // only validating the rest
		}
		if same {
			var buf [utf8.UTFMax]byte
			n := utf8.EncodeRune(buf[:], r)
			same = j+n <= len(want) && string(buf[:n]) == want[j:j+n]
			j += n
		}
		if folds {
			if k >= len(want) {
				folds = false
				continue
			}
			wr, n := utf8.DecodeRuneInString(want[k:])
			k += n
			folds = r == wr || jsonFoldRune(r) == jsonFoldRune(wr)
		}
	}
}

// jsonFoldRune folds r as encoding/json's foldName does when it matches a
// member name to a struct field: ASCII letters to upper case, any other rune
// to the smallest rune of its simple case-folding orbit (so the Kelvin sign
// U+212A folds as 'k' and U+017F as 's').
func jsonFoldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			r -= 'a' - 'A'
		}
		return r
	}
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// jsonEscape reads the escape at b[i] ('\\') and returns the rune it stands
// for as encoding/json decodes it, the number of bytes read (0 if it is not
// a JSON escape), and whether it is a surrogate escape without its other
// half, which encoding/json replaces by U+FFFD. A surrogate pair is read as
// one rune.
func jsonEscape(b []byte, i int) (r rune, n int, lone bool) {
	if i+1 >= len(b) {
		return 0, 0, false
	}
	switch b[i+1] {
	case '"', '\\', '/':
		return rune(b[i+1]), 2, false
	case 'b':
		return '\b', 2, false
	case 'f':
		return '\f', 2, false
	case 'n':
		return '\n', 2, false
	case 'r':
		return '\r', 2, false
	case 't':
		return '\t', 2, false
	case 'u':
		r = jsonHex4(b, i+2)
		switch {
		case r < 0:
			return 0, 0, false
		case r < 0xD800 || r >= 0xE000:
			return r, 6, false
		case r < 0xDC00 && i+7 < len(b) && b[i+6] == '\\' && b[i+7] == 'u':
			if r2 := jsonHex4(b, i+8); r2 >= 0xDC00 && r2 < 0xE000 {
				return 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00), 12, false
			}
		}
		// A lone half; what follows, if anything, is read on its own.
		return utf8.RuneError, 6, true
	}
	return 0, 0, false
}

// jsonHex4 returns the value of the four hex digits at b[i:], or -1.
func jsonHex4(b []byte, i int) rune {
	if i+4 > len(b) {
		return -1
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// number moves past the number at s.pos; when it is the key, it is kept if
// every decoder reads it as the same integer.
func (s *jsonScan) number(role jsonRole) bool {
	b := s.body
	start := s.pos
	i := start
	if b[i] == '-' {
		i++
	}
	digits := i
	switch {
	case i == len(b):
		return false
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = jsonDigits(b, i+1)
	default:
		return false
	}
	intEnd := i
	if i < len(b) && b[i] == '.' {
		if i = jsonDigits(b, i+1); i == intEnd+1 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		e := i
		if i = jsonDigits(b, i); i == e {
			return false
		}
	}
	s.pos = i
	if role != jsonAtKey {
		return true
	}
	mag := b[digits:intEnd]
	switch {
	case i != intEnd, // a fraction or an exponent
		len(mag) > len(jsonMaxSafeInt),
		len(mag) == len(jsonMaxSafeInt) && string(mag) > jsonMaxSafeInt,
		digits > start && string(mag) == "0": // -0
		s.bad = true
	default:
		s.dst = append(s.dst[:0], b[start:i]...)
		s.found = true
	}
	return true
}

func jsonDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// literal moves past true, false or null.
func (s *jsonScan) literal(lit string) bool {
	if len(s.body)-s.pos < len(lit) || string(s.body[s.pos:s.pos+len(lit)]) != lit {
		return false
	}
	s.pos += len(lit)
	return true
}

// jsonIndex returns the array index seg spells as a canonical decimal ("0",
// "17", not "017", "+1" or "-1"), or -1.
func jsonIndex(seg string) int {
	if seg == "" || len(seg) > 18 || seg[0] == '0' && len(seg) > 1 {
		return -1
	}
	n := 0
	for i := 0; i < len(seg); i++ {
		if seg[i] < '0' || seg[i] > '9' {
			return -1
		}
		n = n*10 + int(seg[i]-'0')
	}
	return n
}
