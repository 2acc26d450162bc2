package h2hpack

import (
	"testing"

	"golang.org/x/net/http2/hpack"
)

// decodeBlock decodes a header block with x/net's decoder.
func decodeBlock(t testing.TB, block []byte) []hpack.HeaderField {
	t.Helper()
	fields, err := hpack.NewDecoder(4096, nil).DecodeFull(block)
	if err != nil {
		t.Fatalf("x/net cannot decode %x: %v", block, err)
	}
	return fields
}

// TestHpackEncoder: what the relay's encoder writes, x/net's decoder reads
// back field for field: static matches, static names, new names, long
// values (multi-byte integers), empty values, sensitive fields.
func TestHpackEncoder(t *testing.T) {
	long := string(make([]byte, 300))
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":method", Value: "PATCH"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/"}, {Name: ":path", Value: "/a/b%2Fc?q=1"}, {Name: ":authority", Value: "example:80"},
		{Name: ":status", Value: "200"}, {Name: ":status", Value: "503"}, {Name: "accept-encoding", Value: "gzip, deflate"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "www-authenticate", Value: "x"},
		{Name: "x-shard-key", Value: "12345"}, {Name: "x-empty", Value: ""}, {Name: "x-long", Value: long},
		{Name: "authorization", Value: "secret", Sensitive: true}, {Name: "x-secret", Value: "s", Sensitive: true},
	}
	var block []byte
	for _, f := range fields {
		block = AppendField(block, f)
	}
	got := decodeBlock(t, block)
	if len(got) != len(fields) {
		t.Fatalf("decoded %d fields, want %d", len(got), len(fields))
	}
	for i := range fields {
		if got[i] != fields[i] {
			t.Errorf("field %d: decoded %+v, want %+v", i, got[i], fields[i])
		}
	}
	// A table size update first is accepted (and leaves nothing indexed).
	if got := decodeBlock(t, append([]byte{0x20}, AppendField(nil, fields[9])...)); len(got) != 1 || got[0] != fields[9] {
		t.Errorf("after a size update: %+v", got)
	}
}

// FuzzHpackEncoder: any field round-trips through x/net's decoder.
func FuzzHpackEncoder(f *testing.F) {
	f.Add(":path", "/x", false)
	f.Add("content-length", "12", true)
	f.Add("x-a", string(make([]byte, 200)), false)
	f.Fuzz(func(t *testing.T, name, value string, sensitive bool) {
		in := hpack.HeaderField{Name: name, Value: value, Sensitive: sensitive}
		got := decodeBlock(t, AppendField(nil, in))
		if len(got) != 1 || got[0].Name != in.Name || got[0].Value != in.Value {
			t.Fatalf("decoded %+v, want %+v", got, in)
		}
	})
}
