// Command broadcast measures shard-proxy's admin broadcast over a slow
// link ("run.sh broadcast"): N real shard servers, each behind a link with
// a 20 ms round trip (link.go), one shard-proxy in front of them, and
//
//   - one keyed request through the data plane (warm pool), the yardstick;
//   - a lone broadcast to every shard, the first one (cold: every shard
//     connection is dialed) and then warm ones;
//   - rounds of C concurrent broadcasts: each one's time, and how many new
//     connections the shards saw for the C×N requests.
//
// It prints a Markdown report.
//
//	broadcast -proxy ./shard-proxy -shards 256 -rtt 20ms -concurrent 20
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

type config struct {
	proxy      string
	shards     int
	rtt        time.Duration
	concurrent int
	rounds     int
	warm       int
	keyed      int
	port       int
	extra      string
	wrap       string
}

func main() {
	var c config
	flag.StringVar(&c.proxy, "proxy", "shard-proxy", "the shard-proxy binary to measure")
	flag.IntVar(&c.shards, "shards", 256, "shards")
	flag.DurationVar(&c.rtt, "rtt", 20*time.Millisecond, "round trip of the link to every shard")
	flag.IntVar(&c.concurrent, "concurrent", 20, "broadcasts at once in each concurrent round")
	flag.IntVar(&c.rounds, "rounds", 3, "concurrent rounds")
	flag.IntVar(&c.warm, "warm", 5, "warm lone broadcasts, one after another")
	flag.IntVar(&c.keyed, "keyed", 30, "keyed requests, one after another, after 5 unmeasured")
	flag.IntVar(&c.port, "port", 20080, "shard-proxy listens here, its admin plane on port+10")
	flag.StringVar(&c.extra, "proxy-args", "", "more shard-proxy flags, space-separated")
	flag.StringVar(&c.wrap, "proxy-wrap", "", "a command that runs shard-proxy, space-separated, e.g. \"taskset -c 1\"")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("broadcast: ")
	if c.shards < 1 || c.concurrent < 1 || c.rounds < 1 || c.warm < 1 || c.keyed < 1 || c.rtt <= 0 {
		log.Fatal("-shards, -concurrent, -rounds, -warm, -keyed and -rtt must be positive")
	}
	if err := run(c); err != nil {
		log.Fatal(err)
	}
}

// okHandler is every shard: it reads the request and answers "ok".
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	_, _ = w.Write([]byte("ok"))
})

func startShards(n int, rtt time.Duration) ([]*link, error) {
	links := make([]*link, n)
	for i := range links {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		go func() { _ = http.Serve(ln, okHandler) }()
		if links[i], err = newLink(ln.Addr().String(), rtt/2); err != nil {
			return nil, err
		}
	}
	return links, nil
}

func conns(links []*link) int64 {
	var n int64
	for _, l := range links {
		n += l.conns.Load()
	}
	return n
}

func run(c config) error {
	links, err := startShards(c.shards, c.rtt)
	if err != nil {
		return err
	}
	urls := make([]string, len(links))
	for i, l := range links {
		urls[i] = "http://" + l.addr()
	}
	listen, admin := fmt.Sprintf("127.0.0.1:%d", c.port), fmt.Sprintf("127.0.0.1:%d", c.port+10)
	args := []string{"--shards", strings.Join(urls, ","), "--listen", listen, "--admin-listen", admin,
		"--key", "header:X-Shard-Key", "--log-level", "warn"}
	args = append(args, strings.Fields(c.extra)...)
	argv := append(strings.Fields(c.wrap), c.proxy)
	cmd := exec.Command(argv[0], append(argv[1:], args...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * c.concurrent}, Timeout: time.Minute}
	if err := waitReady(client, "http://"+admin+"/readyz"); err != nil {
		return err
	}
	m := &measurer{c: c, client: client, data: "http://" + listen, admin: "http://" + admin, links: links, pid: cmd.Process.Pid}
	return m.all()
}

func waitReady(client *http.Client, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 30s (last error %v)", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type measurer struct {
	c           config
	client      *http.Client
	data, admin string
	links       []*link
	pid         int
}

// cpu is the CPU time (user + system) process pid has used so far.
func cpu(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	var u, s int64
	fmt.Sscan(f[11], &u)
	fmt.Sscan(f[12], &s)
	return time.Duration(u+s) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

func (m *measurer) keyed() (time.Duration, error) {
	var times []time.Duration
	for i := range 5 + m.c.keyed {
		req, _ := http.NewRequest("GET", m.data+"/", nil)
		req.Header.Set("X-Shard-Key", "account-42")
		start := time.Now()
		resp, err := m.client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("keyed request: status %d", resp.StatusCode)
		}
		if i >= 5 {
			times = append(times, time.Since(start))
		}
	}
	return median(times), nil
}

// report is the part of a broadcast report the bench checks.
type report struct {
	Succeeded  int     `json:"succeeded"`
	Failed     int     `json:"failed"`
	DurationMS float64 `json:"duration_ms"`
}

// broadcast sends one broadcast and returns how long the caller waited for
// its report.
func (m *measurer) broadcast() (time.Duration, error) {
	start := time.Now()
	resp, err := m.client.Post(m.admin+"/broadcast/cache/evict", "application/json", bytes.NewReader([]byte(`{"all":true}`)))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var rep report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return 0, err
	}
	took := time.Since(start)
	if resp.StatusCode != 200 || rep.Succeeded != m.c.shards {
		return 0, fmt.Errorf("broadcast: status %d, %d of %d shards succeeded", resp.StatusCode, rep.Succeeded, m.c.shards)
	}
	return took, nil
}

func (m *measurer) concurrent() ([]time.Duration, error) {
	times := make([]time.Duration, m.c.concurrent)
	errs := make([]error, m.c.concurrent)
	var wg sync.WaitGroup
	for i := range times {
		wg.Go(func() { times[i], errs[i] = m.broadcast() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return times, nil
}

// rss is the resident set of process pid in MiB, from /proc.
func rss(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib float64
			fmt.Sscan(v, &kib)
			return fmt.Sprintf("%.1f", kib/1024)
		}
	}
	return ""
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func ratio(a, b time.Duration) string { return fmt.Sprintf("%.2fx", float64(a)/float64(b)) }

// all measures everything in order and prints the report.
func (m *measurer) all() error {
	c := m.c
	keyed, err := m.keyed()
	if err != nil {
		return err
	}
	var rows []string
	cpu0, self0 := cpu(m.pid), cpu(os.Getpid())
	row := func(what string, t time.Duration, vsLone string, newConns int64, requests int) {
		cpu1, self1 := cpu(m.pid), cpu(os.Getpid())
		proxyCPU, selfCPU := "", "" // a round's second row: counted on its first
		if !strings.HasSuffix(what, "slowest") {
			proxyCPU, selfCPU = ms(cpu1-cpu0), ms(self1-self0)
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s | %d | %d | %s | %s | %s |", what, ms(t), ratio(t, keyed), vsLone, newConns, requests, proxyCPU, selfCPU, rss(m.pid)))
		cpu0, self0 = cpu1, self1
	}
	row("one keyed request (data plane, warm pool; median)", keyed, "", 0, c.keyed)
	before := conns(m.links)
	cold, err := m.broadcast()
	if err != nil {
		return err
	}
	row("lone broadcast, first (every connection dialed)", cold, "", conns(m.links)-before, c.shards)
	var warm []time.Duration
	before = conns(m.links)
	for range c.warm {
		t, err := m.broadcast()
		if err != nil {
			return err
		}
		warm = append(warm, t)
	}
	lone := median(warm)
	row(fmt.Sprintf("lone broadcast, warm (median of %d)", c.warm), lone, "1.00x", conns(m.links)-before, c.warm*c.shards)
	for r := 1; r <= c.rounds; r++ {
		before = conns(m.links)
		times, err := m.concurrent()
		if err != nil {
			return err
		}
		n := conns(m.links) - before
		slices.Sort(times)
		row(fmt.Sprintf("%d concurrent broadcasts, round %d: median", c.concurrent, r), times[len(times)/2], ratio(times[len(times)/2], lone), n, c.concurrent*c.shards)
		row(fmt.Sprintf("%d concurrent broadcasts, round %d: slowest", c.concurrent, r), times[len(times)-1], ratio(times[len(times)-1], lone), n, c.concurrent*c.shards)
	}
	fmt.Printf("# Broadcast over a %s link\n\n", c.rtt)
	fmt.Printf("- %d shards (Go net/http servers), each behind a relay that delays every byte by %s each way and the first bytes of a connection by one round trip more (the TCP handshake); netem is not available in this kernel\n", c.shards, c.rtt/2)
	fmt.Printf("- shard-proxy: `%s %s`, %d concurrent broadcasts per round\n", strings.TrimSpace(c.wrap+" "+c.proxy), c.extra, c.concurrent)
	fmt.Printf("- time: what the caller waited for the whole report; new shard connections: accepted by the relays while that step ran; CPU: used during the step (both rows of a round count once, on the median row)\n")
	fmt.Printf("- CPUs this bench process may use: %d (shard-proxy: its own affinity); load average at the end %s\n\n", runtime.NumCPU(), loadavg())
	fmt.Println("| step | time ms | ÷ keyed | ÷ lone warm | new shard connections | shard requests | shard-proxy CPU ms | shards+links+client CPU ms | shard-proxy RSS MiB after |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Println(r)
	}
	return nil
}
