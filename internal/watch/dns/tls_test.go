package dns

import (
	"context"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// TestDNSSourceTLS: with TLS (--shard-tls) every shard is a TLS shard,
// verified for its pod's stable name (the name resolved), or for the
// --shard-server-name template filled for it.
func TestDNSSourceTLS(t *testing.T) {
	dns := startDNS(t)
	dns.set("web-0.web-svc.shop.svc.cluster.local", "10.244.0.10")
	for template, want := range map[string]string{
		"": "web-0.web-svc.shop.svc.cluster.local",
		"{statefulset}-{ordinal}.{namespace}.example": "web-0.shop.example",
	} {
		src := &Source{
			Service: "web-svc", Namespace: "shop", StatefulSet: "web", Replicas: 1, Port: 8443,
			Interval: 20 * time.Millisecond, Resolver: dns.resolver(), TLS: true, ServerName: template,
		}
		got := make(chan watch.Topology, 1)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() {
			done <- src.Run(ctx, func(t watch.Topology) error {
				select {
				case got <- t:
				default:
				}
				return nil
			})
		}()
		var topo watch.Topology
		select {
		case topo = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("no topology published")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if sh := topo.Shards[0]; !sh.TLS || sh.TLSName != want {
			t.Errorf("template %q: shard %+v, want TLS verified for %s", template, sh, want)
		}
	}
}
