package ring

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// The test vectors freeze the placement formulas: testdata/vectors.json holds
// keys and the ordinal that owns each under every ring, and TestVectors holds
// the ring code to every one. A change that moves a key is a break of the
// package's compatibility promise, never a fix to the file.

var updateVectors = flag.Bool("update", false,
	"rewrite testdata/vectors.json (TestVectors); refused while a key the file holds would move")

var vectorsFile = filepath.Join("testdata", "vectors.json")

// vectorNs are the shard counts every ring is held to (DESIGN section 16).
var vectorNs = []int{1, 2, 3, 7, 64, 1000}

func TestVectors(t *testing.T) {
	if *updateVectors {
		writeVectors(t)
	}
	data, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatalf("reading the test vectors: %v (go test ./ring -run TestVectors -update writes them)", err)
	}
	f, err := parseVectors(vectorsFile, data)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d sets, %d vectors, %d bytes, seed %s", vectorsFile, len(f.Sets), countVectors(f), len(data), f.Seed)
	checkCoverage(t, f)
	for _, s := range f.Sets {
		t.Run(fmt.Sprintf("%s/N=%d", s.Ring, s.N), func(t *testing.T) {
			moved, err := movedVectors(s)
			if err != nil {
				t.Fatalf("%s:%d: %v", vectorsFile, s.line, err)
			}
			const show = 10
			for _, m := range moved[:min(len(moved), show)] {
				t.Errorf("%s:%d: %s ring, N=%d: key %s: want ordinal %d, got %d",
					vectorsFile, m.line, s.Ring, s.N, describeKey(m.key), m.want, m.got)
			}
			if len(moved) > show {
				t.Errorf("%s ring, N=%d: and %d more: %d of %d keys moved in all",
					s.Ring, s.N, len(moved)-show, len(moved), len(s.Vectors))
			}
			if len(moved) > 0 {
				t.Errorf("ownership is a compatibility promise (package doc, DESIGN section 16): " +
					"fix the ring code, do not rewrite the vectors")
			}
		})
	}
}

// checkCoverage fails unless every ring has a set at every N of vectorNs
// (consistent at DefaultPartitions) with at least minVectors keys, so that a
// file cut short or thinned out cannot pass for a complete one.
func checkCoverage(t *testing.T, f *vectorFile) {
	t.Helper()
	type ringN struct {
		ring       Algorithm
		n          int
		partitions int
	}
	sizes := make(map[ringN]int)
	for _, s := range f.Sets {
		k := ringN{s.Ring, s.N, s.Partitions}
		if _, ok := sizes[k]; ok {
			t.Errorf("%s:%d: a second %s set for N=%d", vectorsFile, s.line, s.Ring, s.N)
		}
		sizes[k] = len(s.Vectors)
	}
	for _, alg := range Algorithms() {
		for _, n := range vectorNs {
			k := ringN{alg, n, Config{Algorithm: alg}.Normalized().Partitions}
			if got, ok := sizes[k]; !ok || got < minVectors {
				t.Errorf("%s: the %s ring at N=%d (partitions %d) has %d vectors, want at least %d",
					vectorsFile, alg, n, k.partitions, got, minVectors)
			}
		}
	}
}

type movedVector struct {
	key       []byte
	want, got int
	line      int
}

// movedVectors returns the vectors of s whose key the ring code places on
// another ordinal than the file says.
func movedVectors(s vectorSet) ([]movedVector, error) {
	r, err := New(Config{Algorithm: s.Ring, Partitions: s.Partitions}, s.Names)
	if err != nil {
		return nil, fmt.Errorf("building the %s ring over %d names: %w", s.Ring, len(s.Names), err)
	}
	var moved []movedVector
	for _, v := range s.Vectors {
		if got := r.Owner(v.key); got != *v.Ordinal {
			moved = append(moved, movedVector{key: v.key, want: *v.Ordinal, got: got, line: v.line})
		}
	}
	return moved, nil
}

func countVectors(f *vectorFile) int {
	n := 0
	for _, s := range f.Sets {
		n += len(s.Vectors)
	}
	return n
}

// writeVectors regenerates the file. It refuses while the file in place
// holds a key the code would now place elsewhere, or cannot be read: -update
// adds and reshapes vectors, it does not excuse a moved key. A formula
// changed on purpose is a new major version, and its author deletes the file
// first.
func writeVectors(t *testing.T) {
	t.Helper()
	old, err := os.ReadFile(vectorsFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		t.Logf("%s does not exist; writing it", vectorsFile)
	case err != nil:
		t.Fatal(err)
	default:
		if err := checkNothingMoved(old); err != nil {
			t.Fatal(err)
		}
	}
	f := generateVectors(t)
	data, err := encodeVectors(f)
	if err != nil {
		t.Fatalf("encoding the vectors: %v", err)
	}
	back, err := parseVectors(vectorsFile, data)
	if err != nil {
		t.Fatalf("the vectors as encoded do not read back: %v", err)
	}
	if err := sameVectors(f, back); err != nil {
		t.Fatalf("the vectors as encoded read back differently: %v", err)
	}
	if err := os.WriteFile(vectorsFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s: %d sets, %d vectors, %d bytes, seed %#x", vectorsFile, len(f.Sets), countVectors(f), len(data), vectorSeed)
}

func checkNothingMoved(old []byte) error {
	prev, err := parseVectors(vectorsFile, old)
	if err != nil {
		// Its promises cannot be read, so they cannot be checked either.
		return fmt.Errorf("refusing to rewrite a file that does not parse (%w): fix it, or delete it to start over", err)
	}
	for _, s := range prev.Sets {
		moved, err := movedVectors(s)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", vectorsFile, s.line, err)
		}
		if len(moved) > 0 {
			m := moved[0]
			return fmt.Errorf("refusing to rewrite %s: %d key(s) of the %s ring at N=%d would move, the first on line %d "+
				"(key %s, ordinal %d, now %d). Ownership is a compatibility promise; if the change is meant, "+
				"delete the file and run -update again", vectorsFile, len(moved), s.Ring, s.N, m.line, describeKey(m.key), m.want, m.got)
		}
	}
	return nil
}

// generateVectors places every set's keys with the ring code and, as a
// check on the code before it is frozen, with each formula written
// independently: jump as published, modulus with math/big, consistent by
// the library itself.
func generateVectors(t *testing.T) *vectorFile {
	t.Helper()
	t.Logf("generating vectors from seed %#x", vectorSeed)
	f := &vectorFile{
		Format: vectorsFormat,
		About: "Keys and the ordinal of the shard that owns each, for every ring of " +
			"github.com/shard-proxy/shard-proxy/ring; the format is in that package's documentation.",
		Seed:       fmt.Sprintf("%#x", vectorSeed),
		Regenerate: "go test ./ring -run TestVectors -update",
	}
	for i, alg := range Algorithms() {
		for _, n := range vectorNs {
			s := vectorSet{Ring: alg, N: n, Names: shardNames(n)}
			s.Partitions = Config{Algorithm: alg}.Normalized().Partitions
			r := mustNew(t, Config{Algorithm: alg, Partitions: s.Partitions}, s.Names)
			formula := vectorFormula(alg, s.Names, s.Partitions)
			for _, key := range vectorKeys(alg, n, vectorSeed+uint64(i)<<32+uint64(n)) {
				got := r.Owner(key)
				if want := formula(key); got != want {
					t.Fatalf("%s ring, N=%d: Owner(%s) = %d, the formula says %d; not freezing a broken ring",
						alg, n, describeKey(key), got, want)
				}
				s.Vectors = append(s.Vectors, newVector(key, got))
			}
			f.Sets = append(f.Sets, s)
		}
	}
	return f
}

// vectorFormula is the owner of a key by the formulas of the package doc,
// computed without the ring code.
func vectorFormula(alg Algorithm, names []string, partitions int) func(key []byte) int {
	switch alg {
	case Modulus:
		n := uint64(len(names))
		return func(key []byte) int { return wantModulus(key, n) }
	case Consistent:
		lib := consistent.New(members(names), libraryConfig(partitions))
		index := make(map[string]int, len(names))
		for i, name := range names {
			index[name] = i
		}
		return func(key []byte) int { return index[lib.LocateKey(key).String()] }
	default:
		n := int32(len(names))
		return func(key []byte) int { return int(paperJump(xxhash.Sum64(key), n)) }
	}
}

// sameVectors reports the first difference between two files' sets.
func sameVectors(a, b *vectorFile) error {
	if len(a.Sets) != len(b.Sets) {
		return fmt.Errorf("%d sets, then %d", len(a.Sets), len(b.Sets))
	}
	for i, sa := range a.Sets {
		sb := b.Sets[i]
		if sa.Ring != sb.Ring || sa.N != sb.N || sa.Partitions != sb.Partitions ||
			strings.Join(sa.Names, "\x00") != strings.Join(sb.Names, "\x00") || len(sa.Vectors) != len(sb.Vectors) {
			return fmt.Errorf("set %d: %s N=%d, then %s N=%d", i, sa.Ring, sa.N, sb.Ring, sb.N)
		}
		for j, va := range sa.Vectors {
			vb := sb.Vectors[j]
			if !bytes.Equal(va.key, vb.key) || *va.Ordinal != *vb.Ordinal {
				return fmt.Errorf("%s N=%d: key %s (ordinal %d), then %s (ordinal %d)",
					sa.Ring, sa.N, describeKey(va.key), *va.Ordinal, describeKey(vb.key), *vb.Ordinal)
			}
		}
	}
	return nil
}

// TestVectorsRoundTrip checks the encoder the normal run never uses: keys of
// every kind read back as the bytes they were.
func TestVectorsRoundTrip(t *testing.T) {
	f := &vectorFile{Format: vectorsFormat, Sets: []vectorSet{{Ring: Consistent, N: 2, Partitions: 7, Names: shardNames(2)}}}
	for i, k := range []string{"a", "\x00", "<&>", "\u2028", "e\u0301", "😀", "\xff", "caf\xe9", "\xed\xa0\x80", `\x41`, strings.Repeat("9", 4096)} {
		f.Sets[0].Vectors = append(f.Sets[0].Vectors, newVector([]byte(k), i%2))
	}
	data, err := encodeVectors(f)
	if err != nil {
		t.Fatal(err)
	}
	back, err := parseVectors("roundtrip.json", data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if err := sameVectors(f, back); err != nil {
		t.Error(err)
	}
	// Six header lines, the set's, its vectors', "]}", then "]" and "}".
	if lines := bytes.Count(data, []byte("\n")); lines != 6+1+len(f.Sets[0].Vectors)+3 {
		t.Errorf("%d lines, want one per vector:\n%s", lines, data)
	}
}

// TestParseVectorsErrors checks that a broken file fails naming its line.
func TestParseVectorsErrors(t *testing.T) {
	const valid = `{
"format": "shard-proxy ring vectors v1",
"sets": [
{"ring":"jump","n":2,"names":["web-0","web-1"],"vectors":[
{"key":"a","ordinal":1},
{"hex":"ff","quoted":"\\xff","ordinal":0}
]}
]
}
`
	if _, err := parseVectors("v.json", []byte(valid)); err != nil {
		t.Fatalf("the valid document: %v", err)
	}
	tests := []struct {
		name, old, new string
		want           string // the error's beginning, then a fragment of it
		fragment       string
	}{
		{"syntax", `"a","ordinal"`, `"a" "ordinal"`, "v.json:5:", "invalid character"},
		{"unknown field", `"a","ordinal"`, `"a","ordnal"`, "v.json:5:", `unknown field "ordnal"`},
		{"no ordinal", `,"ordinal":1}`, `}`, "v.json:5:", `no "ordinal"`},
		{"key and hex", `{"key":"a",`, `{"key":"a","hex":"61",`, "v.json:5:", "exactly one"},
		{"upper-case hex", `"hex":"ff"`, `"hex":"FF"`, "v.json:6:", "lowercase"},
		{"hex that is UTF-8", `"hex":"ff","quoted":"\\xff"`, `"hex":"61","quoted":"a"`, "v.json:6:", "valid UTF-8"},
		{"hex without quoted", `"quoted":"\\xff",`, ``, "v.json:6:", `needs "quoted"`},
		{"empty key", `"key":"a"`, `"key":""`, "v.json:5:", "empty key"},
		{"ordinal out of range", `"ordinal":1}`, `"ordinal":2}`, "v.json:5:", "not in [0, 2)"},
		{"duplicate key", `{"hex":"ff","quoted":"\\xff",`, `{"key":"a",`, "v.json:6:", "also on line 5"},
		{"wrong type", `"n":2`, `"n":"2"`, "v.json:4:", "cannot unmarshal"},
		{"names short", `"n":2`, `"n":3`, "v.json:4:", "n = 3 and 2 names"},
		{"partitions on jump", `"n":2,`, `"n":2,"partitions":7,`, "v.json:4:", "partitions = 7"},
		{"unknown ring", `"jump"`, `"rendezvous"`, "v.json:4:", "unknown ring algorithm"},
		{"format", `vectors v1`, `vectors v2`, "v.json:2:", "format is"},
		{"trailing data", "]\n}\n", "]\n}\nx\n", "v.json:10:", "after the end"},
		{"cut short", "]}\n]\n}\n", "", "v.json:6:", "unexpected end"},
		{"not UTF-8", `"key":"a"`, "\"key\":\"a\xff\"", "v.json:5:", "not UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(valid, tt.old, tt.new, 1)
			if doc == valid {
				t.Fatalf("%q is not in the valid document", tt.old)
			}
			_, err := parseVectors("v.json", []byte(doc))
			if err == nil {
				t.Fatalf("no error for\n%s", doc)
			}
			if !strings.HasPrefix(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.fragment) {
				t.Errorf("error %q, want it to begin %q and hold %q", err, tt.want, tt.fragment)
			}
		})
	}
}
