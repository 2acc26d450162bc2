package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/shard-proxy/shard-proxy/internal/testutil"
	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/shard-proxy/shard-proxy/ring"
)

func webNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "web-" + strconv.Itoa(i)
	}
	return names
}

func mustRing(t *testing.T, rc ring.Config, names []string) ring.Ring {
	t.Helper()
	r, err := ring.New(rc, names)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// movePair is a move between two shard names.
type movePair struct{ from, to string }

// keyShares counts the share of keys key-0…key-(keys-1) that move from each
// shard to each other: an estimate independent of the plan's own sample.
func keyShares(from, to ring.Ring, names []string, keys int) map[movePair]float64 {
	shares := map[movePair]float64{}
	for i := range keys {
		key := []byte("key-" + strconv.Itoa(i))
		if a, b := from.Owner(key), to.Owner(key); a != b {
			shares[movePair{names[a], names[b]}] += 1 / float64(keys)
		}
	}
	return shares
}

// partitionShares counts the partitions whose owner differs, through the
// rings' public Owner only: the contract says a key's partition is
// xxhash64(key) mod partitions, so one key per partition stands for it.
func partitionShares(t *testing.T, from, to ring.Ring, names []string, partitions int) (map[movePair]int, int) {
	t.Helper()
	reps := make([][]byte, partitions)
	found := 0
	for i := 0; found < partitions; i++ {
		if i > 100*partitions {
			t.Fatalf("found keys for only %d of %d partitions", found, partitions)
		}
		key := []byte("p-" + strconv.Itoa(i))
		if p := xxhash.Sum64(key) % uint64(partitions); reps[p] == nil {
			reps[p], found = key, found+1
		}
	}
	counts, total := map[movePair]int{}, 0
	for _, key := range reps {
		if a, b := from.Owner(key), to.Owner(key); a != b {
			counts[movePair{names[a], names[b]}]++
			total++
		}
	}
	return counts, total
}

func getPlan(t *testing.T, a *adminUnderTest, m int) PlanAnswer {
	t.Helper()
	r := call(t, "GET", a.url+"/plan?replicas="+strconv.Itoa(m), nil, nil)
	if r.Status != 200 {
		t.Fatalf("/plan?replicas=%d: %s, want 200", m, r)
	}
	return testutil.Decode[PlanAnswer](t, r)
}

func TestPlanAgainstDirectCount(t *testing.T) {
	const keys = 100_000
	for _, alg := range ring.Algorithms() {
		for _, nm := range [][2]int{{3, 4}, {4, 3}, {3, 5}} {
			n, m := nm[0], nm[1]
			t.Run(fmt.Sprintf("%s/%d->%d", alg, n, m), func(t *testing.T) {
				rc := ring.Config{Algorithm: alg}
				topo := testutil.Topology(testutil.StartShards(t, n, "web"))
				got := getPlan(t, startAdminRing(t, rc, Config{}, &topo), m)
				checkPlanHeader(t, got, alg, n, m)
				from, to := mustRing(t, rc, webNames(n)), mustRing(t, rc, webNames(m))
				if alg == ring.Consistent {
					checkExact(t, got, from, to, webNames(max(n, m)))
				} else {
					checkSampled(t, got, keyShares(from, to, webNames(max(n, m)), keys), keys)
				}
			})
		}
	}
}

func checkPlanHeader(t *testing.T, got PlanAnswer, alg ring.Algorithm, n, m int) {
	t.Helper()
	wantMethod, wantKeys, wantParts := "sample", ring.SampleKeys, 0
	if alg == ring.Consistent {
		wantMethod, wantKeys, wantParts = "exact", 0, ring.DefaultPartitions
	}
	if got.Ring != string(alg) || got.From != n || got.To != m || got.Method != wantMethod || got.SampleKeys != wantKeys || got.Partitions != wantParts {
		t.Errorf("plan = ring %s, %d -> %d, method %s, %d sample keys, %d partitions; want %s, %d -> %d, %s, %d, %d",
			got.Ring, got.From, got.To, got.Method, got.SampleKeys, got.Partitions, alg, n, m, wantMethod, wantKeys, wantParts)
	}
	sum := 0.0
	for i, mv := range got.Moves {
		sum += mv.Fraction
		if i > 0 && (movePair{got.Moves[i-1].From, got.Moves[i-1].To} == movePair{mv.From, mv.To}) {
			t.Errorf("move %s -> %s listed twice", mv.From, mv.To)
		}
		if i > 0 && (mv.From < got.Moves[i-1].From || mv.From == got.Moves[i-1].From && mv.To < got.Moves[i-1].To) {
			t.Errorf("moves out of order: %+v before %+v", got.Moves[i-1], mv)
		}
	}
	if math.Abs(sum-got.MovedFraction) > float64(len(got.Moves))*0.00005+1e-9 || got.Unlisted != nil {
		t.Errorf("moves sum to %.4f, moved_fraction %.4f, unlisted %+v; want the sum, nothing unlisted", sum, got.MovedFraction, got.Unlisted)
	}
}

// checkExact wants every fraction to be the count of partitions that move,
// over the partition count, rounded to 4 decimals: exactly.
func checkExact(t *testing.T, got PlanAnswer, from, to ring.Ring, names []string) {
	t.Helper()
	counts, total := partitionShares(t, from, to, names, ring.DefaultPartitions)
	share := func(c int) float64 { return math.Round(float64(c)/ring.DefaultPartitions*1e4) / 1e4 }
	if len(got.Moves) != len(counts) {
		t.Errorf("%d moves, want %d: got %+v, counted %v", len(got.Moves), len(counts), got.Moves, counts)
	}
	for _, mv := range got.Moves {
		if want := share(counts[movePair{mv.From, mv.To}]); mv.Fraction != want {
			t.Errorf("%s -> %s: fraction %v, want %v (%d of %d partitions)", mv.From, mv.To, mv.Fraction, want,
				counts[movePair{mv.From, mv.To}], ring.DefaultPartitions)
		}
	}
	if want := share(total); got.MovedFraction != want {
		t.Errorf("moved_fraction %v, want %v (%d of %d partitions)", got.MovedFraction, want, total, ring.DefaultPartitions)
	}
}

// checkSampled wants every fraction within what two independent samples
// of 100,000 keys may differ by (5 sigma), plus the rounding.
func checkSampled(t *testing.T, got PlanAnswer, want map[movePair]float64, keys int) {
	t.Helper()
	slack := func(p float64) float64 { return 5*math.Sqrt(2*p*(1-p)/float64(keys)) + 0.00005 }
	listed := map[movePair]float64{}
	for _, mv := range got.Moves {
		listed[movePair{mv.From, mv.To}] = mv.Fraction
	}
	total := 0.0
	for pair, w := range want {
		total += w
		if g := listed[pair]; math.Abs(g-w) > slack(w) {
			t.Errorf("%s -> %s: fraction %.4f, want %.4f ± %.4f", pair.from, pair.to, g, w, slack(w))
		}
	}
	for pair, g := range listed {
		if _, ok := want[pair]; !ok && g > slack(0.0001) {
			t.Errorf("%s -> %s: fraction %.4f, but no counted key moves so", pair.from, pair.to, g)
		}
	}
	if math.Abs(got.MovedFraction-total) > slack(total) {
		t.Errorf("moved_fraction %.4f, want %.4f ± %.4f", got.MovedFraction, total, slack(total))
	}
}

func TestPlanJumpGrowthMovesAQuarterToTheNewShard(t *testing.T) {
	topo := testutil.Topology(testutil.StartShards(t, 3, "web"))
	got := getPlan(t, startAdminRing(t, ring.Config{}, Config{}, &topo), 4)
	slack := 5 * math.Sqrt(1.0/12*11/12/ring.SampleKeys)
	if len(got.Moves) != 3 {
		t.Fatalf("moves = %+v, want web-0, web-1, web-2 each to web-3", got.Moves)
	}
	for i, mv := range got.Moves {
		if mv.From != fmt.Sprintf("web-%d", i) || mv.To != "web-3" || math.Abs(mv.Fraction-1.0/12) > slack {
			t.Errorf("move %d = %+v, want web-%d -> web-3 of 0.0833 ± %.4f", i, mv, i, slack)
		}
	}
	if math.Abs(got.MovedFraction-0.25) > 5*math.Sqrt(0.25*0.75/ring.SampleKeys) {
		t.Errorf("moved_fraction %.4f, want 0.25", got.MovedFraction)
	}
}

func TestPlanFollowsTheOrdinalsAndIsTheSameOnEveryReplica(t *testing.T) {
	shards := testutil.StartShards(t, 3, "web")
	topo := watch.Topology{Replicas: 3}
	for i, s := range shards {
		// A StatefulSet with spec.ordinals.start: 5.
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: 5 + i, Name: fmt.Sprintf("web-%d", 5+i), Addr: s.Addr, Ready: true})
	}
	for _, alg := range ring.Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			rc := ring.Config{Algorithm: alg}
			one, other := startAdminRing(t, rc, Config{}, &topo), startAdminRing(t, rc, Config{}, &topo)
			first := call(t, "GET", one.url+"/plan?replicas=5", nil, nil)
			again := call(t, "GET", one.url+"/plan?replicas=5", nil, nil)
			replica := call(t, "GET", other.url+"/plan?replicas=5", nil, nil)
			if first.Status != 200 || !bytes.Equal(first.Body, again.Body) || !bytes.Equal(first.Body, replica.Body) {
				t.Errorf("/plan answers differ:\n%s\n%s\n%s", first, again, replica)
			}
			for _, mv := range testutil.Decode[PlanAnswer](t, first).Moves {
				// Only jump promises that growth moves keys to new shards alone.
				if alg == ring.Jump && mv.To != "web-8" && mv.To != "web-9" {
					t.Errorf("move %+v: want keys to move only to the new web-8 and web-9", mv)
				}
			}
		})
	}
}

func TestLocatePlanned(t *testing.T) {
	for _, alg := range ring.Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			rc := ring.Config{Algorithm: alg}
			topo := testutil.Topology(testutil.StartShards(t, 3, "web"))
			a := startAdminRing(t, rc, Config{}, &topo)
			direct := mustRing(t, rc, webNames(5))
			for i := range 50 {
				key := strconv.Itoa(i * 7919)
				if i%2 == 1 {
					key = "user-" + key
				}
				got := testutil.Decode[LocateAnswer](t, call(t, "GET", a.url+"/locate?key="+key+"&replicas=5", nil, nil))
				want := direct.Owner([]byte(key))
				if got.Planned == nil || got.Planned.Ordinal != want || got.Planned.Shard != fmt.Sprintf("web-%d", want) {
					t.Fatalf("locate %s planned %+v, want ordinal %d web-%d", key, got.Planned, want, want)
				}
			}
			if r := call(t, "GET", a.url+"/locate?key=1", nil, nil); bytes.Contains(r.Body, []byte("planned")) {
				t.Errorf("/locate without replicas: %s, want no planned owner", r)
			}
		})
	}
}

func TestPlanRejectsBadReplicas(t *testing.T) {
	topo := testutil.Topology(testutil.StartShards(t, 3, "web"))
	a := startAdminRing(t, ring.Config{}, Config{}, &topo)
	const want = `{"error":"replicas: want a whole number from 1 to 4096"}`
	for _, q := range []string{"", "?replicas", "?replicas=", "?replicas=0", "?replicas=-1", "?replicas=%2B4", "?replicas=4.0",
		"?replicas=abc", "?replicas=4097", "?replicas=99999999999999999999", "?replicas=1e3", "?replicas=%204"} {
		for _, path := range []string{"/plan" + q, "/locate?key=1&" + q[min(1, len(q)):]} {
			if path == "/locate?key=1&" {
				continue // no replicas parameter: an ordinary locate
			}
			r := call(t, "GET", a.url+path, nil, nil)
			var compact bytes.Buffer
			if r.Status != 400 || json.Compact(&compact, r.Body) != nil || compact.String() != want {
				t.Errorf("%s: %s, want 400 %s", path, r, want)
			}
		}
	}
	for _, path := range []string{"/plan?replicas=1", "/plan?replicas=4096", "/plan?replicas=004", "/locate?key=1&replicas=4096"} {
		if r := call(t, "GET", a.url+path, nil, nil); r.Status != 200 {
			t.Errorf("%s: %s, want 200", path, r)
		}
	}
	if r := call(t, "POST", a.url+"/plan?replicas=4", nil, nil); r.Status != 405 {
		t.Errorf("POST /plan: %s, want 405", r)
	}
}

func TestPlanWithoutShards(t *testing.T) {
	a := startAdminRing(t, ring.Config{}, Config{}, nil)
	for _, path := range []string{"/plan?replicas=3", "/locate?key=1&replicas=3"} {
		r := call(t, "GET", a.url+path, nil, nil)
		if r.Status != 503 || testutil.Decode[errorBody](t, r).Error != "no shards" {
			t.Errorf("%s before any topology: %s, want 503 no shards", path, r)
		}
	}
}

// Plans for several M at once, while the topology changes under them: each
// answer must be whole and about the ring it names.
func TestPlanConcurrently(t *testing.T) {
	topo := testutil.Topology(testutil.StartShards(t, 4, "web"))
	a := startAdminRing(t, ring.Config{Algorithm: ring.Consistent}, Config{}, &topo)
	client := testutil.Client(t)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for i := range 4 {
				m := 2 + (g+i)%5
				r, err := testutil.Read(client, testutil.NewRequest(t, "GET", a.url+"/plan?replicas="+strconv.Itoa(m), nil))
				var got PlanAnswer
				if err == nil {
					err = json.Unmarshal(r.Body, &got)
				}
				if err != nil || r.Status != 200 || got.To != m || got.From < 3 || got.Method != "exact" {
					t.Errorf("/plan?replicas=%d: %v %s", m, err, r)
				}
			}
		})
	}
	smaller := topo
	smaller.Replicas, smaller.Shards = 3, topo.Shards[:3]
	a.apply(t, smaller)
	wg.Wait()
}

// Jump from 64 to 400 shards moves 1/(64*400) of the keys between each old
// and each new shard: too little to show at 4 decimals, so the moves are
// summed up instead of listed as zeros.
func TestPlanSumsUpMovesTooSmallToList(t *testing.T) {
	topo := watch.Topology{Replicas: 64}
	for i := range 64 {
		// Addresses are never dialled: a plan only reads the names.
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: fmt.Sprintf("web-%d", i), Addr: testutil.DeadAddr(t)})
	}
	got := getPlan(t, startAdminRing(t, ring.Config{}, Config{}, &topo), 400)
	if got.Unlisted == nil || got.Unlisted.Moves < 1000 {
		t.Fatalf("unlisted = %+v, want thousands of moves too small to list", got.Unlisted)
	}
	sum := got.Unlisted.Fraction
	for _, mv := range got.Moves {
		sum += mv.Fraction
	}
	if want := 1 - 64.0/400; math.Abs(got.MovedFraction-want) > 0.005 || math.Abs(sum-got.MovedFraction) > float64(len(got.Moves)+1)*0.00005 {
		t.Errorf("moved_fraction %.4f, listed and unlisted sum to %.4f; want both about %.4f", got.MovedFraction, sum, want)
	}
}
