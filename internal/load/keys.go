package load

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
)

// MaxKeys bounds N in uniform:N, zipf:S:N and seq:N, and the lines of a
// key file.
const MaxKeys = 1 << 40

// KeySource draws keys. Keys are numbered 0…Len()-1; Next returns the
// number of the next key and Append its text. A KeySource is not safe for
// concurrent use: the run draws every key from one goroutine (or under a
// lock), so that a seed gives the same sequence of keys every time.
type KeySource interface {
	// Next returns the number of the next key.
	Next() uint64
	// Append appends the text of key id to dst.
	Append(dst []byte, id uint64) []byte
	// Len is the number of distinct keys.
	Len() uint64
	// String is the source as --keys spells it.
	String() string
}

// ParseKeys parses a --keys value: uniform:N, zipf:S:N (S > 1), seq:N or
// file:PATH. The numeric sources' keys are the decimal numbers 0…N-1; seed
// seeds uniform and zipf.
func ParseKeys(spec string, seed uint64) (KeySource, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	switch kind {
	case "uniform":
		n, err := keyCount(spec, arg)
		if err != nil {
			return nil, err
		}
		return &uniformKeys{rng: rng, n: n}, nil
	case "seq":
		n, err := keyCount(spec, arg)
		if err != nil {
			return nil, err
		}
		return &seqKeys{n: n}, nil
	case "zipf":
		return parseZipf(spec, arg, rng)
	case "file":
		return readKeyFile(arg)
	}
	return nil, fmt.Errorf("--keys %q: unknown key source %q; want uniform:N, zipf:S:N (S > 1), seq:N or file:PATH", spec, kind)
}

func keyCount(spec, arg string) (uint64, error) {
	n, err := strconv.ParseUint(arg, 10, 64)
	if err != nil || n < 1 || n > MaxKeys {
		return 0, fmt.Errorf("--keys %q: N must be a whole number from 1 to %d, e.g. uniform:100000", spec, uint64(MaxKeys))
	}
	return n, nil
}

func parseZipf(spec, arg string, rng *rand.Rand) (KeySource, error) {
	sText, nText, ok := strings.Cut(arg, ":")
	if !ok {
		return nil, fmt.Errorf("--keys %q: want zipf:S:N, e.g. zipf:1.1:100000 (exponent S > 1, N keys)", spec)
	}
	s, err := strconv.ParseFloat(sText, 64)
	if err != nil || !(s > 1) || s > 100 {
		return nil, fmt.Errorf("--keys %q: the zipf exponent must be a number above 1 (and at most 100), e.g. zipf:1.1:100000", spec)
	}
	n, err := keyCount(spec, nText)
	if err != nil {
		return nil, err
	}
	return &zipfKeys{z: rand.NewZipf(rng, s, 1, n-1), s: s, n: n}, nil
}

// readKeyFile reads one key per line; blank lines are skipped.
func readKeyFile(path string) (KeySource, error) {
	if path == "" {
		return nil, fmt.Errorf("--keys file: want file:PATH, a file with one key per line")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--keys file:%s: %w", path, err)
	}
	defer f.Close()
	var keys [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			keys = append(keys, bytes.Clone(line))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--keys file:%s: %w (one key per line, each under 64 KiB)", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("--keys file:%s: the file holds no key; want one key per line", path)
	}
	return &fileKeys{path: path, keys: keys}, nil
}

// uniformKeys draws each of N keys with the same probability.
type uniformKeys struct {
	rng *rand.Rand
	n   uint64
}

func (k *uniformKeys) Next() uint64                        { return k.rng.Uint64N(k.n) }
func (k *uniformKeys) Append(dst []byte, id uint64) []byte { return strconv.AppendUint(dst, id, 10) }
func (k *uniformKeys) Len() uint64                         { return k.n }
func (k *uniformKeys) String() string                      { return fmt.Sprintf("uniform:%d", k.n) }

// zipfKeys draws key i with probability proportional to 1/(i+1)^s: key 0
// is the most frequent.
type zipfKeys struct {
	z *rand.Zipf
	s float64
	n uint64
}

func (k *zipfKeys) Next() uint64                        { return k.z.Uint64() }
func (k *zipfKeys) Append(dst []byte, id uint64) []byte { return strconv.AppendUint(dst, id, 10) }
func (k *zipfKeys) Len() uint64                         { return k.n }
func (k *zipfKeys) String() string {
	return "zipf:" + strconv.FormatFloat(k.s, 'g', -1, 64) + ":" + strconv.FormatUint(k.n, 10)
}

// seqKeys goes through 0…N-1 in order, then again.
type seqKeys struct {
	i, n uint64
}

func (k *seqKeys) Next() uint64 {
	id := k.i
	if k.i++; k.i == k.n {
		k.i = 0
	}
	return id
}
func (k *seqKeys) Append(dst []byte, id uint64) []byte { return strconv.AppendUint(dst, id, 10) }
func (k *seqKeys) Len() uint64                         { return k.n }
func (k *seqKeys) String() string                      { return fmt.Sprintf("seq:%d", k.n) }

// fileKeys goes through the lines of a file in order, then again.
type fileKeys struct {
	path string
	keys [][]byte
	i    uint64
}

func (k *fileKeys) Next() uint64 {
	id := k.i
	if k.i++; k.i == uint64(len(k.keys)) {
		k.i = 0
	}
	return id
}
func (k *fileKeys) Append(dst []byte, id uint64) []byte { return append(dst, k.keys[id]...) }
func (k *fileKeys) Len() uint64                         { return uint64(len(k.keys)) }
func (k *fileKeys) String() string                      { return "file:" + k.path }
