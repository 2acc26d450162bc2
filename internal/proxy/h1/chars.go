package h1

import "encoding/binary"

// Byte classes, one table so that each byte of a head costs one load.
const (
	cTchar   uint16 = 1 << iota // tchar (RFC 9110 §5.6.2)
	cValue                      // field-vchar, SP or HTAB: allowed in a field value (RFC 9110 §5.5)
	cTarget                     // allowed in a request-target: VCHAR except '#' (RFC 9112 §3.2)
	cHex                        // HEXDIG
	cDigit                      // DIGIT
	cRegName                    // unreserved / sub-delims: reg-name without pct-encoded (RFC 3986 §3.2.2)
	cScheme                     // ALPHA / DIGIT / "+" / "-" / "." (RFC 3986 §3.1)
	cQdtext                     // qdtext (RFC 9110 §5.6.4)
)

var chars = buildChars()

func buildChars() (t [256]uint16) {
	set := func(class uint16, s string) {
		for i := 0; i < len(s); i++ {
			t[s[i]] |= class
		}
	}
	const (
		alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		digit = "0123456789"
	)
	set(cTchar, alpha+digit+"!#$%&'*+-.^_`|~")
	set(cDigit, digit)
	set(cHex, digit+"ABCDEFabcdef")
	set(cRegName, alpha+digit+"-._~"+"!$&'()*+,;=")
	set(cScheme, alpha+digit+"+-.")
	for c := 0x21; c < 0x7f; c++ {
		t[c] |= cValue | cTarget | cQdtext
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] |= cValue | cQdtext
	}
	t[' '] |= cValue | cQdtext
	t['\t'] |= cValue | cQdtext
	t['#'] &^= cTarget
	t['"'] &^= cQdtext
	t['\\'] &^= cQdtext
	return t
}

func isTchar(c byte) bool { return chars[c]&cTchar != 0 }
func isDigit(c byte) bool { return c-'0' < 10 }
func isWS(c byte) bool    { return c == ' ' || c == '\t' }

// lower folds an ASCII letter to lower case; HTTP names and tokens are
// case-insensitive ASCII, never Unicode.
func lower(c byte) byte {
	if c-'A' < 26 {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold reports whether b equals the lower-case ASCII string s,
// ignoring the case of b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// EqualFold reports whether b and s are equal ignoring ASCII case, without
// allocating: the one comparison of field names and tokens the proxy
// uses outside this package.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

// equalFoldBytes is equalFold for two byte slices.
func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// trimOWS removes leading and trailing SP and HTAB.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && isWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// Eight bytes at a time: the scans below skip ordinary words with a few
// arithmetic operations and fall back to the byte table on the first word
// that holds a byte of interest (Hacker's Delight, "find a byte less than
// n"; exact for the question "is there one?").
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// hasLess reports whether some byte of x is below n (n <= 128).
func hasLess(x, n uint64) bool { return (x-ones*n)&^x&highs != 0 }

// hasByte reports whether some byte of x equals b.
func hasByte(x uint64, b byte) bool { return hasLess(x^(ones*uint64(b)), 1) }

// skipValue returns the index of the first byte at or after i that cannot
// appear in a field value: usually the CR ending the line.
func skipValue(buf []byte, i int) int {
	for ; i+8 <= len(buf); i += 8 {
		x := binary.LittleEndian.Uint64(buf[i:])
		if hasLess(x, 0x20) || hasByte(x, 0x7f) {
			break
		}
	}
	for i < len(buf) && chars[buf[i]]&cValue != 0 {
		i++
	}
	return i
}

// skipTarget returns the index of the first byte at or after i that
// cannot appear in a request-target: usually the SP before the version.
func skipTarget(buf []byte, i int) int {
	for ; i+8 <= len(buf); i += 8 {
		x := binary.LittleEndian.Uint64(buf[i:])
		if hasLess(x, 0x21) || x&highs != 0 || hasByte(x, 0x7f) || hasByte(x, '#') {
			break
		}
	}
	for i < len(buf) && chars[buf[i]]&cTarget != 0 {
		i++
	}
	return i
}
