package ring

import (
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// integerKey is the contract's integer rule written as a regexp, independent
// of decimalMod's byte loop.
var integerKey = regexp.MustCompile(`^-?[0-9]+$`)

// wantModulus computes the owner with math/big for integers and xxhash
// otherwise, the two halves of the public formula.
func wantModulus(key []byte, n uint64) int {
	if !integerKey.Match(key) {
		return int(xxhash.Sum64(key) % n)
	}
	k, ok := new(big.Int).SetString(string(key), 10)
	if !ok {
		panic("math/big rejected " + strconv.Quote(string(key)))
	}
	// Mod is Euclidean: the result is non-negative for a positive modulus.
	return int(new(big.Int).Mod(k, new(big.Int).SetUint64(n)).Int64())
}

func TestModulusPlacement(t *testing.T) {
	hashed := func(key string) int { return int(xxhash.Sum64([]byte(key)) % 3) }
	tests := []struct {
		key  string
		want int
	}{
		{"42", 0},
		{"43", 1},
		{"44", 2},
		{"0", 0},
		{"-1", 2},
		{"-2", 1},
		{"-3", 0},
		{"-0", 0},
		{"007", 1},
		{"-007", 2},
		{"18446744073709551615", 0}, // MaxUint64 = 3 * 6148914691236517205
		{"18446744073709551616", 1}, // one past uint64
		{"-9223372036854775808", 1}, // MinInt64
		{"12345678901234567890123", wantModulus([]byte("12345678901234567890123"), 3)},
		{"-12345678901234567890124", wantModulus([]byte("-12345678901234567890124"), 3)},
		{"+5", hashed("+5")},
		{"", hashed("")},
		{"-", hashed("-")},
		{"--1", hashed("--1")},
		{"1-", hashed("1-")},
		{" 42", hashed(" 42")},
		{"42 ", hashed("42 ")},
		{"4_2", hashed("4_2")},
		{"4.2", hashed("4.2")},
		{"1e3", hashed("1e3")},
		{"0x2a", hashed("0x2a")},
		{"٤٢", hashed("٤٢")}, // Arabic-Indic digits are not ASCII digits
		{"user-42", hashed("user-42")},
	}
	r := mustNew(t, Config{Algorithm: Modulus}, shardNames(3))
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.key), func(t *testing.T) {
			if got := r.Owner([]byte(tt.key)); got != tt.want {
				t.Errorf("Owner(%q) = %d, want %d", tt.key, got, tt.want)
			}
		})
	}
}

// TestModulusLongIntegers covers the lazy reduction in decimalMod: keys long
// enough to be reduced several times, and moduli up to the largest N, where
// a remainder times ten is furthest from the overflow bound.
func TestModulusLongIntegers(t *testing.T) {
	keys := []string{
		"9",
		"1844674407370955161",
		"1844674407370955162",
		"18446744073709551615",
		strings.Repeat("9", 100),
		"-" + strings.Repeat("9", 100),
		"1" + strings.Repeat("0", 77),
		"-" + strings.Repeat("1234567890", 20),
	}
	moduli := []uint64{1, 2, 3, 10, 97, 256, 1 << 20, math.MaxInt32 - 1, math.MaxInt32}
	for _, key := range keys {
		for _, n := range moduli {
			t.Run(key[:min(len(key), 24)]+"/"+strconv.FormatUint(n, 10), func(t *testing.T) {
				want := wantModulus([]byte(key), n)
				if got := (modulusRing{n: n}).Owner([]byte(key)); got != want {
					t.Errorf("Owner(%q) mod %d = %d, want %d", key, n, got, want)
				}
			})
		}
	}
}

func FuzzModulus(f *testing.F) {
	f.Add([]byte("42"), uint32(3))
	f.Add([]byte("-1"), uint32(3))
	f.Add([]byte("12345678901234567890123"), uint32(3))
	f.Add([]byte("-"+strings.Repeat("9", 60)), uint32(math.MaxInt32))
	f.Add([]byte("+5"), uint32(7))
	f.Add([]byte(""), uint32(1))
	f.Add([]byte("007"), uint32(256))
	f.Fuzz(func(t *testing.T, key []byte, n uint32) {
		// Any N the package accepts, without building a names list that big.
		wide := modulusRing{n: uint64(n%maxShards) + 1}
		if got, want := wide.Owner(key), wantModulus(key, wide.n); got != want {
			t.Errorf("Owner(%q) mod %d = %d, want %d", key, wide.n, got, want)
		}
		// The same through New, on the sizes a StatefulSet really has.
		small := int(n%64) + 1
		r := mustNew(t, Config{Algorithm: Modulus}, shardNames(small))
		got := r.Owner(key)
		if got < 0 || got >= small {
			t.Fatalf("Owner(%q) = %d, want in [0, %d)", key, got, small)
		}
		if want := wantModulus(key, uint64(small)); got != want {
			t.Errorf("Owner(%q) with %d shards = %d, want %d", key, small, got, want)
		}
	})
}
