package h1

import "testing"

// TestWordScans checks the eight-bytes-at-a-time scans against the byte
// table: every byte value at every position of words and tails.
func TestWordScans(t *testing.T) {
	naive := func(buf []byte, i int, class uint16) int {
		for i < len(buf) && chars[buf[i]]&class != 0 {
			i++
		}
		return i
	}
	for _, size := range []int{7, 8, 9, 16, 23} {
		for pos := range size {
			for b := range 256 {
				buf := make([]byte, size)
				for k := range buf {
					buf[k] = 'a'
				}
				buf[pos] = byte(b)
				for start := range 3 {
					if got, want := skipValue(buf, start), naive(buf, start, cValue); got != want {
						t.Fatalf("skipValue(%q, %d): got %d, want %d", buf, start, got, want)
					}
					if got, want := skipTarget(buf, start), naive(buf, start, cTarget); got != want {
						t.Fatalf("skipTarget(%q, %d): got %d, want %d", buf, start, got, want)
					}
				}
			}
		}
	}
}

// TestCharClasses spot-checks the table against the RFC definitions.
func TestCharClasses(t *testing.T) {
	for c := range 256 {
		b := byte(c)
		tchar := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c < 0x80 && containsByte("!#$%&'*+-.^_`|~", b)
		value := c == '\t' || c >= 0x20 && c != 0x7f
		target := c > 0x20 && c < 0x7f && c != '#'
		if isTchar(b) != tchar || (chars[b]&cValue != 0) != value || (chars[b]&cTarget != 0) != target {
			t.Errorf("byte %#x: got tchar=%t value=%t target=%t, want %t %t %t",
				c, isTchar(b), chars[b]&cValue != 0, chars[b]&cTarget != 0, tchar, value, target)
		}
	}
}

func containsByte(s string, b byte) bool {
	for i := range len(s) {
		if s[i] == b {
			return true
		}
	}
	return false
}
