package dns

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer is a real DNS server on a loopback UDP socket answering A
// queries from a table the test changes.
type dnsServer struct {
	conn    net.PacketConn
	mu      sync.Mutex
	records map[string]netip.Addr // FQDN with trailing dot -> IPv4
	done    chan struct{}
}

func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{conn: conn, records: map[string]netip.Addr{}, done: make(chan struct{})}
	go s.serve()
	t.Cleanup(func() {
		conn.Close()
		<-s.done
	})
	return s
}

func (s *dnsServer) set(name string, ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ip == "" {
		delete(s.records, name+".")
		return
	}
	s.records[name+"."] = netip.MustParseAddr(ip)
}

func (s *dnsServer) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		var msg dnsmessage.Message
		if msg.Unpack(buf[:n]) != nil || len(msg.Questions) == 0 {
			continue
		}
		q := msg.Questions[0]
		resp := dnsmessage.Message{
			Header:    dnsmessage.Header{ID: msg.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeSuccess},
			Questions: msg.Questions,
		}
		s.mu.Lock()
		ip, ok := s.records[strings.ToLower(q.Name.String())]
		s.mu.Unlock()
		switch {
		case !ok:
			resp.RCode = dnsmessage.RCodeNameError
		case q.Type == dnsmessage.TypeA:
			resp.Answers = []dnsmessage.Resource{{
				Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 1},
				Body:   &dnsmessage.AResource{A: ip.As4()},
			}}
		}
		out, err := resp.Pack()
		if err == nil {
			_, _ = s.conn.WriteTo(out, from)
		}
	}
}

// resolver sends every query to s, as a pod's resolv.conf would to CoreDNS.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.conn.LocalAddr().String())
	}}
}

func TestDNSSource(t *testing.T) {
	dns := startDNS(t)
	dns.set("web-0.web-svc.shop.svc.cluster.local", "10.244.0.10")
	dns.set("web-2.web-svc.shop.svc.cluster.local", "10.244.0.12")
	src := &Source{
		Service: "web-svc", Namespace: "shop", StatefulSet: "web", Replicas: 3, Port: 8080,
		Interval: 20 * time.Millisecond, Resolver: dns.resolver(),
	}
	got := make(chan watch.Topology, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- src.Run(ctx, func(t watch.Topology) error { got <- t; return nil }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	next := func(what string) watch.Topology {
		t.Helper()
		select {
		case topo := <-got:
			return topo
		case <-time.After(10 * time.Second):
			t.Fatalf("no topology published: %s", what)
			return watch.Topology{}
		}
	}
	first := next("first resolution")
	want := []watch.Shard{
		{Ordinal: 0, Name: "web-0", Addr: "10.244.0.10:8080", Ready: true, Protocol: watch.HTTP1},
		{Ordinal: 1, Name: "web-1", Protocol: watch.HTTP1},
		{Ordinal: 2, Name: "web-2", Addr: "10.244.0.12:8080", Ready: true, Protocol: watch.HTTP1},
	}
	if first.Replicas != 3 || len(first.Shards) != 3 {
		t.Fatalf("topology %+v, want 3 replicas", first)
	}
	for i, w := range want {
		if first.Shards[i] != w {
			t.Errorf("shard %d = %+v, want %+v (a name that does not resolve is not ready, never dropped)", i, first.Shards[i], w)
		}
	}

	// web-1 appears, web-0 moves: both followed; N never changes.
	dns.set("web-1.web-svc.shop.svc.cluster.local", "10.244.0.11")
	dns.set("web-0.web-svc.shop.svc.cluster.local", "10.244.0.20")
	deadline := time.Now().Add(10 * time.Second)
	for {
		topo := next("after the records changed")
		if topo.Replicas != 3 {
			t.Fatalf("replicas changed to %d", topo.Replicas)
		}
		if topo.Shards[0].Addr == "10.244.0.20:8080" && topo.Shards[1].Ready && topo.Shards[1].Addr == "10.244.0.11:8080" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records not followed: %+v", topo)
		}
	}
}

func TestParseService(t *testing.T) {
	for in, ok := range map[string]bool{"web.default": true, "web": false, ".default": false, "web.": false, "web.ns.svc": false} {
		if _, _, err := ParseService(in); (err == nil) != ok {
			t.Errorf("ParseService(%q) error %v, want ok=%v", in, err, ok)
		}
	}
}
