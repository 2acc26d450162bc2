package load

import (
	"slices"
	"strconv"
	"time"
)

// Report is what a run measured. Latencies are in milliseconds.
type Report struct {
	// Method and Target are the request as given (Run leaves them empty).
	Method string `json:"method,omitempty"`
	Target string `json:"target,omitempty"`
	// Via is how requests were sent: "http/1.1", "h2c" or "direct".
	Via string `json:"via,omitempty"`
	// Keys is the key source as --keys spells it.
	Keys string `json:"keys"`
	// Mode is "open" (Rate) or "closed" (Concurrency).
	Mode        string  `json:"mode"`
	Rate        float64 `json:"rate,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`
	// Duration is the planned sending time and Elapsed the time requests
	// were actually sent, in seconds.
	Duration float64 `json:"duration_s"`
	Elapsed  float64 `json:"elapsed_s"`
	// Interrupted is set when the run was cut short (Ctrl-C).
	Interrupted bool `json:"interrupted,omitempty"`
	// Scheduled is, in an open loop, the number of requests due by the
	// end of the sending time; Sent the number sent; Unfinished those
	// sent whose answer was cut short by an interruption.
	Scheduled  int64 `json:"scheduled,omitempty"`
	Sent       int64 `json:"sent"`
	Unfinished int64 `json:"unfinished,omitempty"`
	// Late is how late open-loop requests left (nil in a closed loop).
	Late *Lateness `json:"late,omitempty"`
	// Connections is the number of connections (workers) the run used.
	Connections int64 `json:"connections"`
	// GeneratorCPU is the CPU time (user and system) the generating
	// process used during the run, in seconds; a share of Elapsed near
	// the cores it may use means the generator, not the server, set the
	// pace. 0 where unknown.
	GeneratorCPU float64 `json:"generator_cpu_s"`
	// SplitKeys counts keys answered by more than one shard (when the
	// key source is small enough to count keys one by one).
	SplitKeys int64 `json:"split_keys"`
	// All is every request; Shards one row per X-Shard value, in order
	// of name.
	All    Row   `json:"all"`
	Shards []Row `json:"shards"`
	// HotKeys are the most requested keys (when keys are counted).
	HotKeys []HotKey `json:"hot_keys,omitempty"`
}

// Lateness is how late open-loop requests were sent after their due time.
type Lateness struct {
	// Count is the number later than Threshold.
	Count     int64   `json:"count"`
	Threshold float64 `json:"threshold_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
}

// Row is one shard's (or all shards') requests.
type Row struct {
	Shard string `json:"shard"`
	// Requests counts answers and errors; Rate is Requests per second of
	// Elapsed.
	Requests int64   `json:"requests"`
	Rate     float64 `json:"rate"`
	// Status counts answers by status code, Errors requests without an
	// answer by kind (connect, write, read, timeout, protocol).
	Status map[string]int64 `json:"status"`
	Errors map[string]int64 `json:"errors,omitempty"`
	// Latency of the answers.
	Latency Latency `json:"latency"`
	// Keys is the number of distinct keys answered (when counted).
	Keys int64 `json:"keys,omitempty"`
	// Series is the latency over time, one Point per interval.
	Series []Point `json:"series,omitempty"`
}

// Latency is a latency distribution's summary, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// HotKey is one of the most requested keys.
type HotKey struct {
	Key      string `json:"key"`
	Shard    string `json:"shard"`
	Requests int64  `json:"requests"`
}

const hotKeys = 10

func (r *run) report(interrupted bool, sendEnd time.Time) *Report {
	rec := r.rec
	rec.mu.Lock()
	defer rec.mu.Unlock()
	elapsed := sendEnd.Sub(r.start).Seconds()
	rep := &Report{
		Keys: r.cfg.Keys.String(), Mode: "closed", Concurrency: r.cfg.Concurrency,
		Duration: r.cfg.Duration.Seconds(), Elapsed: elapsed, Interrupted: interrupted,
		Sent: r.sent.Load(), Connections: int64(len(r.conns)), SplitKeys: rec.split,
		GeneratorCPU: (processCPU() - r.cpu0).Seconds(),
	}
	rep.Unfinished = rep.Sent - r.done.Load()
	if r.cfg.Rate > 0 {
		rep.Mode, rep.Rate, rep.Concurrency = "open", r.cfg.Rate, 0
		rep.Scheduled = min(int64(elapsed*r.cfg.Rate)+1, int64(r.cfg.Rate*r.cfg.Duration.Seconds()))
		rep.Late = &Lateness{Count: rec.nLate, Threshold: r.cfg.LateAfter.Seconds() * 1000,
			P99: ms(rec.late.ValueAtQuantile(99)), Max: ms(rec.late.Max())}
	}
	rep.All = rec.all.row(elapsed)
	for _, s := range rec.order {
		rep.Shards = append(rep.Shards, s.row(elapsed))
	}
	slices.SortFunc(rep.Shards, func(a, b Row) int { return compareNames(a.Shard, b.Shard) })
	rep.HotKeys = rec.hotKeys(r.cfg.Keys)
	return rep
}

func (s *shardStats) row(elapsed float64) Row {
	row := Row{Shard: s.name, Requests: s.done, Status: map[string]int64{}, Keys: s.keys, Series: s.series}
	if elapsed > 0 {
		row.Rate = float64(s.done) / elapsed
	}
	for code, n := range s.status {
		if n > 0 {
			row.Status[strconv.Itoa(code)] = n
		}
	}
	if len(s.errors) > 0 {
		row.Errors = s.errors
	}
	if s.hist.TotalCount() > 0 {
		v := s.hist.ValueAtPercentiles([]float64{50, 90, 99, 99.9})
		row.Latency = Latency{P50: ms(v[50]), P90: ms(v[90]), P99: ms(v[99]), P999: ms(v[99.9]),
			Max: ms(s.hist.Max()), Mean: s.hist.Mean() / 1000}
	}
	return row
}

func (rec *recorder) hotKeys(keys KeySource) []HotKey {
	if rec.keyHits == nil {
		return nil
	}
	var top []uint64 // key ids, most requested first
	for id, n := range rec.keyHits {
		if n == 0 || (len(top) == hotKeys && n <= rec.keyHits[top[hotKeys-1]]) {
			continue
		}
		i, _ := slices.BinarySearchFunc(top, n, func(k uint64, n uint32) int {
			if rec.keyHits[k] >= n {
				return -1
			}
			return 1
		})
		top = slices.Insert(top, i, uint64(id))
		if len(top) > hotKeys {
			top = top[:hotKeys]
		}
	}
	out := make([]HotKey, len(top))
	for i, id := range top {
		out[i] = HotKey{Key: string(keys.Append(nil, id)), Requests: int64(rec.keyHits[id])}
		if idx := rec.keyShard[id]; idx > 0 {
			out[i].Shard = rec.order[idx-1].name
		}
	}
	return out
}

// compareNames orders shard names as people do: demo-2 before demo-10,
// unrouted and other last.
func compareNames(a, b string) int {
	if rank(a) != rank(b) {
		return rank(a) - rank(b)
	}
	pa, na := splitOrdinal(a)
	pb, nb := splitOrdinal(b)
	if pa != pb || na < 0 || nb < 0 {
		if a < b {
			return -1
		}
		return 1
	}
	return na - nb
}

func rank(name string) int {
	if name == unrouted || name == "other" {
		return 1
	}
	return 0
}

// splitOrdinal splits "web-12" into "web-" and 12; the number is -1 when
// the name does not end in digits.
func splitOrdinal(name string) (string, int) {
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	n, err := strconv.Atoi(name[i:])
	if err != nil {
		return name, -1
	}
	return name[:i], n
}
