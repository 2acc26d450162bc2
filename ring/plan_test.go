package ring

import (
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/buraksezer/consistent"
)

// countMoves counts, over the test's own sample keys (not Compare's), how
// many keys move between each pair of shard indexes.
func countMoves(a, b Ring, keys int) map[[2]int]int {
	counts := map[[2]int]int{}
	moved(a, b, keys, func(_ []byte, from, to int) { counts[[2]int{from, to}]++ })
	return counts
}

// partitionMoves counts partitions whose owner differs, reading both
// partition tables from the library itself rather than from our copy.
func partitionMoves(t *testing.T, from, to []string, partitions int) map[[2]int]int {
	t.Helper()
	owners := func(names []string) []int {
		c := consistent.New(members(names), libraryConfig(partitions))
		index := map[string]int{}
		for i, n := range names {
			index[n] = i
		}
		o := make([]int, partitions)
		for p := range o {
			o[p] = index[c.GetPartitionOwner(p).String()]
		}
		return o
	}
	a, b := owners(from), owners(to)
	counts := map[[2]int]int{}
	for p := range a {
		if a[p] != b[p] {
			counts[[2]int{a[p], b[p]}]++
		}
	}
	return counts
}

func diffCounts(d Diff, total int) map[[2]int]int {
	got := map[[2]int]int{}
	for _, m := range d.Moves {
		got[[2]int{m.From, m.To}] = int(math.Round(m.Fraction * float64(total)))
	}
	return got
}

// checkShape checks what every Diff promises: moves sorted by from then to,
// each a real move with a positive fraction, summing to Moved.
func checkShape(t *testing.T, d Diff, n, m int) {
	t.Helper()
	sum := 0.0
	for i, mv := range d.Moves {
		if mv.From == mv.To || mv.From < 0 || mv.From >= n || mv.To < 0 || mv.To >= m || mv.Fraction <= 0 {
			t.Errorf("move %d = %+v: want distinct indexes below %d and %d and a positive fraction", i, mv, n, m)
		}
		if i > 0 && (mv.From < d.Moves[i-1].From || mv.From == d.Moves[i-1].From && mv.To <= d.Moves[i-1].To) {
			t.Errorf("moves %d and %d out of order: %+v, %+v", i-1, i, d.Moves[i-1], mv)
		}
		sum += mv.Fraction
	}
	if math.Abs(sum-d.Moved) > 1e-9 {
		t.Errorf("moves sum to %v, Moved = %v", sum, d.Moved)
	}
}

func TestCompareAgainstDirectCount(t *testing.T) {
	const keys = 100_000
	for _, alg := range Algorithms() {
		for _, nm := range [][2]int{{3, 4}, {4, 3}, {3, 5}} {
			n, m := nm[0], nm[1]
			t.Run(fmt.Sprintf("%s/%d->%d", alg, n, m), func(t *testing.T) {
				a, b := mustNew(t, Config{Algorithm: alg}, shardNames(n)), mustNew(t, Config{Algorithm: alg}, shardNames(m))
				d := Compare(a, b)
				checkShape(t, d, n, m)
				if want := alg == Consistent; d.Exact != want {
					t.Fatalf("Exact = %t, want %t", d.Exact, want)
				}
				if alg == Consistent {
					got, want := diffCounts(d, DefaultPartitions), partitionMoves(t, shardNames(n), shardNames(m), DefaultPartitions)
					if !reflect.DeepEqual(got, want) {
						t.Errorf("partitions moved per pair = %v, want %v (counted in the library's tables)", got, want)
					}
				} else if d.Sampled != SampleKeys {
					t.Errorf("Sampled = %d, want %d", d.Sampled, SampleKeys)
				}
				checkAgainstKeys(t, d, countMoves(a, b, keys), keys)
			})
		}
	}
}

// checkAgainstKeys compares d with counts of keys moved out of keys: two
// estimates of the same share, each with its own binomial error (none for
// an exact d, but the count still has it).
func checkAgainstKeys(t *testing.T, d Diff, counts map[[2]int]int, keys int) {
	t.Helper()
	got := map[[2]int]float64{}
	for _, mv := range d.Moves {
		got[[2]int{mv.From, mv.To}] = mv.Fraction
	}
	total := 0
	for pair, c := range counts {
		total += c
		want := float64(c) / float64(keys)
		if slack := math.Sqrt2 * binomialSlack(keys, want) / float64(keys); math.Abs(got[pair]-want) > slack {
			t.Errorf("%d -> %d: fraction %.5f, want %.5f ± %.5f (counted over %d keys)", pair[0], pair[1], got[pair], want, slack, keys)
		}
	}
	for pair, f := range got {
		if _, ok := counts[pair]; !ok && f > 5.0/float64(keys) {
			t.Errorf("%d -> %d: fraction %.5f, but no counted key moves so", pair[0], pair[1], f)
		}
	}
	want := float64(total) / float64(keys)
	if slack := math.Sqrt2 * binomialSlack(keys, want) / float64(keys); math.Abs(d.Moved-want) > slack {
		t.Errorf("Moved = %.5f, want %.5f ± %.5f", d.Moved, want, slack)
	}
}

func TestCompareJumpGrowthMovesAQuarterToTheNewShard(t *testing.T) {
	d := Compare(mustNew(t, Config{}, shardNames(3)), mustNew(t, Config{}, shardNames(4)))
	slack := binomialSlack(SampleKeys, 1.0/12) / SampleKeys
	if len(d.Moves) != 3 {
		t.Fatalf("moves = %+v, want one from each of 0, 1, 2 to 3", d.Moves)
	}
	for i, mv := range d.Moves {
		if mv.From != i || mv.To != 3 || math.Abs(mv.Fraction-1.0/12) > slack {
			t.Errorf("move %d = %+v, want %d -> 3 of 1/12 ± %.4f", i, mv, i, slack)
		}
	}
	if slack := binomialSlack(SampleKeys, 0.25) / SampleKeys; math.Abs(d.Moved-0.25) > slack {
		t.Errorf("Moved = %.5f, want 1/4 ± %.4f", d.Moved, slack)
	}
}

func TestCompareIsDeterministic(t *testing.T) {
	for _, alg := range Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			// Rings built twice, as two proxy replicas would.
			first := Compare(mustNew(t, Config{Algorithm: alg}, shardNames(5)), mustNew(t, Config{Algorithm: alg}, shardNames(7)))
			second := Compare(mustNew(t, Config{Algorithm: alg}, shardNames(5)), mustNew(t, Config{Algorithm: alg}, shardNames(7)))
			if !reflect.DeepEqual(first, second) {
				t.Errorf("two comparisons differ:\n%+v\n%+v", first, second)
			}
		})
	}
}

func TestCompareEdgeCases(t *testing.T) {
	jump3 := mustNew(t, Config{}, shardNames(3))
	tests := []struct {
		name      string
		a, b      Ring
		wantMoved float64
		wantExact bool
	}{
		{name: "same ring", a: jump3, b: jump3, wantMoved: 0},
		{name: "empty from", a: mustNew(t, Config{}, nil), b: jump3, wantMoved: 0},
		{name: "empty to", a: jump3, b: mustNew(t, Config{}, nil), wantMoved: 0},
		{name: "consistent against jump is sampled", a: mustNew(t, Config{Algorithm: Consistent}, shardNames(3)), b: jump3, wantMoved: -1},
		{name: "consistent rings of other partition counts are sampled",
			a: mustNew(t, Config{Algorithm: Consistent, Partitions: 101}, shardNames(3)), b: mustNew(t, Config{Algorithm: Consistent}, shardNames(3)), wantMoved: -1},
		{name: "same consistent ring is exact", a: mustNew(t, Config{Algorithm: Consistent}, shardNames(3)),
			b: mustNew(t, Config{Algorithm: Consistent}, shardNames(3)), wantMoved: 0, wantExact: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Compare(tt.a, tt.b)
			if d.Exact != tt.wantExact || d.Moves == nil && tt.a.Len() > 0 && tt.b.Len() > 0 {
				t.Errorf("Exact = %t, Moves = %v; want Exact %t and a non-nil list", d.Exact, d.Moves, tt.wantExact)
			}
			if tt.wantMoved >= 0 && (d.Moved != tt.wantMoved || len(d.Moves) != 0) {
				t.Errorf("Moved = %v with %d moves, want %v and none", d.Moved, len(d.Moves), tt.wantMoved)
			}
			if tt.wantMoved < 0 && (d.Moved <= 0 || d.Sampled != SampleKeys) {
				t.Errorf("Moved = %v from %d keys, want a sampled share above 0", d.Moved, d.Sampled)
			}
		})
	}
}

// The sample walks 100,000 keys; its allocations must not grow with them.
func TestCompareDoesNotAllocatePerKey(t *testing.T) {
	for _, alg := range Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			a, b := mustNew(t, Config{Algorithm: alg}, shardNames(3)), mustNew(t, Config{Algorithm: alg}, shardNames(5))
			// One slice of pairs, the moves list as it grows (15 moves at
			// most here), nothing per key.
			if got := testing.AllocsPerRun(3, func() { Compare(a, b) }); got > 8 {
				t.Errorf("Compare made %v allocations, want at most 8", got)
			}
		})
	}
}

func BenchmarkCompare(b *testing.B) {
	for _, alg := range Algorithms() {
		for _, nm := range [][2]int{{3, 4}, {64, 65}} {
			from, to := mustNew(b, Config{Algorithm: alg}, shardNames(nm[0])), mustNew(b, Config{Algorithm: alg}, shardNames(nm[1]))
			b.Run(fmt.Sprintf("%s/%d->%d", alg, nm[0], nm[1]), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					Compare(from, to)
				}
			})
		}
	}
}
