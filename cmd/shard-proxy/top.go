package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/admin"
	"github.com/shard-proxy/shard-proxy/internal/proxy/hotkeys"
)

const topUsage = "shard-proxy top [--interval 2s] [-n 5] [--once] [--admin URL] [-o json]"

// clearScreen moves the cursor home and clears the terminal (ANSI).
const clearScreen = "\x1b[H\x1b[2J"

// topOptions are the flags of top besides the client flags.
type topOptions struct {
	interval time.Duration
	n        int
	once     bool
}

func cmdTop(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	t := topOptions{interval: 2 * time.Second, n: 5}
	extra := func(fs *flag.FlagSet, _ *clientOptions) {
		fs.DurationVar(&t.interval, "interval", t.interval, "time between frames, and between the two /metrics scrapes a rate needs")
		fs.IntVar(&t.n, "n", t.n, "hot keys shown per shard")
		fs.BoolVar(&t.once, "once", false, "print one frame and exit")
	}
	return clientMain("top", topUsage, 0, extra, args, getenv, stdout, stderr,
		func(c *adminClient, o *clientOptions, _ []string) (int, error) {
			if t.interval <= 0 || t.n < 1 {
				return 2, fmt.Errorf("--interval %v, -n %d: want a positive duration and n >= 1: %s", t.interval, t.n, topUsage)
			}
			return runTop(c, o, t, stdout)
		})
}

// runTop scrapes /metrics every interval and prints a frame per scrape,
// from the second on: a rate needs two. It returns on the first error.
func runTop(c *adminClient, o *clientOptions, t topOptions, stdout io.Writer) (int, error) {
	prev, err := scrape(c)
	if err != nil {
		return 1, err
	}
	for {
		time.Sleep(t.interval)
		cur, err := scrape(c)
		if err != nil {
			return 1, err
		}
		f, err := fetchFrame(c, t.n, prev, cur)
		if err != nil {
			return 1, err
		}
		if !t.once && o.output != "json" {
			fmt.Fprint(stdout, clearScreen)
		}
		if err := writeFrame(stdout, o.output, c.base, f); err != nil || t.once {
			return exitFor(err), err
		}
		prev = cur
	}
}

// topFrame is one refresh of top; -o json prints it as a JSON line.
type topFrame struct {
	Ring        string        `json:"ring"`
	Replicas    int           `json:"replicas"`
	Ready       int           `json:"ready"`
	Fingerprint string        `json:"fingerprint"`
	WindowS     float64       `json:"window_s"`
	Shards      []topShardRow `json:"shards"`
}

// topShardRow is one shard's line of a frame. P99S is null when the shard
// answered nothing in the window.
type topShardRow struct {
	Shard      string        `json:"shard"`
	Ready      bool          `json:"ready"`
	OwnsKeys   bool          `json:"owns_keys"`
	RPS        float64       `json:"rps"`
	ErrorRatio float64       `json:"error_ratio"`
	P99S       *float64      `json:"p99_s"`
	HotKeys    []hotkeys.Key `json:"hot_keys"`
}

func fetchFrame(c *adminClient, n int, prev, cur metricsScrape) (topFrame, error) {
	var shards admin.ShardsAnswer
	var hot hotkeys.Answer
	if err := getInto(c, "/shards", &shards); err != nil {
		return topFrame{}, err
	}
	if err := getInto(c, "/hotkeys?n="+strconv.Itoa(n), &hot); err != nil {
		return topFrame{}, err
	}
	keys := map[string][]hotkeys.Key{}
	for _, h := range hot.Shards {
		keys[h.Shard] = h.Keys
	}
	f := topFrame{Ring: shards.Ring, Replicas: shards.Replicas, Ready: shards.Ready, Fingerprint: shards.Fingerprint,
		WindowS: cur.at.Sub(prev.at).Seconds(), Shards: []topShardRow{}}
	for _, s := range shards.Shards {
		row := shardRates(s.Name, prev, cur)
		row.Ready, row.OwnsKeys, row.HotKeys = s.Ready, s.OwnsKeys, keys[s.Name]
		if row.HotKeys == nil {
			row.HotKeys = []hotkeys.Key{}
		}
		f.Shards = append(f.Shards, row)
	}
	return f, nil
}

func getInto(c *adminClient, path string, v any) error {
	status, body, err := c.do("GET", path, nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return apiError(status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

func writeFrame(w io.Writer, output, base string, f topFrame) error {
	if output == "json" {
		return json.NewEncoder(w).Encode(f)
	}
	fmt.Fprintf(w, "%s  ring %s, N=%d, %d ready, fingerprint %s; rates over %.1fs\n\n",
		base, f.Ring, f.Replicas, f.Ready, f.Fingerprint, f.WindowS)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tSTATE\tREQ/S\t5XX\tP99\tHOT KEYS (REQ/S)")
	for _, r := range f.Shards {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f%%\t%s\t%s\n", r.Shard, stateOf(r), r.RPS, 100*r.ErrorRatio, fmtSeconds(r.P99S), hotList(r.HotKeys))
	}
	return tw.Flush()
}

func stateOf(r topShardRow) string {
	switch {
	case !r.OwnsKeys:
		return "no keys"
	case r.Ready:
		return "ready"
	default:
		return "NOT READY"
	}
}

func fmtSeconds(s *float64) string {
	switch {
	case s == nil:
		return "-"
	case *s < 1:
		return fmt.Sprintf("%.1fms", *s*1000)
	default:
		return fmt.Sprintf("%.2fs", *s)
	}
}

func hotList(keys []hotkeys.Key) string {
	if len(keys) == 0 {
		return "-"
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s (%.1f)", oneLine(k.Key, 24), k.Rate)
	}
	return strings.Join(parts, ", ")
}

// metricsScrape is what top keeps of one /metrics answer: per shard, the
// answers, the 5xx answers and the cumulative duration buckets.
type metricsScrape struct {
	at     time.Time
	shards map[string]*shardCounters
}

type shardCounters struct {
	requests, errors float64
	buckets          map[float64]float64 // upper bound (le) to cumulative count
}

// scrape gets /metrics, which needs no token.
func scrape(c *adminClient) (metricsScrape, error) {
	status, body, err := c.do("GET", "/metrics", nil)
	if err != nil {
		return metricsScrape{}, err
	}
	if status != http.StatusOK {
		return metricsScrape{}, apiError(status, body)
	}
	return metricsScrape{at: time.Now(), shards: parseShardMetrics(string(body))}, nil
}

// parseShardMetrics reads requests_total and request_duration_seconds
// buckets from the Prometheus text format.
func parseShardMetrics(text string) map[string]*shardCounters {
	out := map[string]*shardCounters{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, labels, value, ok := parseSample(sc.Text())
		if !ok || (name != "shard_proxy_requests_total" && name != "shard_proxy_request_duration_seconds_bucket") {
			continue
		}
		s := out[labels["shard"]]
		if s == nil {
			s = &shardCounters{buckets: map[float64]float64{}}
			out[labels["shard"]] = s
		}
		if name == "shard_proxy_requests_total" {
			s.requests += value
			if strings.HasPrefix(labels["code"], "5") {
				s.errors += value
			}
			continue
		}
		if le, err := strconv.ParseFloat(labels["le"], 64); err == nil {
			s.buckets[le] += value
		}
	}
	return out
}

// parseSample splits `name{k="v",…} value [timestamp]`.
func parseSample(line string) (name string, labels map[string]string, value float64, ok bool) {
	if line == "" || line[0] == '#' {
		return "", nil, 0, false
	}
	labels = map[string]string{}
	rest := line
	if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
		name, rest = line[:i], line[i+1:]
		var end int
		if labels, end, ok = parseLabels(rest); !ok {
			return "", nil, 0, false
		}
		rest = rest[end:]
	} else if i >= 0 {
		name, rest = line[:i], line[i:]
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return name, labels, v, err == nil
}

// parseLabels reads k="v" pairs up to the closing brace and returns the
// index after it. Values may hold \\, \" and \n escapes.
func parseLabels(s string) (map[string]string, int, bool) {
	labels := map[string]string{}
	i := 0
	for {
		for i < len(s) && (s[i] == ',' || s[i] == ' ') {
			i++
		}
		if i < len(s) && s[i] == '}' {
			return labels, i + 1, true
		}
		eq := strings.Index(s[i:], `="`)
		if eq < 0 {
			return nil, 0, false
		}
		key := s[i : i+eq]
		var val strings.Builder
		j := i + eq + 2
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
				if s[j] == 'n' {
					val.WriteByte('\n')
				} else {
					val.WriteByte(s[j])
				}
				continue
			}
			val.WriteByte(s[j])
		}
		if j >= len(s) {
			return nil, 0, false
		}
		labels[key] = val.String()
		i = j + 1
	}
}

// shardRates compares two scrapes for one shard. A shard missing from a
// scrape has answered nothing yet.
func shardRates(name string, prev, cur metricsScrape) topShardRow {
	row := topShardRow{Shard: name}
	a, b := prev.shards[name], cur.shards[name]
	if b == nil {
		return row
	}
	if a == nil {
		a = &shardCounters{buckets: map[float64]float64{}}
	}
	req := b.requests - a.requests
	if secs := cur.at.Sub(prev.at).Seconds(); secs > 0 && req > 0 {
		row.RPS = req / secs
		row.ErrorRatio = (b.errors - a.errors) / req
	}
	delta := map[float64]float64{}
	for le, n := range b.buckets {
		delta[le] = n - a.buckets[le]
	}
	if q, ok := quantile(0.99, delta); ok {
		row.P99S = &q
	}
	return row
}

// quantile estimates the q-quantile from cumulative bucket counts as
// Prometheus's histogram_quantile does: linearly within the bucket that
// holds the rank; in the +Inf bucket, the highest finite bound. ok is
// false when the buckets count nothing.
func quantile(q float64, buckets map[float64]float64) (float64, bool) {
	les := make([]float64, 0, len(buckets))
	for le := range buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) == 0 || buckets[math.Inf(1)] <= 0 {
		return 0, false
	}
	rank := q * buckets[math.Inf(1)]
	prevLe, prevCount := 0.0, 0.0
	for _, le := range les {
		n := buckets[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				return prevLe, true
			}
			if n == prevCount {
				return le, true
			}
			return prevLe + (le-prevLe)*(rank-prevCount)/(n-prevCount), true
		}
		prevLe, prevCount = le, n
	}
	return prevLe, true
}
