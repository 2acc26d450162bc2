package route

import (
	"encoding/hex"
	"testing"
)

// TestTraceparentParse: W3C Trace Context's rules for a traceparent
// value; anything invalid is taken as no trace context at all.
func TestTraceparentParse(t *testing.T) {
	const id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, c := range []struct {
		v       string
		ok      bool
		sampled bool
	}{
		{"00-" + id + "-" + parent + "-01", true, true},
		{"00-" + id + "-" + parent + "-00", true, false},
		{"00-" + id + "-" + parent + "-09", true, true},                              // other flags kept, sampled bit read
		{"01-" + id + "-" + parent + "-01-more-fields", true, true},                  // a later version: its extra fields skipped
		{"00-" + id + "-" + parent + "-01-more", false, false},                       // version 00 is exactly 55 bytes
		{"ff-" + id + "-" + parent + "-01", false, false},                            // version ff is invalid
		{"00-" + "4BF92F3577B34DA6A3CE929D0E0E4736-" + parent + "-01", false, false}, // upper case
		{"00-00000000000000000000000000000000-" + parent + "-01", false, false},
		{"00-" + id + "-0000000000000000-01", false, false},
		{"00-" + id + "-" + parent + "-0", false, false},
		{"00_" + id + "-" + parent + "-01", false, false},
		{"", false, false},
	} {
		var tc TraceContext
		tc.parse([]byte(c.v))
		if tc.Incoming != c.ok || tc.Sampled() != c.sampled {
			t.Errorf("%q: incoming %v sampled %v, want %v %v", c.v, tc.Incoming, tc.Sampled(), c.ok, c.sampled)
		}
		if c.ok && (hex.EncodeToString(tc.TraceID[:]) != id || hex.EncodeToString(tc.ParentID[:]) != parent) {
			t.Errorf("%q: ids %x %x", c.v, tc.TraceID, tc.ParentID)
		}
		if tc.Outgoing() != nil {
			t.Errorf("%q: an outgoing traceparent without a span", c.v)
		}
	}
	var tc TraceContext
	tc.SetSpan(1, [16]byte{0xab}, [8]byte{0xcd})
	if got := string(tc.Outgoing()); got != "00-ab000000000000000000000000000000-cd00000000000000-01" || tc.OutgoingString() != got {
		t.Errorf("outgoing %q", got)
	}
}
