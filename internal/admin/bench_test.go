package admin

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/proxy"
	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// BenchmarkBroadcastFanOut measures a broadcast's wall time over N real
// shard servers, each answering after a fixed 2ms of "work", against the
// same request to a single shard. The ratio (reported as x_one_shard) is what
// fan-out costs: 1.0 would be perfect parallelism.
func BenchmarkBroadcastFanOut(b *testing.B) {
	const work = 2 * time.Millisecond
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(work)
		w.Write([]byte(`{"evicted":true}`))
	})
	var servers []*httptest.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	shardsOf := func(n int) watch.Topology {
		for len(servers) < n {
			servers = append(servers, httptest.NewServer(handler))
		}
		topo := watch.Topology{Replicas: n}
		for i := range n {
			topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: fmt.Sprintf("web-%d", i), Addr: servers[i].Listener.Addr().String(), Ready: true})
		}
		return topo
	}
	run := func(b *testing.B, n int) time.Duration {
		px, err := proxy.New(proxy.Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		defer px.Close()
		if err := px.Apply(shardsOf(n)); err != nil {
			b.Fatal(err)
		}
		tbl := px.Table()
		bc := newBroadcaster(BroadcastConfig{}, nil, nil)
		defer bc.close()
		req := shardRequest{method: "POST", uri: "/cache/evict", header: http.Header{}}
		b.ResetTimer()
		start := time.Now()
		for b.Loop() {
			for _, r := range bc.fanOut(b.Context(), tbl.Shards, req, 5*time.Second) {
				if r.Status != 200 {
					b.Fatalf("%s: %+v", r.Shard, r)
				}
			}
		}
		return time.Since(start) / time.Duration(b.N)
	}
	var one time.Duration
	b.Run("N=1", func(b *testing.B) { one = run(b, 1) })
	for _, n := range []int{8, 64, 256} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			per := run(b, n)
			if one > 0 {
				b.ReportMetric(float64(per)/float64(one), "x_one_shard")
			}
		})
	}
}
