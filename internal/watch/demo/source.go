package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	"github.com/valyala/fasthttp"
)

// Demo runs N in-process HTTP shards on loopback (--demo N), named demo-0…,
// that answer with JSON saying which shard answered and what it received.
// It is the zero-setup way to watch routing at work.
type Source struct {
	// N is the number of shards.
	N int
	// Key, if set, tells each shard the key it would be routed by, so the
	// answer can show it.
	Key func(*fasthttp.Request) string
}

var _ watch.Source = (*Source)(nil)

// DemoAnswer is the JSON body a demo shard answers with.
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
		servers   []*fasthttp.Server
		listeners []net.Listener
		wg        sync.WaitGroup
		topo      = watch.Topology{Replicas: d.N}
	)
	// Shutdown before Serve has registered a listener does not close it,
	// so the listeners are closed here too.
	stop := func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
		for _, ln := range listeners {
			_ = ln.Close()
		}
	}
	for i := range d.N {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			wg.Wait()
			return fmt.Errorf("demo shard %d: %w", i, err)
		}
		listeners = append(listeners, ln)
		name := fmt.Sprintf("demo-%d", i)
		srv := &fasthttp.Server{Handler: d.handler(name), NoDefaultServerHeader: true}
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

func (d *Source) handler(name string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		a := Answer{
			Shard:  name,
			Method: string(ctx.Method()),
			Path:   string(ctx.Path()),
			Query:  string(ctx.URI().QueryString()),
			Bytes:  len(ctx.PostBody()),
		}
		if d.Key != nil {
			a.Key = d.Key(&ctx.Request)
		}
		body, _ := json.Marshal(a)
		ctx.SetContentType("application/json")
		ctx.SetBody(append(body, '\n'))
	}
}
