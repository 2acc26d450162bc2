package load

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOpenLoopRateAndCounts: an open-loop run sends exactly rate ×
// duration requests, the achieved rate is the one asked for, and every
// shard's row counts what the shard itself counted; over HTTP/1.1 and h2c.
func TestOpenLoopRateAndCounts(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "h2c"}[h2], func(t *testing.T) {
			c := startCluster(t, 3)
			rep := runAgainst(t, c, Config{Keys: keysOf(t, "uniform:1000"), Rate: 500, Duration: 2 * time.Second}, h2)
			checkAtShards(t, c, rep)
			if rep.Scheduled != 1000 || rep.Sent != 1000 || rep.All.Requests != 1000 {
				t.Errorf("scheduled %d, sent %d, answered %d; want 1000 each", rep.Scheduled, rep.Sent, rep.All.Requests)
			}
			if math.Abs(rep.All.Rate-500) > 25 {
				t.Errorf("achieved rate %.1f/s over %.2fs; want 500 ± 5%%", rep.All.Rate, rep.Elapsed)
			}
			for _, r := range rep.Shards {
				if want := float64(r.Requests) / rep.Elapsed; math.Abs(r.Rate-want) > 0.01 || r.Requests < 250 {
					t.Errorf("%s: rate %.1f for %d requests in %.2fs; want about a third of them", r.Shard, r.Rate, r.Requests, rep.Elapsed)
				}
			}
		})
	}
}

// TestSlowShardShowsInItsRow: a shard that takes 50 ms shows 50 ms in
// its own row, and the other shards' rows stay fast. Latency counts from
// the due time, so a generator starved of CPU (the race detector on a
// busy machine) adds its lateness to every row alike: the rows are
// compared with each other, the slow one 50 ms above the rest.
func TestSlowShardShowsInItsRow(t *testing.T) {
	c := startCluster(t, 3)
	c.shards[1].delay.Store(int64(50 * time.Millisecond))
	rep := runAgainst(t, c, Config{Keys: keysOf(t, "uniform:1000"), Rate: 300, Duration: 2 * time.Second}, false)
	checkAtShards(t, c, rep)
	slow := row(t, rep, "web-1")
	if slow.Latency.P50 < 50 {
		t.Errorf("web-1 (50 ms): p50 %.3f ms; want at least 50", slow.Latency.P50)
	}
	for _, name := range []string{"web-0", "web-2"} {
		if r := row(t, rep, name); slow.Latency.P50-r.Latency.P50 < 40 {
			t.Errorf("%s (no delay): p50 %.3f ms, web-1 (50 ms) %.3f; want web-1's at least 40 ms above (late %+v)",
				name, r.Latency.P50, slow.Latency.P50, *rep.Late)
		}
	}
}

// TestStallShowsAtP99OnSchedule: a shard that stalls for a second in the
// middle of an open-loop run shows about a second at its p99, while the
// requests keep leaving on schedule: by each progress point the number
// sent is the schedule's, and every request of the schedule reaches a
// shard. (A closed loop would have stopped sending while it waited.)
func TestStallShowsAtP99OnSchedule(t *testing.T) {
	c := startCluster(t, 3)
	var (
		mu       sync.Mutex
		progress []Progress
	)
	const rate = 300
	cfg := Config{Keys: keysOf(t, "uniform:1000"), Rate: rate, Duration: 3 * time.Second, Interval: 500 * time.Millisecond,
		Progress: func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			progress = append(progress, p)
			if len(progress) == 2 { // 1 s in
				c.shards[0].stallFor(time.Second)
			}
		}}
	rep := runAgainst(t, c, cfg, false)
	checkAtShards(t, c, rep)
	if rep.Sent != 3*rate || rep.All.Requests != 3*rate {
		t.Errorf("sent %d, answered %d; want %d each", rep.Sent, rep.All.Requests, 3*rate)
	}
	stalled := row(t, rep, "web-0")
	if stalled.Latency.P99 < 900 || stalled.Latency.P99 > 1300 || stalled.Latency.Max < 950 {
		t.Errorf("web-0 stalled 1 s: p99 %.1f ms, max %.1f ms; want p99 about 1000 (900 to 1300)", stalled.Latency.P99, stalled.Latency.Max)
	}
	for _, name := range []string{"web-1", "web-2"} {
		if r := row(t, rep, name); r.Latency.P99 > 500 {
			t.Errorf("%s (no stall): p99 %.1f ms; want it well under the stall's second (late %+v)", name, r.Latency.P99, *rep.Late)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range progress {
		want := p.Elapsed.Seconds() * rate
		if float64(p.Sent) > want+1 || float64(p.Sent) < 0.95*want-5 {
			t.Errorf("at %.2fs, %d sent; the schedule says %.0f", p.Elapsed.Seconds(), p.Sent, want)
		}
	}
	if len(progress) < 4 {
		t.Errorf("%d progress points; want one every 500 ms", len(progress))
	}
}

// TestKeyDistributionsAtShards: the keys the shards counted follow each
// source: seq hits every key equally, uniform spreads, zipf piles onto
// its first keys as 1/(k+1)^s, a file's keys come in its order.
func TestKeyDistributionsAtShards(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	var names []string
	for i := range 30 {
		names = append(names, fmt.Sprintf("user-%02d", i))
	}
	if err := os.WriteFile(file, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		spec  string
		check func(t *testing.T, n int, perKey map[string]int)
	}{
		{"seq:200", func(t *testing.T, n int, perKey map[string]int) {
			lo, hi := n/200, (n+199)/200
			for k := range 200 {
				if got := perKey[strconv.Itoa(k)]; got < lo || got > hi {
					t.Errorf("key %d: %d requests of %d; want %d or %d", k, got, n, lo, hi)
				}
			}
		}},
		{"file:" + file, func(t *testing.T, n int, perKey map[string]int) {
			// In turn: the first keys of the file one request more.
			for i, k := range names {
				if want := n/30 + b2i(i < n%30); perKey[k] != want {
					t.Errorf("key %s: %d requests of %d; want %d", k, perKey[k], n, want)
				}
			}
		}},
		{"uniform:20", func(t *testing.T, n int, perKey map[string]int) {
			mean := float64(n) / 20
			for k := range 20 {
				if got := float64(perKey[strconv.Itoa(k)]); math.Abs(got-mean) > 6*math.Sqrt(mean) {
					t.Errorf("key %d: %.0f requests; want %.0f ± 6σ", k, got, mean)
				}
			}
		}},
		{"zipf:1.5:1000", func(t *testing.T, n int, perKey map[string]int) {
			h := 0.0
			for k := 1; k <= 1000; k++ {
				h += math.Pow(float64(k), -1.5)
			}
			for k := range 4 {
				got, want := float64(perKey[strconv.Itoa(k)])/float64(n), math.Pow(float64(k+1), -1.5)/h
				if sigma := math.Sqrt(want * (1 - want) / float64(n)); math.Abs(got-want) > 5*sigma {
					t.Errorf("key %d has %.3f of the %d requests; zipf 1.5 over 1000 keys gives %.3f ± 5σ (%.3f)", k, got, n, want, 5*sigma)
				}
			}
		}},
	} {
		t.Run(c.spec, func(t *testing.T) {
			cl := startCluster(t, 3)
			rep := runAgainst(t, cl, Config{Keys: keysOf(t, c.spec), Concurrency: 8, Duration: 2 * time.Second}, false)
			checkAtShards(t, cl, rep)
			n, perKey := 0, map[string]int{}
			for _, s := range cl.shards {
				sn, m := s.count()
				n += sn
				for k, v := range m {
					if perKey[k] > 0 {
						t.Errorf("key %s reached two shards", k)
					}
					perKey[k] += v
				}
			}
			if n < 300 {
				t.Fatalf("only %d requests in a second; too few to check a distribution", n)
			}
			c.check(t, n, perKey)
			if rep.SplitKeys != 0 || rep.All.Keys != int64(len(perKey)) {
				t.Errorf("report: %d split keys, %d distinct; the shards saw %d distinct keys", rep.SplitKeys, rep.All.Keys, len(perKey))
			}
		})
	}
}

// TestClosedLoopConcurrency: a closed loop of C never has more than C
// requests at the shards at once, and does reach C.
func TestClosedLoopConcurrency(t *testing.T) {
	c := startCluster(t, 3)
	for _, s := range c.shards {
		s.delay.Store(int64(2 * time.Millisecond))
	}
	rep := runAgainst(t, c, Config{Keys: keysOf(t, "uniform:1000"), Concurrency: 5, Duration: time.Second}, false)
	checkAtShards(t, c, rep)
	if got := c.maxSeen.Load(); got != 5 {
		t.Errorf("at most %d requests were at the shards at once; want exactly 5", got)
	}
	if rep.Connections != 5 || rep.Mode != "closed" {
		t.Errorf("report: %d connections, mode %s; want 5, closed", rep.Connections, rep.Mode)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
