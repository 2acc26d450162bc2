package ring

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// shardNames returns the names of a StatefulSet "web" with n replicas.
func shardNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "web-" + strconv.Itoa(i)
	}
	return names
}

func mustNew(t testing.TB, cfg Config, names []string) Ring {
	t.Helper()
	r, err := New(cfg, names)
	if err != nil {
		t.Fatalf("New(%+v, %d names): %v", cfg, len(names), err)
	}
	return r
}

// sampleKey writes the i-th sample key into buf, so tests can walk a million
// keys without a million allocations.
func sampleKey(buf []byte, i int) []byte {
	return strconv.AppendInt(append(buf[:0], "key-"...), int64(i), 10)
}

func TestParseAlgorithm(t *testing.T) {
	tests := []struct {
		in      string
		want    Algorithm
		wantErr bool
	}{
		{in: "jump", want: Jump},
		{in: "consistent", want: Consistent},
		{in: "modulus", want: Modulus},
		{in: "", wantErr: true},
		{in: "Jump", wantErr: true},
		{in: " jump", wantErr: true},
		{in: "rendezvous", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			got, err := ParseAlgorithm(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseAlgorithm(%q) = %q, want error", tt.in, got)
				}
				if msg := err.Error(); !strings.Contains(msg, "jump, consistent, modulus") {
					t.Errorf("error %q does not name the valid algorithms", msg)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseAlgorithm(%q) = %q, %v; want %q, nil", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestAlgorithms(t *testing.T) {
	got := Algorithms()
	want := []Algorithm{Jump, Consistent, Modulus}
	if len(got) != len(want) {
		t.Fatalf("Algorithms() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Algorithms()[%d] = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		names   []string
		wantIs  error
		wantMsg string
	}{
		{name: "duplicate", names: []string{"web-0", "web-1", "web-0"}, wantIs: errDuplicateName, wantMsg: `shards 0 and 2: duplicate shard name "web-0"`},
		{name: "duplicate consistent", cfg: Config{Algorithm: Consistent}, names: []string{"a", "a"}, wantIs: errDuplicateName},
		{name: "empty name", names: []string{"web-0", ""}, wantIs: errEmptyName, wantMsg: "shard 1: empty shard name"},
		{name: "empty name modulus", cfg: Config{Algorithm: Modulus}, names: []string{""}, wantIs: errEmptyName},
		{name: "unknown algorithm", cfg: Config{Algorithm: "maglev"}, names: shardNames(3), wantMsg: `unknown ring algorithm "maglev"`},
		{name: "unknown algorithm no shards", cfg: Config{Algorithm: "maglev"}, wantMsg: "valid are jump, consistent, modulus"},
		{name: "negative partitions consistent", cfg: Config{Algorithm: Consistent, Partitions: -1}, names: shardNames(3), wantMsg: "partitions must not be negative (0 means 7919), got -1"},
		{name: "negative partitions jump", cfg: Config{Partitions: -7}, names: shardNames(3), wantMsg: "partitions must not be negative"},
		{name: "too many partitions", cfg: Config{Algorithm: Consistent, Partitions: maxPartitions + 1}, names: shardNames(3), wantMsg: "partitions must be at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.cfg, tt.names)
			if err == nil {
				t.Fatalf("New(%+v, %q) = %T, want error", tt.cfg, tt.names, r)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %q", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestNewNoShards(t *testing.T) {
	for _, alg := range Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			for _, names := range [][]string{nil, {}} {
				r := mustNew(t, Config{Algorithm: alg}, names)
				if got := r.Len(); got != 0 {
					t.Errorf("Len() = %d, want 0", got)
				}
				if got := r.Owner([]byte("42")); got != -1 {
					t.Errorf("Owner(42) = %d, want -1", got)
				}
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	if r := mustNew(t, Config{}, shardNames(5)); r != (jumpRing{n: 5}) {
		t.Errorf("New(Config{}) = %#v, want jumpRing{n: 5}", r)
	}
	r := mustNew(t, Config{Algorithm: Consistent}, shardNames(5)).(*consistentRing)
	if got := len(r.owners); got != DefaultPartitions {
		t.Errorf("consistent with Partitions 0 has %d partitions, want %d", got, DefaultPartitions)
	}
	// Partitions is documented as consistent-only: other algorithms must
	// neither reject nor use it.
	if r := mustNew(t, Config{Algorithm: Modulus, Partitions: 13}, shardNames(5)); r != (modulusRing{n: 5}) {
		t.Errorf("New(modulus, Partitions 13) = %#v, want modulusRing{n: 5}", r)
	}
}

func TestOwnerInRange(t *testing.T) {
	var buf []byte
	for _, alg := range Algorithms() {
		for _, n := range []int{1, 2, 3, 7, 64, 257} {
			t.Run(string(alg)+"/N="+strconv.Itoa(n), func(t *testing.T) {
				r := mustNew(t, Config{Algorithm: alg}, shardNames(n))
				if got := r.Len(); got != n {
					t.Fatalf("Len() = %d, want %d", got, n)
				}
				for i := range 2000 {
					buf = sampleKey(buf, i)
					if got := r.Owner(buf); got < 0 || got >= n {
						t.Fatalf("Owner(%q) = %d, want in [0, %d)", buf, got, n)
					}
				}
			})
		}
	}
}

func TestOwnerDoesNotAllocate(t *testing.T) {
	keys := [][]byte{[]byte("42"), []byte("-12345678901234567890123"), []byte("user-42"), nil}
	for _, alg := range Algorithms() {
		for _, n := range []int{0, 1, 256} {
			t.Run(string(alg)+"/N="+strconv.Itoa(n), func(t *testing.T) {
				r := mustNew(t, Config{Algorithm: alg}, shardNames(n))
				for _, key := range keys {
					if got := testing.AllocsPerRun(100, func() { r.Owner(key) }); got != 0 {
						t.Errorf("Owner(%q) allocates %v times per call, want 0", key, got)
					}
				}
			})
		}
	}
}

// TestOwnerConcurrent is for -race: rings are shared by every request
// goroutine without a lock.
func TestOwnerConcurrent(t *testing.T) {
	for _, alg := range Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			r := mustNew(t, Config{Algorithm: alg}, shardNames(10))
			want := make([]int, 1000)
			var buf []byte
			for i := range want {
				buf = sampleKey(buf, i)
				want[i] = r.Owner(buf)
			}
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					var buf []byte
					for i := range want {
						buf = sampleKey(buf, i)
						if got := r.Owner(buf); got != want[i] {
							t.Errorf("concurrent Owner(%q) = %d, want %d", buf, got, want[i])
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
