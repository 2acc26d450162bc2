package static

import (
	"strings"
	"testing"
)

// TestParseTLS: an https entry is a TLS shard verified for its URL's
// host; AllTLS (--shard-tls) makes every entry one; other schemes are
// refused with the entry named.
func TestParseTLS(t *testing.T) {
	src, err := Parse("https://web-0.example:8443,http://10.0.0.2:8080,10.0.0.3:8080", "")
	if err != nil {
		t.Fatal(err)
	}
	got := src.Topology().Shards
	if !got[0].TLS || got[0].TLSName != "web-0.example" || got[0].Addr != "web-0.example:8443" {
		t.Errorf("https entry: %+v, want TLS verified for web-0.example", got[0])
	}
	if got[1].TLS || got[2].TLS || got[1].TLSName != "" {
		t.Errorf("http entries: %+v %+v, want no TLS", got[1], got[2])
	}
	src.AllTLS()
	got = src.Topology().Shards
	if !got[1].TLS || got[1].TLSName != "10.0.0.2" || !got[2].TLS || got[2].TLSName != "10.0.0.3" {
		t.Errorf("after AllTLS: %+v %+v, want TLS verified for their hosts", got[1], got[2])
	}
	for _, bad := range []string{"ftp://h:1", "https://h:1/path", "https://h"} {
		if _, err := Parse(bad, ""); err == nil || !strings.Contains(err.Error(), "entry 1") {
			t.Errorf("Parse(%q): %v, want an error naming entry 1", bad, err)
		}
	}
}
