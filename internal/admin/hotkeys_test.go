package admin

import (
	"net/http"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/proxy/hotkeys"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
)

type fixedHotKeys struct{ n int }

func (f *fixedHotKeys) HotKeys(n int, shard string) hotkeys.Answer {
	f.n = n
	return hotkeys.Answer{WindowS: 60, SampleRate: 0.0625, Shards: []hotkeys.ShardKeys{
		{Shard: shard, Keys: []hotkeys.Key{{Key: "42", Rate: 12.5}}}}}
}

// TestHotKeysEndpoint: /hotkeys passes n and shard on, validates n, and
// answers the documented shape.
func TestHotKeysEndpoint(t *testing.T) {
	src := &fixedHotKeys{}
	a := startAdmin(t, Config{HotKeys: src}, nil)
	r := call(t, "GET", a.url+"/hotkeys?n=5&shard=web-1", nil, nil)
	got := testutil.Decode[hotkeys.Answer](t, r)
	if r.Status != http.StatusOK || src.n != 5 || len(got.Shards) != 1 || got.Shards[0].Shard != "web-1" || got.Shards[0].Keys[0].Key != "42" {
		t.Fatalf("%d %+v (n=%d)", r.Status, got, src.n)
	}
	for _, bad := range []string{"0", "x", "1001"} {
		if r := call(t, "GET", a.url+"/hotkeys?n="+bad, nil, nil); r.Status != http.StatusBadRequest {
			t.Errorf("n=%s: %d, want 400", bad, r.Status)
		}
	}
}
