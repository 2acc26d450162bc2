// Package demo is the zero-setup source (--demo N): shards served in this
// process on loopback, each answering with its name and what it received,
// so routing can be watched at work without a cluster.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// Source runs N in-process HTTP shards on loopback (--demo N), named demo-0…,
// that answer with JSON saying which shard answered and what it received.
// It is the zero-setup way to watch routing at work.
type Source struct {
	// N is the number of shards.
	N int
	// Key, if set, tells each shard the key it would be routed by (given
	// the request and its body), so the answer can show it.
	Key func(r *http.Request, body []byte) string
}

var _ watch.Source = (*Source)(nil)

// Answer is the JSON body a demo shard answers with.
type Answer struct {
	Shard  string `json:"shard"`
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query,omitempty"`
	Key    string `json:"key,omitempty"`
	Bytes  int    `json:"body_bytes"`
}

// Run starts the shards, publishes them, and stops them when ctx ends.
func (d *Source) Run(ctx context.Context, publish watch.Publish) error {
	if d.N <= 0 {
		return errors.New("demo needs at least one shard")
	}
	var (
		servers []*http.Server
		wg      sync.WaitGroup
		topo    = watch.Topology{Replicas: d.N}
	)
	stop := func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}
	for i := range d.N {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			wg.Wait()
			return fmt.Errorf("demo shard %d: %w", i, err)
		}
		name := fmt.Sprintf("demo-%d", i)
		srv := &http.Server{Handler: d.handler(name), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		wg.Go(func() { _ = srv.Serve(ln) })
		topo.Shards = append(topo.Shards, watch.Shard{Ordinal: i, Name: name, Addr: ln.Addr().String(), Ready: true})
	}
	err := publish(topo)
	if err == nil {
		<-ctx.Done()
	}
	stop()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("demo shards: %w", err)
	}
	return nil
}

// maxDemoBody caps what a demo shard reads of a body.
const maxDemoBody = 1 << 20

func (d *Source) handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, maxDemoBody))
		a := Answer{Shard: name, Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Bytes: len(body)}
		if d.Key != nil {
			a.Key = d.Key(r, body)
		}
		out, _ := json.Marshal(a)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(out, '\n'))
	})
}
