package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// splitJSONPath splits a dotted field as a body rule does; "" is the empty
// path (the top-level value).
func splitJSONPath(field string) []string {
	if field == "" {
		return nil
	}
	return strings.Split(field, ".")
}

func TestJSONKey(t *testing.T) {
	tests := []struct {
		name, body, path string
		want             string // "" when no key
		wantErr          error
	}{
		// Found.
		{"string", `{"id":"42"}`, "id", "42", nil},
		{"number", `{"id":42}`, "id", "42", nil},
		{"nested", `{"account":{"id":"a-1"}}`, "account.id", "a-1", nil},
		{"array index", `{"items":[{"sku":"x"},{"sku":"y"}]}`, "items.1.sku", "y", nil},
		{"digit member of an object", `{"items":{"0":"obj"}}`, "items.0", "obj", nil},
		{"top-level array", `[{"id":"1"}]`, "0.id", "1", nil},
		{"top-level string", `"x"`, "", "x", nil},
		{"top-level number", ` 7 `, "", "7", nil},
		{"white space everywhere", " \t\r\n{ \"id\" :\n\"1\" ,\"x\" : [ 1 , 2 ] } \n", "id", "1", nil},
		{"escapes in value", `{"id":"a\"b\\c\/d\u0041\n\t\b\f\r"}`, "id", "a\"b\\c/dA\n\t\b\f\r", nil},
		{"surrogate pair", `{"id":"\ud83d\ude00"}`, "id", "😀", nil},
		{"upper-case hex escape", `{"id":"\u00E9"}`, "id", "é", nil},
		{"raw UTF-8", `{"id":"ü😀"}`, "id", "ü😀", nil},
		{"escaped name", `{"\u0069d":"1"}`, "id", "1", nil},
		{"key before more members", `{"id":"1","x":{"y":[1,2,{"z":null}]},"w":true}`, "id", "1", nil},
		{"key after more members", `{"x":{"y":[1,2,{"z":null}]},"w":true,"id":"1"}`, "id", "1", nil},
		{"literal U+FFFD is valid", `{"id":"\ufffd�"}`, "id", "\ufffd\ufffd", nil},
		{"NUL escape", `{"id":"a\u0000b"}`, "id", "a\x00b", nil},
		{"DEL raw", "{\"id\":\"a\x7fb\"}", "id", "a\x7fb", nil},
		// Names off the path do not matter.
		{"case variant off the path", `{"other":{"ID":1},"id":"1"}`, "id", "1", nil},
		{"duplicate off the path", `{"id":"1","x":{"id":2,"id":3}}`, "id", "1", nil},
		{"duplicate in another element", `{"items":[{"sku":"a"},{"sku":"b","sku":"c"}]}`, "items.0.sku", "a", nil},
		{"duplicate inside the key's object value", `{"id":{"a":1,"a":2}}`, "id", "", nil},
		{"invalid UTF-8 off the key", "{\"id\":\"1\",\"x\":\"\xff\",\"y\":\"\\ud800\"}", "id", "1", nil},
		{"invalid UTF-8 in another name", "{\"id\":\"1\",\"\xff\":1,\"\\udc00\":2}", "id", "1", nil},
		{"no multi-rune folding: ss is not ß", `{"ss":1}`, "ß", "", nil},
		{"U+FFFD segment spelled exactly", `{"x\ufffd":"1"}`, "x\ufffd", "1", nil},
		// No key from this rule.
		{"null", `{"id":null}`, "id", "", nil},
		{"true", `{"id":true}`, "id", "", nil},
		{"false", `{"id":false}`, "id", "", nil},
		{"object", `{"id":{"x":"1"}}`, "id", "", nil},
		{"array", `{"id":["1"]}`, "id", "", nil},
		{"empty string", `{"id":""}`, "id", "", nil},
		{"missing member", `{"x":"1"}`, "id", "", nil},
		{"index out of range", `{"a":[1]}`, "a.1", "", nil},
		{"index not canonical", `{"a":[1,2]}`, "a.01", "", nil},
		{"negative index", `{"a":[1,2]}`, "a.-1", "", nil},
		{"name on an array", `{"a":[1,2]}`, "a.x", "", nil},
		{"descending into a scalar", `{"a":"s"}`, "a.b", "", nil},
		{"descending into null", `{"a":null}`, "a.b", "", nil},
		{"top-level scalar, path goes on", `"x"`, "a", "", nil},
		{"top-level object, empty path", `{"id":"1"}`, "", "", nil},
		{"empty object", `{}`, "id", "", nil},
		{"empty array", `[]`, "0", "", nil},
		// Numbers: integers within ±2^53 only.
		{"zero", `{"id":0}`, "id", "0", nil},
		{"negative", `{"id":-1}`, "id", "-1", nil},
		{"2^53", `{"id":9007199254740992}`, "id", "9007199254740992", nil},
		{"-2^53", `{"id":-9007199254740992}`, "id", "-9007199254740992", nil},
		{"2^53+1", `{"id":9007199254740993}`, "id", "", errJSONBadKey},
		{"-(2^53+1)", `{"id":-9007199254740993}`, "id", "", errJSONBadKey},
		{"17 digits", `{"id":10000000000000000}`, "id", "", errJSONBadKey},
		{"fraction", `{"id":1.0}`, "id", "", errJSONBadKey},
		{"fraction below one", `{"id":0.5}`, "id", "", errJSONBadKey},
		{"exponent", `{"id":1e2}`, "id", "", errJSONBadKey},
		{"signed exponent", `{"id":1E+2}`, "id", "", errJSONBadKey},
		{"minus zero", `{"id":-0}`, "id", "", errJSONBadKey},
		{"minus zero fraction", `{"id":-0.0}`, "id", "", errJSONBadKey},
		{"bad number off the key", `{"id":1,"x":1.5e300}`, "id", "1", nil},
		// Strings Go would change while decoding.
		{"lone high surrogate", `{"id":"\ud800"}`, "id", "", errJSONBadKey},
		{"lone low surrogate", `{"id":"\udc00"}`, "id", "", errJSONBadKey},
		{"high surrogate then a letter", `{"id":"\ud800\u0041"}`, "id", "", errJSONBadKey},
		{"two high surrogates", `{"id":"\ud800\ud800"}`, "id", "", errJSONBadKey},
		{"reversed pair", `{"id":"\udc00\ud800"}`, "id", "", errJSONBadKey},
		{"surrogate inside", `{"id":"a\ud800b"}`, "id", "", errJSONBadKey},
		{"raw invalid byte", "{\"id\":\"\xff\"}", "id", "", errJSONBadKey},
		{"raw UTF-8 surrogate", "{\"id\":\"\xed\xa0\x80\"}", "id", "", errJSONBadKey},
		{"overlong NUL", "{\"id\":\"\xc0\x80\"}", "id", "", errJSONBadKey},
		{"beyond U+10FFFF", "{\"id\":\"\xf4\x90\x80\x80\"}", "id", "", errJSONBadKey},
		{"truncated sequence", "{\"id\":\"a\xe2\x82\"}", "id", "", errJSONBadKey},
		// Two readings.
		{"duplicate", `{"id":"1","id":"2"}`, "id", "", errJSONAmbiguous},
		{"duplicate after null", `{"id":null,"id":"1"}`, "id", "", errJSONAmbiguous},
		{"duplicate true", `{"id":"1","id":true}`, "id", "", errJSONAmbiguous},
		{"identical duplicate", `{"id":"1","id":"1"}`, "id", "", errJSONAmbiguous},
		{"duplicate once unescaped", `{"\u0069d":"1","id":"2"}`, "id", "", errJSONAmbiguous},
		{"case variant after", `{"id":"1","ID":"2"}`, "id", "", errJSONAmbiguous},
		{"case variant before", `{"ID":"2","id":"1"}`, "id", "", errJSONAmbiguous},
		{"case variant alone", `{"ID":"1"}`, "id", "", errJSONAmbiguous},
		{"mixed case", `{"iD":"1"}`, "id", "", errJSONAmbiguous},
		{"escaped case variant", `{"\u0049D":"1"}`, "id", "", errJSONAmbiguous},
		{"case variant with a null value", `{"id":"1","Id":null}`, "id", "", errJSONAmbiguous},
		{"Kelvin sign for k", `{"K":"1"}`, "k", "", errJSONAmbiguous},
		{"escaped Kelvin sign for k", `{"\u212a":"1"}`, "k", "", errJSONAmbiguous},
		{"k for a Kelvin sign", `{"k":"1"}`, "K", "", errJSONAmbiguous},
		{"long s for s", `{"ſ":"1"}`, "s", "", errJSONAmbiguous},
		{"long s inside a name", `{"ſku":"1","sku":"2"}`, "sku", "", errJSONAmbiguous},
		{"capital sharp s for ß", `{"ẞ":"1"}`, "ß", "", errJSONAmbiguous},
		{"punctuation is not folded", `{"a_b":"1","A_B":"2"}`, "a_b", "", errJSONAmbiguous},
		{"parent duplicated", `{"a":{"id":"1"},"a":{"id":"2"}}`, "a.id", "", errJSONAmbiguous},
		{"parent duplicated by a scalar", `{"a":{"id":"1"},"a":5}`, "a.id", "", errJSONAmbiguous},
		{"parent case variant after", `{"a":{"id":"1"},"A":1}`, "a.id", "", errJSONAmbiguous},
		{"parent case variant before", `{"A":1,"a":{"id":"1"}}`, "a.id", "", errJSONAmbiguous},
		{"nested duplicate", `{"a":{"id":"1","ID":"2"}}`, "a.id", "", errJSONAmbiguous},
		{"duplicate in the indexed element", `{"a":[{"id":"1","Id":2}]}`, "a.0.id", "", errJSONAmbiguous},
		{"duplicate with the path missing", `{"a":1,"a":2}`, "a.b", "", errJSONAmbiguous},
		{"replaced byte equals the segment", "{\"x\xff\":\"1\"}", "x\ufffd", "", errJSONAmbiguous},
		{"lone surrogate equals the segment", `{"x\ud800":"1"}`, "x\ufffd", "", errJSONAmbiguous},
		{"ambiguity outranks a bad key", `{"id":1.5,"id":"x"}`, "id", "", errJSONAmbiguous},
		{"ambiguity outranks a bad string", `{"id":"\ud800","ID":"1"}`, "id", "", errJSONAmbiguous},
		// Not JSON, whatever was found before.
		{"empty body", ``, "id", "", errJSONInvalid},
		{"only space", " \n", "id", "", errJSONInvalid},
		{"unterminated object", `{"id":"1"`, "id", "", errJSONInvalid},
		{"unterminated string", `{"id":"1`, "id", "", errJSONInvalid},
		{"trailing garbage", `{"id":"1"} x`, "id", "", errJSONInvalid},
		{"two values", `{"id":"1"}{}`, "id", "", errJSONInvalid},
		{"trailing NUL", "{\"id\":\"1\"}\x00", "id", "", errJSONInvalid},
		{"byte order mark", "\xef\xbb\xbf{\"id\":\"1\"}", "id", "", errJSONInvalid},
		{"trailing comma in array", `{"id":"1","x":[1,]}`, "id", "", errJSONInvalid},
		{"trailing comma in object", `{"id":"1",}`, "id", "", errJSONInvalid},
		{"leading comma", `[,1]`, "0", "", errJSONInvalid},
		{"missing comma", `{"id":"1" "x":2}`, "id", "", errJSONInvalid},
		{"single quotes", `{'id':'1'}`, "id", "", errJSONInvalid},
		{"missing colon", `{"id" "1"}`, "id", "", errJSONInvalid},
		{"name not a string", `{id:"1"}`, "id", "", errJSONInvalid},
		{"mismatched close", `{"id":"1"]`, "id", "", errJSONInvalid},
		{"mismatched close in array", `[1}`, "0", "", errJSONInvalid},
		{"close without open", `]`, "", "", errJSONInvalid},
		{"leading zero", `{"id":01}`, "id", "", errJSONInvalid},
		{"dot without digits", `{"id":1.}`, "id", "", errJSONInvalid},
		{"dot first", `{"id":.5}`, "id", "", errJSONInvalid},
		{"plus sign", `{"id":+1}`, "id", "", errJSONInvalid},
		{"lone minus", `{"id":-}`, "id", "", errJSONInvalid},
		{"exponent without digits", `{"id":1e}`, "id", "", errJSONInvalid},
		{"exponent sign without digits", `{"id":1e+}`, "id", "", errJSONInvalid},
		{"hex number", `{"id":0x1}`, "id", "", errJSONInvalid},
		{"NaN", `{"id":NaN}`, "id", "", errJSONInvalid},
		{"control character", "{\"id\":\"a\x01\"}", "id", "", errJSONInvalid},
		{"raw newline in a string", "{\"id\":\"a\nb\"}", "id", "", errJSONInvalid},
		{"control character in a name", "{\"i\x1fd\":\"1\"}", "id", "", errJSONInvalid},
		{"escaped quote mark", `{"id":"\'"}`, "id", "", errJSONInvalid},
		{"escaped x", `{"id":"\x41"}`, "id", "", errJSONInvalid},
		{"short u escape", `{"id":"\u12"}`, "id", "", errJSONInvalid},
		{"non-hex u escape", `{"id":"\u12G4"}`, "id", "", errJSONInvalid},
		{"bad escape after a surrogate", `{"id":"\ud800\u12"}`, "id", "", errJSONInvalid},
		{"backslash at the end", `{"id":"\`, "id", "", errJSONInvalid},
		{"truncated literal", `{"id":tru}`, "id", "", errJSONInvalid},
		{"literal case", `{"id":True}`, "id", "", errJSONInvalid},
		{"nul literal", `[nul`, "0", "", errJSONInvalid},
		{"invalid after a duplicate", `{"id":"1","id":"2",`, "id", "", errJSONInvalid},
		{"invalid after a bad key", `{"id":1.5]`, "id", "", errJSONInvalid},
		{"invalid far after the key", `{"id":"1","x":[{"y":}]}`, "id", "", errJSONInvalid},
		{"tab is space, form feed is not", "{\"id\":\"1\"\f}", "id", "", errJSONInvalid},
		{"vertical tab", "\v{\"id\":\"1\"}", "id", "", errJSONInvalid},
	}
	dst := make([]byte, 0, 64)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := jsonKey([]byte(tt.body), splitJSONPath(tt.path), 64, dst)
			if string(got) != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("jsonKey(%q, %q) = %q, %v; want %q, %v", tt.body, tt.path, got, err, tt.want, tt.wantErr)
			}
			if tt.want == "" && got != nil {
				t.Errorf("jsonKey(%q, %q) = %q (non-nil empty), want nil", tt.body, tt.path, got)
			}
			if valid := json.Valid([]byte(tt.body)); valid == (err == errJSONInvalid) {
				t.Errorf("json.Valid(%q) = %v but jsonKey says %v", tt.body, valid, err)
			}
			checkJSONKeyAgainstEncodingJSON(t, []byte(tt.body), splitJSONPath(tt.path))
		})
	}
}

// TestJSONKeyDepth checks the nesting limit: the top-level container is
// level 1, and the limit is clamped to encoding/json's own.
func TestJSONKeyDepth(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	tests := []struct {
		name     string
		body     string
		maxDepth int
		wantErr  error
	}{
		{"at the limit", nest(64), 64, nil},
		{"one over", nest(65), 64, errJSONTooDeep},
		{"objects one over", strings.Repeat(`{"a":`, 5) + "1" + strings.Repeat("}", 5), 4, errJSONTooDeep},
		{"objects at the limit", strings.Repeat(`{"a":`, 4) + "1" + strings.Repeat("}", 4), 4, nil},
		{"scalar with limit 1", `"x"`, 1, nil},
		{"zero is taken as 1", `[]`, 0, nil},
		{"zero is taken as 1, two levels", `[[]]`, 0, errJSONTooDeep},
		{"beyond 256 levels", nest(1000), 1000, nil},
		{"beyond 256 levels, one over", nest(1001), 1000, errJSONTooDeep},
		{"encoding/json's limit", nest(10000), 1 << 30, nil},
		{"over encoding/json's limit", nest(10001), 1 << 30, errJSONTooDeep},
		{"too deep wins over invalid after it", nest(65)[:70] + "x", 64, errJSONTooDeep},
		{"invalid wins when met first", "x" + nest(65), 64, errJSONInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := jsonKey([]byte(tt.body), []string{"0"}, tt.maxDepth, nil)
			if err != tt.wantErr {
				t.Errorf("depth %d: err %v, want %v", tt.maxDepth, err, tt.wantErr)
			}
		})
	}
}

// TestJSONKeyHugeNesting: bodies that would exhaust a recursive validator's
// stack are refused at the limit, at once, without allocating and without
// growing the goroutine stack.
func TestJSONKeyHugeNesting(t *testing.T) {
	bodies := map[string][]byte{
		"6 MiB of [":     bytes.Repeat([]byte("["), 6<<20),
		`4 MiB of {"a":`: bytes.Repeat([]byte(`{"a":`), 4<<20/5),
	}
	for name, body := range bodies {
		for _, maxDepth := range []int{64, 1 << 30} {
			t.Run(fmt.Sprintf("%s/maxDepth=%d", name, maxDepth), func(t *testing.T) {
				path := []string{"a", "a"}
				start := time.Now()
				_, err := jsonKey(body, path, maxDepth, nil)
				elapsed := time.Since(start)
				if err != errJSONTooDeep {
					t.Fatalf("err %v, want errJSONTooDeep", err)
				}
				stack, heap, _ := jsonKeyFootprint(body, path, maxDepth)
				t.Logf("refused in %v; stack grew %d B, heap %d B", elapsed, stack, heap)
				if elapsed > time.Second {
					t.Errorf("took %v", elapsed)
				}
				// A recursive scanner would need hundreds of bytes a level, so
				// megabytes here; the slack is for the race detector's frames.
				if stack > 256<<10 {
					t.Errorf("goroutine stack grew by %d B", stack)
				}
				if heap > 4<<10 {
					t.Errorf("allocated %d B", heap)
				}
			})
		}
		t.Run(name+"/allocs", func(t *testing.T) {
			path := []string{"a"}
			if n := testing.AllocsPerRun(10, func() { _, _ = jsonKey(body, path, 64, nil) }); n != 0 {
				t.Errorf("%v allocations per call, want 0", n)
			}
		})
	}
}

// jsonKeyFootprint runs jsonKey on a fresh goroutine and reports how much
// that goroutine's stack grew (StackInuse against a goroutine that does
// nothing) and how many heap bytes the call allocated.
func jsonKeyFootprint(body []byte, path []string, maxDepth int) (stack, heap int64, err error) {
	measure := func(call bool) (stackInuse, alloc uint64) {
		var wg sync.WaitGroup
		wg.Go(func() {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if call {
				_, err = jsonKey(body, path, maxDepth, nil)
			}
			runtime.ReadMemStats(&after)
			stackInuse, alloc = after.StackInuse, after.TotalAlloc-before.TotalAlloc
		})
		wg.Wait()
		return
	}
	baseStack, _ := measure(false)
	s, a := measure(true)
	return int64(s) - int64(baseStack), int64(a), err
}

// TestJSONKeyNoAllocs: with room in dst, finding a key (escaped or not, at
// any depth) or refusing one allocates nothing.
func TestJSONKeyNoAllocs(t *testing.T) {
	body := benchJSONBody()
	dst := make([]byte, 0, 64)
	for _, path := range []string{"account.id", "account.name", "items.3.sku", "trailer.id", "missing", "items.9.sku", "ambiguous.id"} {
		segs := splitJSONPath(path)
		if n := testing.AllocsPerRun(100, func() { _, _ = jsonKey(body, segs, 64, dst) }); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", path, n)
		}
	}
}

// benchJSONBody is a 1 KiB request body with keys near its start and end,
// an escaped key, an array path, a folded name and some of everything else.
func benchJSONBody() []byte {
	var b strings.Builder
	b.WriteString(`{"account":{"id":"12345","name":"Ac\u006De \"Corp\"","tier":3},"items":[`)
	for i := range 6 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"SKU-%04d","qty":%d,"price":%d.99,"tags":["a","b"],"gift":false}`, i, i+1, 10*i)
	}
	b.WriteString(`],"ambiguous":{"id":1,"ID":2},"note":"`)
	for b.Len() < 1024-40 {
		b.WriteString("lorem ipsum ")
	}
	b.WriteString(`","trailer":{"id":"tail-99"}}`)
	body := []byte(b.String())
	if !json.Valid(body) {
		panic("benchJSONBody: not JSON")
	}
	return body
}

func BenchmarkJSONKey(b *testing.B) {
	body := benchJSONBody()
	for _, path := range []string{"account.id", "account.name", "items.3.sku", "trailer.id"} {
		b.Run(path, func(b *testing.B) {
			segs := splitJSONPath(path)
			dst := make([]byte, 0, 64)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if k, err := jsonKey(body, segs, 64, dst); err != nil || len(k) == 0 {
					b.Fatalf("key %q, %v", k, err)
				}
			}
		})
	}
	// For scale: encoding/json's validity check alone, on the same body.
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if !json.Valid(body) {
				b.Fatal("invalid")
			}
		}
	})
}

// TestJSONKeyDifferential compares jsonKey with encoding/json on generated
// documents. SHARD_PROXY_JSON_SEED replays a seed.
func TestJSONKeyDifferential(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SHARD_PROXY_JSON_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SHARD_PROXY_JSON_SEED: %v", err)
		}
	}
	t.Logf("seed %d (SHARD_PROXY_JSON_SEED=%d replays it)", seed, seed)
	n := 20000
	if testing.Short() {
		n = 3000
	}
	g := jsonGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	var tally [6]int // key, none, invalid, too deep, ambiguous, bad key
	for i := range n {
		body, path := g.doc()
		got, err := jsonKey(body, path, 64, nil)
		switch {
		case err == nil && got != nil:
			tally[0]++
		case err == nil:
			tally[1]++
		case err == errJSONInvalid:
			tally[2]++
		case err == errJSONTooDeep:
			tally[3]++
		case err == errJSONAmbiguous:
			tally[4]++
		case err == errJSONBadKey:
			tally[5]++
		}
		checkJSONKeyAgainstEncodingJSON(t, body, path)
		if t.Failed() {
			t.Fatalf("document %d of seed %d: body %q, path %q", i, seed, body, path)
		}
	}
	t.Logf("%d documents: %d keys, %d no key, %d invalid, %d too deep, %d ambiguous, %d bad key",
		n, tally[0], tally[1], tally[2], tally[3], tally[4], tally[5])
	for i, what := range []string{"keys", "no-key results", "invalid bodies", "", "ambiguous bodies", "bad keys"} {
		if what != "" && tally[i] < n/50 {
			t.Errorf("only %d %s among %d documents: the generator no longer covers them", tally[i], what, n)
		}
	}
}

func FuzzJSONKeyDifferential(f *testing.F) {
	for _, s := range []struct{ body, field string }{
		{`{"id":"42"}`, "id"},
		{`{"id":"1","id":"2"}`, "id"},
		{`{"id":null,"id":"1"}`, "id"},
		{`{"id":"1","ID":"2"}`, "id"},
		{`{"\u212a":"1"}`, "k"},
		{`{"ſ":1}`, "s"},
		{`{"\u0069d":"1"}`, "id"},
		{`{"account":{"id":12}}`, "account.id"},
		{`{"items":[{"sku":"A\u0041"},{"sku":"b"}]}`, "items.1.sku"},
		{`{"id":"\ud800"}`, "id"},
		{`{"id":"\ud83d\ude00"}`, "id"},
		{"{\"id\":\"\xff\"}", "id"},
		{"{\"x\xff\":1}", "x\ufffd"},
		{`{"id":9007199254740993}`, "id"},
		{`{"id":-0}`, "id"},
		{`{"id":1.5e3}`, "id"},
		{`[[[[[[[[]]]]]]]]`, "0.0"},
		{`{"a":[1,2,{"b":"c"}]}`, "a.2.b"},
		{`{"a":{"b":1},"A":{"b":2}}`, "a.b"},
		{`[1,]`, "0"},
		{`{"id":"1"} x`, "id"},
	} {
		f.Add([]byte(s.body), s.field)
	}
	f.Fuzz(func(t *testing.T, body []byte, field string) {
		checkJSONKeyAgainstEncodingJSON(t, body, strings.Split(field, "."))
	})
}

// checkJSONKeyAgainstEncodingJSON checks jsonKey(body, path) against
// encoding/json:
//   - a body json.Valid rejects is errJSONInvalid (or errJSONTooDeep, if it
//     nests too deep before it goes wrong), and one it accepts is neither
//     (unless it nests too deep);
//   - a key is what both a map[string]any decoding (UseNumber) and a struct
//     decoding with the field tagged read at the path;
//   - when the two decodings disagree, jsonKey refuses; when it finds no key,
//     neither decoding finds one;
//   - the result is exactly that of a model built on json.Decoder's tokens.
func checkJSONKeyAgainstEncodingJSON(t *testing.T, body []byte, path []string) {
	t.Helper()
	const maxDepth = 64
	got, err := jsonKey(body, path, maxDepth, nil)
	valid := json.Valid(body)
	if err == errJSONTooDeep {
		if d := jsonNesting(body); d <= maxDepth {
			t.Fatalf("jsonKey(%q, %q): too deep, but it nests only %d levels", body, path, d)
		}
		return
	}
	if !valid {
		if err != errJSONInvalid {
			t.Fatalf("jsonKey(%q, %q) = %q, %v; encoding/json rejects the body", body, path, got, err)
		}
		return
	}
	if err == errJSONInvalid {
		t.Fatalf("jsonKey(%q, %q): invalid, but encoding/json accepts the body", body, path)
	}
	if err != nil && err != errJSONAmbiguous && err != errJSONBadKey {
		t.Fatalf("jsonKey(%q, %q): unexpected error %v", body, path, err)
	}

	byMap := jsonReadMap(t, body, path)
	byStruct, structOK := jsonReadStruct(t, body, path)
	switch {
	case err == nil && got != nil:
		if byMap != string(got) {
			t.Fatalf("jsonKey(%q, %q) = %q; a map decoding reads %q", body, path, got, byMap)
		}
		if structOK && byStruct != string(got) {
			t.Fatalf("jsonKey(%q, %q) = %q; a struct decoding reads %q", body, path, got, byStruct)
		}
	case err == nil:
		if byMap != "" || structOK && byStruct != "" {
			t.Fatalf("jsonKey(%q, %q): no key; a map decoding reads %q, a struct decoding %q", body, path, byMap, byStruct)
		}
	}
	if structOK && byMap != byStruct && err == nil {
		t.Fatalf("jsonKey(%q, %q) = %q; a map decoding reads %q, a struct decoding %q", body, path, got, byMap, byStruct)
	}

	wantKey, wantErr := jsonModel(t, body, path)
	if string(got) != wantKey || err != wantErr {
		t.Fatalf("jsonKey(%q, %q) = %q, %v; the token model says %q, %v", body, path, got, err, wantKey, wantErr)
	}
}

// jsonNesting returns how deep body's brackets nest, strings skipped.
func jsonNesting(body []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range body {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// jsonIndexOf returns the array index seg names, as strconv reads it back
// canonically, or -1.
func jsonIndexOf(seg string) int {
	n, err := strconv.Atoi(seg)
	if err != nil || n < 0 || strconv.Itoa(n) != seg {
		return -1
	}
	return n
}

// jsonReadMap decodes body into an interface value with UseNumber and
// returns what lies at path: a string, a number's text, or "" for anything
// else or nothing.
func jsonReadMap(t *testing.T, body []byte, path []string) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	for _, seg := range path {
		switch c := v.(type) {
		case map[string]any:
			v = c[seg]
		case []any:
			i := jsonIndexOf(seg)
			if i < 0 || i >= len(c) {
				return ""
			}
			v = c[i]
		default:
			return ""
		}
	}
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return string(v)
	}
	return ""
}

var jsonStructTypes sync.Map // segment → struct type with one json.RawMessage field tagged with it

// jsonStructFor returns struct{ F json.RawMessage `json:"seg"` }, or false
// when seg cannot be written as a json tag name.
func jsonStructFor(seg string) (reflect.Type, bool) {
	if !jsonValidTag(seg) {
		return nil, false
	}
	if typ, ok := jsonStructTypes.Load(seg); ok {
		return typ.(reflect.Type), true
	}
	name := seg
	if seg == "-" {
		name = "-," // "-" alone means "skip this field"
	}
	typ := reflect.StructOf([]reflect.StructField{{
		Name: "F",
		Type: reflect.TypeFor[json.RawMessage](),
		Tag:  reflect.StructTag("json:" + strconv.Quote(name)),
	}})
	jsonStructTypes.Store(seg, typ)
	return typ, true
}

// jsonValidTag is encoding/json's isValidTag: names it would ignore.
func jsonValidTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c) && !unicode.IsLetter(c) && !unicode.IsDigit(c) {
			return false
		}
	}
	return true
}

// jsonReadStruct reads path the way a program of structs would: each object
// decoded into a struct whose one field is tagged with the segment, each
// array into a slice. It returns false when a segment cannot be a tag.
func jsonReadStruct(t *testing.T, body []byte, path []string) (string, bool) {
	for _, seg := range path {
		if !jsonValidTag(seg) {
			return "", false
		}
	}
	cur := json.RawMessage(body)
	for _, seg := range path {
		cur = bytes.TrimLeft(cur, " \t\r\n")
		switch cur[0] {
		case '{':
			typ, _ := jsonStructFor(seg)
			v := reflect.New(typ)
			if err := json.Unmarshal(cur, v.Interface()); err != nil {
				t.Fatalf("decoding %q into %v: %v", cur, typ, err)
			}
			if cur = v.Elem().Field(0).Interface().(json.RawMessage); cur == nil {
				return "", true
			}
		case '[':
			var elems []json.RawMessage
			if err := json.Unmarshal(cur, &elems); err != nil {
				t.Fatalf("decoding %q into a slice: %v", cur, err)
			}
			i := jsonIndexOf(seg)
			if i < 0 || i >= len(elems) {
				return "", true
			}
			cur = elems[i]
		default:
			return "", true
		}
	}
	cur = bytes.TrimSpace(cur)
	switch c := cur[0]; {
	case c == '"':
		var s string
		if err := json.Unmarshal(cur, &s); err != nil {
			t.Fatalf("decoding %q into a string: %v", cur, err)
		}
		return s, true
	case c == '-' || c >= '0' && c <= '9':
		return string(cur), true
	}
	return "", true
}

// jsonStructTakes tells whether encoding/json's struct decoder stores a
// member named name (as decoded) into a field tagged seg.
func jsonStructTakes(t *testing.T, name, seg string) bool {
	typ, _ := jsonStructFor(seg)
	quoted, err := json.Marshal(name)
	if err != nil {
		t.Fatal(err)
	}
	v := reflect.New(typ)
	if err := json.Unmarshal([]byte("{"+string(quoted)+":1}"), v.Interface()); err != nil {
		t.Fatal(err)
	}
	return v.Elem().Field(0).Len() > 0
}

var jsonIntegerText = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// jsonModel is jsonKey's contract restated over json.Decoder's tokens, for a
// body json.Valid accepts. It keeps a frame per open container and looks at
// each token's raw text only to tell whether encoding/json replaced
// something in it.
func jsonModel(t *testing.T, body []byte, path []string) (string, error) {
	type frame struct {
		object, onPath bool
		seen           bool // the member or element on the path has been met
		n              int  // elements so far
		wantName       bool // the next token in this object is a name
	}
	const (
		off = iota
		step
		atKey
	)
	var (
		stack      []frame
		prev       int64
		key        string
		ambiguous  bool
		bad, found bool
	)
	child := func() int {
		if len(stack) == len(path) {
			return atKey
		}
		return step
	}
	next := step
	if len(path) == 0 {
		next = atKey
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tokens of %q: %v", body, err)
		}
		raw := body[prev:dec.InputOffset()]
		prev = dec.InputOffset()
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantName {
			if name, ok := tok.(string); ok {
				top := &stack[n-1]
				top.wantName = false
				next = off
				if !top.onPath || ambiguous {
					continue
				}
				seg := path[n-1]
				takes := name == seg || strings.EqualFold(name, seg)
				if jsonValidTag(seg) && takes != jsonStructTakes(t, name, seg) {
					t.Fatalf("name %q, field %q: EqualFold says %v, the struct decoder does not", name, seg, takes)
				}
				switch {
				case name == seg && jsonUnchanged(raw, name) && !top.seen:
					top.seen = true
					next = child()
				case takes:
					ambiguous = true
				}
				continue
			}
		}
		role := next
		next = off
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{', '[':
				stack = append(stack, frame{object: tok == '{', onPath: role == step && !ambiguous})
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			switch {
			case role != atKey:
			case !jsonUnchanged(raw, tok):
				bad = true
			case tok != "":
				key, found = tok, true
			}
		case json.Number:
			if role == atKey {
				bad = true
				if jsonIntegerText.MatchString(string(tok)) && tok != "-0" {
					mag, _ := new(big.Int).SetString(strings.TrimPrefix(string(tok), "-"), 10)
					if mag.Cmp(big.NewInt(1<<53)) <= 0 {
						key, found, bad = string(tok), true, false
					}
				}
			}
		}
		if n := len(stack); n > 0 {
			top := &stack[n-1]
			switch {
			case top.object:
				top.wantName = true
			case top.onPath && !top.seen && !ambiguous && top.n == jsonIndexOf(path[n-1]):
				top.seen = true
				top.n++
				next = child()
			default:
				top.n++
			}
		}
	}
	switch {
	case ambiguous:
		return "", errJSONAmbiguous
	case bad:
		return "", errJSONBadKey
	case found:
		return key, nil
	}
	return "", nil
}

// jsonUnchanged tells whether decoded, the string token at the end of raw as
// encoding/json decoded it, is what it spells: no invalid UTF-8 and no lone
// surrogate escape replaced by U+FFFD. Escapes are ASCII, so raw invalid
// UTF-8 shows in raw; every other U+FFFD in decoded must then be one that
// raw writes as such, literally or as \ufffd.
func jsonUnchanged(raw []byte, decoded string) bool {
	raw = raw[bytes.IndexByte(raw, '"'):]
	if !utf8.Valid(raw) {
		return false
	}
	written := bytes.Count(raw, []byte("\ufffd"))
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' {
			if raw[i+1] == 'u' && strings.EqualFold(string(raw[i+2:i+6]), "fffd") {
				written++
			}
			i++
		}
	}
	return strings.Count(decoded, "\ufffd") == written
}

// jsonGen writes random documents from a small grammar that favours what
// jsonKey must get right: names equal to the path's segments, escaped, case
// folded or repeated; strings with escapes, surrogates and invalid UTF-8;
// numbers of every shape; and now and then a broken byte.
type jsonGen struct {
	r    *rand.Rand
	buf  []byte
	path []string
}

var (
	jsonGenSegs = []string{"id", "id", "a", "k", "s", "sku", "items", "0", "1", "ß", "x\ufffd"}
	// Names that another segment or an escape can turn into a path name.
	jsonGenTricky = []string{
		"ID", "Id", "iD", `\u0069d`, `\u0049D`, `i\u0064`, "A", `\u0061`, "K", "\u212a", `\u212a`,
		"S", "ſ", `\u017f`, "SKU", "ſku", "Items", "ẞ", `\u1e9e`, "ss", "0", "00", `\ud800`, "\xff",
		`x\ud800`, "x\xff", `x\ufffd`, "", `\"`, `\\`,
	}
	jsonGenPlain   = []string{"name", "n", "b", "y", "z", "tags", "1", "2", "x"}
	jsonGenPieces  = []string{"abc", "42", `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u0041`, `\u00e9`, `\ud83d\ude00`, `\uDBFF\uDFFF`, `\ufffd`, "ü", "😀", "\ufffd", " ", "\x7f"}
	jsonGenBadStr  = []string{`\ud800`, `\udc00`, `\ud800\u0041`, `\ud800\ud800`, `\udc00\ud800`, "\xff", "\xed\xa0\x80", "\xc0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}
	jsonGenNumbers = []string{
		"0", "7", "-1", "42", "123456789", "9007199254740991", "9007199254740992", "-9007199254740992",
		"9007199254740993", "-9007199254740993", "12345678901234567890", "-0", "1.5", "-0.0", "0.1e+5",
		"1e3", "1E-2", "2e0", "100",
	}
	jsonGenBroken = []string{"01", "1.", ".5", "+1", "-", "1e", "0x1", "NaN", "tru", "nul", "\"\\x\"", "\"\\u12\"", "\"a\x01\"", "'a'"}
	jsonGenSpace  = []string{" ", "\t", "\n", "\r", "  ", "\r\n"}
	jsonGenNoise  = []byte("{}[]:,\"\\ 0123456789-+.eEtfnu\x00\x1f\x7f\xff")
)

// doc returns a body and the path to look up in it.
func (g *jsonGen) doc() ([]byte, []string) {
	g.path = g.path[:0:0]
	for range 1 + g.r.IntN(3) {
		g.path = append(g.path, jsonGenSegs[g.r.IntN(len(jsonGenSegs))])
	}
	g.buf = nil
	g.value(0, 0)
	g.space()
	switch p := g.r.IntN(100); {
	case p < 8: // one broken byte
		i := g.r.IntN(len(g.buf) + 1)
		c := jsonGenNoise[g.r.IntN(len(jsonGenNoise))]
		g.buf = append(g.buf[:i], append([]byte{c}, g.buf[i:]...)...)
	case p < 12 && len(g.buf) > 0: // one byte gone
		i := g.r.IntN(len(g.buf))
		g.buf = append(g.buf[:i], g.buf[i+1:]...)
	case p < 14:
		g.buf = g.buf[:g.r.IntN(len(g.buf)+1)]
	}
	return g.buf, g.path
}

func (g *jsonGen) space() {
	if g.r.IntN(5) == 0 {
		g.buf = append(g.buf, jsonGenSpace[g.r.IntN(len(jsonGenSpace))]...)
	}
}

// value writes a value at depth; at is the index in g.path of the segment
// this value's members or elements are looked up by, or -1 off the path.
func (g *jsonGen) value(depth, at int) {
	g.space()
	onPath := at >= 0 && at < len(g.path)
	p := g.r.IntN(100)
	switch {
	case depth >= 6:
		p = 50 + p/2 // scalars only
	case onPath && jsonIndexOf(g.path[at]) >= 0:
		p = []int{0, 30, 30, 30, 30, 30, 30, 30, 50, 80}[p/10] // mostly arrays, to follow the path
	case onPath:
		p = []int{0, 0, 0, 0, 0, 0, 0, 30, 50, 80}[p/10] // mostly objects
	case at == len(g.path):
		p = 45 + p*55/100 // mostly strings and numbers: the key
	}
	switch {
	case p < 25:
		g.object(depth, at, onPath)
	case p < 45:
		g.array(depth, at, onPath)
	case p < 70:
		g.string()
	case p < 92:
		g.buf = append(g.buf, jsonGenNumbers[g.r.IntN(len(jsonGenNumbers))]...)
	case p < 99:
		g.buf = append(g.buf, []string{"null", "true", "false"}[g.r.IntN(3)]...)
	default:
		g.buf = append(g.buf, jsonGenBroken[g.r.IntN(len(jsonGenBroken))]...)
	}
	g.space()
}

func (g *jsonGen) object(depth, at int, onPath bool) {
	g.buf = append(g.buf, '{')
	n := g.r.IntN(4)
	pathAt := -1
	if onPath && g.r.IntN(10) < 8 {
		n++
		pathAt = g.r.IntN(n)
	}
	for i := range n {
		if i > 0 {
			g.buf = append(g.buf, ',')
		}
		g.space()
		var name string
		next := -1
		switch {
		case i == pathAt:
			name, next = g.spell(g.path[at]), at+1
		case onPath && g.r.IntN(4) == 0:
			name = jsonGenTricky[g.r.IntN(len(jsonGenTricky))]
		case onPath && g.r.IntN(6) == 0:
			name, next = g.spell(g.path[at]), at+1 // a repeat
		default:
			name = jsonGenPlain[g.r.IntN(len(jsonGenPlain))]
		}
		g.buf = append(g.buf, '"')
		g.buf = append(g.buf, name...)
		g.buf = append(g.buf, '"')
		g.space()
		g.buf = append(g.buf, ':')
		g.value(depth+1, next)
	}
	g.space()
	g.buf = append(g.buf, '}')
}

func (g *jsonGen) array(depth, at int, onPath bool) {
	g.buf = append(g.buf, '[')
	n := g.r.IntN(4)
	want := -1
	if onPath {
		if want = jsonIndexOf(g.path[at]); want >= 0 && g.r.IntN(10) < 8 {
			n = max(n, want+1)
		}
	}
	for i := range n {
		if i > 0 {
			g.buf = append(g.buf, ',')
		}
		next := -1
		if i == want {
			next = at + 1
		}
		g.value(depth+1, next)
	}
	g.space()
	g.buf = append(g.buf, ']')
}

// spell writes name as a JSON string's content, now and then with some of
// its characters escaped.
func (g *jsonGen) spell(name string) string {
	if g.r.IntN(4) != 0 {
		return name
	}
	var b strings.Builder
	for _, r := range name {
		if g.r.IntN(2) == 0 {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

func (g *jsonGen) string() {
	g.buf = append(g.buf, '"')
	for range g.r.IntN(4) {
		if g.r.IntN(8) == 0 {
			g.buf = append(g.buf, jsonGenBadStr[g.r.IntN(len(jsonGenBadStr))]...)
		} else {
			g.buf = append(g.buf, jsonGenPieces[g.r.IntN(len(jsonGenPieces))]...)
		}
	}
	g.buf = append(g.buf, '"')
}
