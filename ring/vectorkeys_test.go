package ring

import (
	"math/big"
	"strconv"
	"strings"
)

// This file chooses the keys of testdata/vectors.json. It runs only under
// -update; the file, not this code, is what the tests trust, so changing the
// choice of keys changes no promise. Keys are chosen for what a client's
// reimplementation could get wrong: xxhash64's length branches, bytes that
// a JSON or HTTP layer might rewrite, UTF-8 it might normalize, and for
// modulus every spelling that is or almost is an integer.

// vectorSeed starts the keys' pseudo-random sequence, so that -update on any
// machine writes the same file. Set i (in Algorithms() order) over n shards
// starts splitmix64 at vectorSeed + i<<32 + n.
const vectorSeed uint64 = 0x7e57_7ec7_0125_eed1

// Per set: at least minVectors keys, of which longKeys are 1 to 4 KiB
// (fewer at N = 1000, where the names already take room).
const (
	minVectors   = 1000
	targetKeys   = 1100
	longKeys     = 12
	longKeysWide = 4
)

// keyGen collects distinct, non-empty keys from a splitmix64 stream.
type keyGen struct {
	state uint64
	seen  map[string]bool
	keys  []string
}

func newKeyGen(seed uint64) *keyGen {
	return &keyGen{state: seed, seen: make(map[string]bool)}
}

func (g *keyGen) add(keys ...string) {
	for _, k := range keys {
		if k != "" && !g.seen[k] {
			g.seen[k] = true
			g.keys = append(g.keys, k)
		}
	}
}

func (g *keyGen) uint64() uint64 {
	var v uint64
	g.state, v = splitmix64(g.state)
	return v
}

// intn returns a number in [0, n); the modulo bias is irrelevant here.
func (g *keyGen) intn(n int) int { return int(g.uint64() % uint64(n)) }

const printable = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"

func (g *keyGen) from(alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[g.intn(len(alphabet))]
	}
	return string(b)
}

func (g *keyGen) ascii(n int) string  { return g.from(printable, n) }
func (g *keyGen) digits(n int) string { return g.from("0123456789", n) }

func (g *keyGen) raw(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.uint64())
	}
	return string(b)
}

// trickyRunes are code points that text layers like to rewrite: combining
// marks, joiners, byte-order and replacement marks, line separators.
var trickyRunes = []rune{0, '\u0301', '\u200b', '\u200d', '\u2028', '\ufeff', '\ufffd', '\uffff', '\U0010ffff'}

// utf8Text returns valid UTF-8 of at least n bytes, mixing every encoded
// length (1 to 4 bytes).
func (g *keyGen) utf8Text(n int) string {
	var b strings.Builder
	for b.Len() < n {
		var r rune
		switch g.intn(6) {
		case 0:
			r = rune(printable[g.intn(len(printable))])
		case 1:
			r = 0x80 + rune(g.intn(0x800-0x80))
		case 2:
			r = 0x800 + rune(g.intn(0x10000-0x800))
			if r >= 0xd800 && r <= 0xdfff { // surrogates are not UTF-8
				r -= 0x800
			}
		case 3:
			r = 0x10000 + rune(g.intn(0x110000-0x10000))
		case 4:
			r = trickyRunes[g.intn(len(trickyRunes))]
		default:
			r = []rune("éüßжΩ日本語한국😀")[g.intn(11)]
		}
		b.WriteRune(r)
	}
	return b.String()
}

// integer returns a decimal integer of 1 to 40 digits, short ones likelier,
// sometimes negative and sometimes with leading zeros.
func (g *keyGen) integer() string {
	s := g.digits(1 + g.intn(1+g.intn(40)))
	if g.intn(8) == 0 {
		s = strings.Repeat("0", 1+g.intn(3)) + s
	}
	if g.intn(3) == 0 {
		s = "-" + s
	}
	return s
}

// notInteger returns an integer spoiled in one of the ways a number can be
// written that the modulus ring does not take as an integer.
func (g *keyGen) notInteger() string {
	s := g.integer()
	prefixes := []string{"+", " ", "\t", "0x", "--", "-+", "+-", "−", "."}
	suffixes := []string{".0", ".", "e3", "E-2", " ", "\n", "\x00", "-", "n", "L"}
	infixes := []string{"_", ",", ".", " ", "'", "e"}
	switch g.intn(3) {
	case 0:
		return prefixes[g.intn(len(prefixes))] + s
	case 1:
		return s + suffixes[g.intn(len(suffixes))]
	default:
		if len(s) < 2 {
			return s + "."
		}
		i := 1 + g.intn(len(s)-1)
		return s[:i] + infixes[g.intn(len(infixes))] + s[i:]
	}
}

// structured returns a key shaped like the ones services route by.
func (g *keyGen) structured() string {
	id := strconv.FormatUint(g.uint64()%1_000_000_000, 10)
	hexDigits := "0123456789abcdef"
	switch g.intn(6) {
	case 0:
		return "user-" + id
	case 1:
		return "acct:" + id
	case 2:
		return "tenant/" + id + "/orders/" + strconv.Itoa(g.intn(100000))
	case 3:
		return g.from(hexDigits, 8) + "-" + g.from(hexDigits, 4) + "-4" + g.from(hexDigits, 3) + "-" +
			g.from("89ab", 1) + g.from(hexDigits, 3) + "-" + g.from(hexDigits, 12)
	case 4:
		return g.from("abcdefghijklmnopqrstuvwxyz", 3+g.intn(8)) + "@example.com"
	default:
		return "session=" + g.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 22) + "=="
	}
}

// fixedKeys go into every set.
var fixedKeys = []string{
	// ASCII that URLs, forms and headers give meaning to.
	"0", "1", "42", "a", "A", "key", "account-42", "user:1234", "tenant/42/orders", "orders?id=7",
	"a b", " a", "a ", " ", "  ", "\t", "\n", "\r\n", "a\tb",
	"%", "%%", "%20", "%2F", "%2f", "%00", "a%2Fb", "%E2%82%AC", "+", "++", "a+b", "1+1", "100%",
	"#", "?", "&", "=", "a=b&c=d", ";", "'", "\"", "\\", "\\\\", "/", "//", ".", "..", "*",
	"\x00", "\x00\x00", "a\x00", "\x00a", "a\x00b", "42\x00", "\x7f", "\x1b[0m",
	printable, strings.ToUpper("Account-42"), "null", "true", "false", "undefined", "[]", "{}",
	"web-0", "web-1",
	// UTF-8 of every length, with no normalization: precomposed and
	// combining forms, case pairs and look-alikes are all different keys.
	"é", "e\u0301", "café", "cafe\u0301", "ß", "Straße", "STRASSE", "ü", "Ω", "ж", "İ", "ı", "K", "\u212a", "ﬁ", "Ａ",
	"日本語", "한국어", "中文键", "עברית", "العربية", "हिन्दी", "ไทย",
	"😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "\u200b", "\ufeffkey", "\u2028", "\u2029", "\ufffd",
	"\u0080", "\u07ff", "\u0800", "\uffff", "\U00010000", "\U0010ffff",
	// Bytes that are not UTF-8: overlong, surrogate, beyond U+10FFFF,
	// truncated, Latin-1. They travel as hex.
	"\xff", "\xfe", "\x80", "\xc0\x80", "\xc1\xbf", "\xed\xa0\x80", "\xed\xbf\xbf",
	"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xe6\x97", "caf\xe9", "\xef\xbb", "42\xff", "\xff42", "-1\x80",
	"\xe2\x82\xac\xff",
}

// modulusKeys are the integers and near-integers the modulus ring must
// tell apart, around n and around every width an implementation might use.
func modulusKeys(n int) []string {
	var keys []string
	signed := func(s string) { keys = append(keys, s, "-"+s, "0"+s, "-00"+s) }
	for _, v := range []int{0, 1, 2, 9, 10, n - 1, n, n + 1, 2*n - 1, 2 * n, 2*n + 1, 3 * n, 1000*n - 1, 1000 * n, 1000*n + 1, n * n} {
		if v >= 0 {
			signed(strconv.Itoa(v))
		}
	}
	for _, k := range []uint{31, 32, 53, 63, 64, 65, 127, 128, 256, 1024} {
		p := new(big.Int).Lsh(big.NewInt(1), k)
		for _, d := range []int64{-1, 0, 1} {
			s := new(big.Int).Add(p, big.NewInt(d)).String()
			keys = append(keys, s, "-"+s)
		}
	}
	for _, k := range []int{18, 19, 20, 38, 100, 309} {
		p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(k)), nil)
		for _, d := range []int64{-1, 0, 1} {
			s := new(big.Int).Add(p, big.NewInt(d)).String()
			keys = append(keys, s, "-"+s)
		}
	}
	// Around reduceAbove, where decimalMod first has to reduce.
	for d := range 10 {
		for _, prefix := range []string{"1844674407370955160", "1844674407370955161"} {
			keys = append(keys, prefix+strconv.Itoa(d), "-"+prefix+strconv.Itoa(d))
		}
	}
	keys = append(keys,
		"-0", "-00", "00", "000", "007", "-007", "0000000000000000000000000000000042",
		"-"+strings.Repeat("0", 40), strings.Repeat("9", 19), strings.Repeat("9", 20), strings.Repeat("9", 21),
		strings.Repeat("9", 40), "-"+strings.Repeat("9", 100), "1"+strings.Repeat("0", 64),
		// Not integers: the ring hashes them.
		"1.0", "1.", ".1", "0.0", "-0.0", "-1.5", "1e3", "1E3", "1e-3", "1e309",
		" 1", "1 ", "\t1", "1\n", "+1", "+0", "-+1", "+-1", "0x10", "0X10", "0x", "0b1", "0o7",
		"--1", "-", "--", "- 1", "1-", "1-1", "1_000", "1,000", "1'000",
		"١", "١٢٣", "٤٢", "१२३", "１", "１２３", "²", "½", "Ⅻ", "−1", "𝟏𝟐𝟑",
		"Infinity", "-Infinity", "NaN", "1/2", "1\x00", "\x001", "12a", "a12", "99999999999999999999.0",
	)
	return keys
}

// vectorKeys returns the keys of one set, in the order the file lists them.
func vectorKeys(alg Algorithm, n int, seed uint64) [][]byte {
	g := newKeyGen(seed)
	for b := range 256 { // every single byte, NUL, space, % and + among them
		g.add(string([]byte{byte(b)}))
	}
	for l := 2; l <= 96; l++ { // every length across xxhash64's 4, 8 and 32-byte steps
		g.add(g.ascii(l))
	}
	g.add(fixedKeys...)
	if alg == Modulus {
		g.add(modulusKeys(n)...)
	}
	long := longKeys
	if n >= 1000 {
		long = longKeysWide
	}
	for i := range long {
		size := 1024 + g.intn(3*1024+1)
		if i < 2 {
			size = []int{1024, 4096}[i]
		}
		switch i % 4 {
		case 0:
			g.add(g.ascii(size))
		case 1:
			s := g.utf8Text(size - 3) // runes of up to 4 bytes: at most size
			g.add(s + strings.Repeat("x", size-len(s)))
		case 2:
			g.add(g.digits(size))
		default:
			g.add("-000" + g.digits(size-4))
		}
	}
	for len(g.keys) < targetKeys {
		switch k := g.intn(20); {
		case k < 5:
			g.add(g.integer())
		case k < 9:
			g.add(g.ascii(1 + g.intn(40)))
		case k < 12:
			g.add(g.structured())
		case k < 16:
			g.add(g.utf8Text(1 + g.intn(24)))
		case k < 18:
			g.add(g.notInteger())
		default:
			g.add(g.raw(1 + g.intn(24)))
		}
	}
	keys := make([][]byte, len(g.keys))
	for i, k := range g.keys {
		keys[i] = []byte(k)
	}
	return keys
}
