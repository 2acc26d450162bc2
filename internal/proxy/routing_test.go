package proxy

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/proxy/header"
	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

// keyCase puts key k into a request the way one rule reads it.
type keyCase struct {
	rule string
	req  func(t *testing.T, base, k string) *http.Request
}

var keyCases = []keyCase{
	{"header:X-Account", func(t *testing.T, base, k string) *http.Request {
		r := testutil.NewRequest(t, "GET", base+"/anything", nil)
		r.Header.Set("X-Account", k)
		return r
	}},
	{"query:account", func(t *testing.T, base, k string) *http.Request {
		return testutil.NewRequest(t, "GET", base+"/orders?x=1&account="+k, nil)
	}},
	{"cookie:acct", func(t *testing.T, base, k string) *http.Request {
		r := testutil.NewRequest(t, "GET", base+"/", nil)
		r.AddCookie(&http.Cookie{Name: "other", Value: "zzz"})
		r.AddCookie(&http.Cookie{Name: "acct", Value: k})
		return r
	}},
	{"path:/v1/{tenant}/accounts/{key}", func(t *testing.T, base, k string) *http.Request {
		return testutil.NewRequest(t, "GET", base+"/v1/acme/accounts/"+k+"/orders", nil)
	}},
	{"body:account.id", func(t *testing.T, base, k string) *http.Request {
		v := jsonString(k)
		if _, err := strconv.ParseInt(k, 10, 64); err == nil {
			v = k // integers travel as JSON numbers
		}
		return testutil.NewRequest(t, "POST", base+"/orders", []byte(`{"items":[1,2],"account":{"name":"x","id":`+v+`}}`))
	}},
}

// sampleKeys mixes integers (exercising modulus arithmetic) and strings.
func sampleKeys(n int) []string {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"42", "43", "-1", "0", "12345678901234567890123", "alice", "bob"}
	for len(keys) < n {
		if rng.IntN(2) == 0 {
			keys = append(keys, strconv.FormatInt(rng.Int64N(1<<40)-1<<39, 10))
		} else {
			keys = append(keys, fmt.Sprintf("acct-%x", rng.Uint64()))
		}
	}
	return keys
}

// wantOwner is the formula's owner, computed independently for modulus
// integer keys and with the ring package otherwise.
func wantOwner(t *testing.T, alg ring.Algorithm, shardNames []string, key string) int {
	t.Helper()
	if alg == ring.Modulus {
		if n, ok := new(big.Int).SetString(key, 10); ok {
			return int(new(big.Int).Mod(n, big.NewInt(int64(len(shardNames)))).Int64())
		}
	}
	r, err := ring.New(ring.Config{Algorithm: alg}, shardNames)
	if err != nil {
		t.Fatal(err)
	}
	return r.Owner([]byte(key))
}

func TestRoutingEveryRingAndRule(t *testing.T) {
	shards := testutil.StartShards(t, 5, "web")
	topo := testutil.Topology(shards)
	keys := sampleKeys(60)
	c := testutil.Client(t)
	for _, alg := range ring.Algorithms() {
		for _, kc := range keyCases {
			t.Run(string(alg)+"/"+kc.rule, func(t *testing.T) {
				before := make([]int, len(shards))
				for i, s := range shards {
					before[i] = len(s.Requests())
				}
				p := startProxy(t, Config{Keys: mustRules(t, kc.rule)}, ring.Config{Algorithm: alg}, &topo)
				want := make([]int, len(shards))
				for _, k := range keys {
					owner := wantOwner(t, alg, names(shards), k)
					want[owner]++
					a := testutil.Do(t, c, kc.req(t, p.url, k))
					if a.Status != 200 {
						t.Fatalf("key %q: status %d, body %s", k, a.Status, a.Body)
					}
					if got := a.Header.Get(header.Shard); got != shards[owner].Name {
						t.Errorf("key %q: X-Shard %q, want %q", k, got, shards[owner].Name)
					}
					if got := a.JSON(t)["shard"]; got != shards[owner].Name {
						t.Errorf("key %q: answered by %v, want %s", k, got, shards[owner].Name)
					}
				}
				for i, s := range shards {
					if got := len(s.Requests()) - before[i]; got != want[i] {
						t.Errorf("%s received %d requests, want %d", s.Name, got, want[i])
					}
				}
			})
		}
	}
}

func TestModulusAcceptance(t *testing.T) {
	shards := testutil.StartShards(t, 3, "shard")
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := testutil.Client(t)
	n, _ := new(big.Int).SetString("12345678901234567890123", 10)
	bigOwner := fmt.Sprintf("shard-%d", new(big.Int).Mod(n, big.NewInt(3)).Int64())
	for key, want := range map[string]string{"42": "shard-0", "43": "shard-1", "-1": "shard-2", "12345678901234567890123": bigOwner} {
		r := testutil.NewRequest(t, "GET", p.url+"/", nil)
		r.Header.Set("X-Shard-Key", key)
		if got := testutil.Do(t, c, r).Header.Get(header.Shard); got != want {
			t.Errorf("key %s: routed to %q, want %q", key, got, want)
		}
	}
}

func TestRuleFallbackOrder(t *testing.T) {
	shards := testutil.StartShards(t, 7, "web")
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{Keys: mustRules(t, "path:/accounts/{key},query:k,header:X-Shard-Key")}, ring.Config{Algorithm: ring.Modulus}, &topo)
	c := testutil.Client(t)
	tests := []struct {
		name, url, header string
		want              int
	}{
		{"path wins over query and header", "/accounts/3?k=4", "5", 3},
		{"query when path does not match", "/other/3?k=4", "5", 4},
		{"header last", "/other?x=1", "5", 5},
		{"empty path segment falls through", "/accounts/?k=6", "", 6},
		{"empty query value falls through", "/x?k=", "2", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testutil.NewRequest(t, "GET", p.url+tt.url, nil)
			if tt.header != "" {
				r.Header.Set("X-Shard-Key", tt.header)
			}
			a := testutil.Do(t, c, r)
			if got := a.Header.Get(header.Shard); got != shards[tt.want].Name {
				t.Errorf("routed to %q (status %d), want %q", got, a.Status, shards[tt.want].Name)
			}
		})
	}
}

// Two proxies that learn the same shards in different orders route every key
// alike and report the same fingerprint.
func TestReplicasAgreeWhateverTheOrder(t *testing.T) {
	shards := testutil.StartShards(t, 6, "web")
	topo := testutil.Topology(shards)
	shuffled := watch.Topology{Replicas: topo.Replicas, Shards: slices.Clone(topo.Shards)}
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled.Shards), func(i, j int) {
		shuffled.Shards[i], shuffled.Shards[j] = shuffled.Shards[j], shuffled.Shards[i]
	})
	for _, alg := range ring.Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			cfg := ring.Config{Algorithm: alg}
			a := startProxy(t, Config{}, cfg, &topo)
			b := startProxy(t, Config{}, cfg, &shuffled)
			if a.Table().Fingerprint != b.Table().Fingerprint {
				t.Fatalf("fingerprints differ: %s vs %s", a.Table().Fingerprint, b.Table().Fingerprint)
			}
			c := testutil.Client(t)
			for i := range 10000 {
				key := "k" + strconv.Itoa(i)
				if i%20 == 0 { // a sample goes through the sockets, all through the tables
					ra := testutil.NewRequest(t, "GET", a.url+"/", nil)
					ra.Header.Set("X-Shard-Key", key)
					rb := testutil.NewRequest(t, "GET", b.url+"/", nil)
					rb.Header.Set("X-Shard-Key", key)
					if x, y := testutil.Do(t, c, ra).Header.Get(header.Shard), testutil.Do(t, c, rb).Header.Get(header.Shard); x != y || x == "" {
						t.Fatalf("key %s: proxy a routes to %q, b to %q", key, x, y)
					}
				}
				sa, _, _ := a.Table().Owner([]byte(key))
				sb, _, _ := b.Table().Owner([]byte(key))
				if sa.Name != sb.Name {
					t.Fatalf("key %s: %s vs %s", key, sa.Name, sb.Name)
				}
			}
		})
	}
}

// The data port never broadcasts: /broadcast/... is an ordinary path routed by key.
func TestBroadcastPathIsKeyedOnDataPort(t *testing.T) {
	shards := testutil.StartShards(t, 4, "web")
	topo := testutil.Topology(shards)
	p := startProxy(t, Config{}, ring.Config{Algorithm: ring.Modulus}, &topo)
	r := testutil.NewRequest(t, "POST", p.url+"/broadcast/cache/evict", []byte("x"))
	r.Header.Set("X-Shard-Key", "6")
	if a := testutil.Do(t, testutil.Client(t), r); a.Status != 200 || a.Header.Get(header.Shard) != "web-2" {
		t.Fatalf("status %d X-Shard %q, want 200 from web-2 only", a.Status, a.Header.Get(header.Shard))
	}
	for i, s := range shards {
		want := 0
		if i == 2 {
			want = 1
		}
		if got := len(s.Requests()); got != want {
			t.Errorf("%s received %d requests, want %d", s.Name, got, want)
		}
	}
	if a := testutil.Do(t, testutil.Client(t), testutil.NewRequest(t, "POST", p.url+"/broadcast/x", nil)); a.Status != 400 {
		t.Errorf("keyless /broadcast/x on the data port: %d, want 400 no shard key", a.Status)
	}
}
