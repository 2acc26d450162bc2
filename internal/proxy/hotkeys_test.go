package proxy

import (
	"fmt"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/ring"
)

// TestHotKeysEndToEnd: keys sent through the proxy show up per shard.
func TestHotKeysEndToEnd(t *testing.T) {
	shards := testutil.StartShards(t, 2, "web")
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{HotKeySample: 1}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := testutil.Client(t)
	for i := range 30 {
		key := "1"
		if i%3 == 0 {
			key = fmt.Sprint(i)
		}
		sendKey(t, c, p.url, key, nil)
	}
	a := p.HotKeys(5, "web-1")
	if len(a.Shards) != 1 || a.Shards[0].Shard != "web-1" || len(a.Shards[0].Keys) == 0 || a.Shards[0].Keys[0].Key != "1" {
		t.Fatalf("hot keys %+v, want web-1 with key 1 first", a)
	}
	if a.SampleRate != 1 || a.WindowS <= 0 {
		t.Errorf("sample rate %v window %v", a.SampleRate, a.WindowS)
	}
}
