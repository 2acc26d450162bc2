package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// cmdHung: -clients requests at once, each on a connection of its own, to
// a shard that holds every one for -hold before answering: what the proxy
// costs per request while its shard thinks (peak RSS over the count).
func cmdHung(args []string) error {
	fs, c := commonFlags("hung", "hung")
	clients := fs.Int("clients", 5000, "requests held at once")
	hold := fs.Duration("hold", 5*time.Second, "how long the shard holds each request")
	fs.Parse(args)
	r := newResult(c)
	mon := startMonitor(c)
	before := mon.now()
	base := before.rss
	target := fmt.Sprintf("/hang?for=%s", *hold)
	var st statuses
	var ok atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < *clients; i++ {
		wg.Go(func() {
			status, err := hungOne(c, target, i, *hold)
			st.add(status, err)
			if status == 200 && err == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	r.set("clients", *clients)
	r.set("hold_s", hold.Seconds())
	r.set("ok", ok.Load())
	r.set("statuses", st.String())
	r.set("err", st.first)
	r.set("seconds", time.Since(t0).Seconds())
	stat := mon.finish(r)
	if *clients > 0 && stat.hwm > 0 {
		r.set("kib_per_request", float64(stat.hwm-base)/float64(*clients))
		r.set("rss_before_kib", base)
		r.set("anon_before_kib", before.anon)
		r.set("anon_kib_per_request", float64(stat.anonPeak-before.anon)/float64(*clients))
	}
	r.print()
	return nil
}

// hungOne sends one request to the holding shard and reads its answer.
func hungOne(c *common, target string, i int, hold time.Duration) (int, error) {
	cn, err := dial(c.addr, nil, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer cn.Close()
	cn.SetDeadline(time.Now().Add(hold + 30*time.Second))
	if _, err := cn.Write(head("GET", target, c.addr, key(c.seed, i), -1)); err != nil {
		return 0, err
	}
	resp, err := cn.readResponse("GET")
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}
