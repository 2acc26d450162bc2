package header

import (
	"strings"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/proxy/h1"
)

// TestClassifyHopByHopIsTheList: Classify's hop-by-hop names are exactly
// h1.HopByHopFields, the list the HTTP/1.1 parser flags, in any case.
func TestClassifyHopByHopIsTheList(t *testing.T) {
	for _, name := range h1.HopByHopFields {
		for _, spelled := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			if got := Classify(spelled); got != HopByHop {
				t.Errorf("Classify(%q) = %d, want HopByHop", spelled, got)
			}
			if got := Classify([]byte(spelled)); got != HopByHop {
				t.Errorf("Classify([]byte(%q)) = %d, want HopByHop", spelled, got)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		name string
		want Class
	}{
		{"x-forwarded-for", ForwardedFor},
		{"X-FORWARDED-PROTO", ForwardedProto},
		{"X-Forwarded-Host", ForwardedHost},
		{"x-shard-previous", PreviousOwner},
		{"X-Shard-Previous-Address", PreviousOwner},
		{"x-shard", ShardName},
		{"Content-Length", EndToEnd},
		{"Trailer", EndToEnd}, // end-to-end in RFC 9110: trailers keep their announcement
		{"X-Forwarded-Fox", EndToEnd},
		{"Connectio", EndToEnd},
		{"Connection\x00", EndToEnd},
		{"T\xc5", EndToEnd},
		{"X-Shard-Key", EndToEnd},
		{"Tf", EndToEnd},
		{"t\x05", EndToEnd}, // 'e'^0x20 is not a letter's other case
	} {
		if got := Classify(tt.name); got != tt.want {
			t.Errorf("Classify(%q) = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	name := []byte("X-Forwarded-For")
	if n := testing.AllocsPerRun(100, func() { Classify(name) }); n != 0 {
		t.Errorf("Classify allocates %.0f times, want 0", n)
	}
}

func TestParseGRPCTimeout(t *testing.T) {
	for v, want := range map[string]bool{"100m": true, "5S": true, "1H": true, "9n": true, "": false, "5": false, "5x": false, "-1S": false, "1234567890S": false} {
		if _, ok := ParseGRPCTimeout(v); ok != want {
			t.Errorf("ParseGRPCTimeout(%q) ok = %t, want %t", v, ok, want)
		}
	}
}
