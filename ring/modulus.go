package ring

import (
	"math"

	"github.com/cespare/xxhash/v2"
)

// modulusRing routes integer keys to "k mod N" and every other key to
// xxhash64(k) mod N. It is a single integer, so it is immutable and safe for
// concurrent use.
//
// A key is an integer when it is an optional '-' followed by one or more
// ASCII digits and nothing else, of any length. So "007" is 7 and "-0" is 0,
// while "+5", " 5", "5.0", "1e3", "", and "-" alone are not integers and are
// hashed. The rule is deliberately narrower than strconv or math/big: a client
// in any language can apply it without a parser, and every spelling that
// reaches a different code path is visibly not a plain decimal number.
type modulusRing struct {
	n uint64
}

var _ Ring = modulusRing{}

func newModulus(n int) modulusRing {
	return modulusRing{n: uint64(n)}
}

func (r modulusRing) Owner(key []byte) int {
	if rem, ok := decimalMod(key, r.n); ok {
		return int(rem)
	}
	return int(xxhash.Sum64(key) % r.n)
}

func (r modulusRing) Len() int { return int(r.n) }

// reduceAbove is the largest accumulator that can take one more digit
// without overflowing uint64.
const reduceAbove = (math.MaxUint64 - 9) / 10

// decimalMod returns the non-negative remainder of the integer spelled by key
// modulo n, and false if key is not an integer (see modulusRing). Keys of any
// length work without allocating: the accumulator is reduced mod n only when
// another digit could overflow it, which gives the same result as reducing
// after every digit but divides once per ~19 digits instead of once per digit.
func decimalMod(key []byte, n uint64) (uint64, bool) {
	digits, neg := key, false
	if len(digits) > 0 && digits[0] == '-' {
		digits, neg = digits[1:], true
	}
	if len(digits) == 0 {
		return 0, false
	}
	var r uint64
	for _, c := range digits {
		d := uint64(c - '0') // bytes below '0' wrap to large values
		if d > 9 {
			return 0, false
		}
		if r > reduceAbove {
			r %= n
		}
		r = r*10 + d
	}
	r %= n
	if neg && r != 0 {
		r = n - r
	}
	return r, true
}
