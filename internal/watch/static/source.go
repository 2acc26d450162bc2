// Package static is a fixed list of shard addresses (--shards), for shards
// outside Kubernetes: nothing is watched, so the ring stays as given for the
// proxy's whole life.
package static

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// Source is a fixed list of shards (--shards). Shard i is named "shard-i"
// and is always ready: without a health signal, a dead shard shows up as 502
// for its keys, never as a smaller ring.
type Source struct {
	// HandoffFrom is the previous N while data moves (--handoff-from); 0
	// means none.
	HandoffFrom int

	topo watch.Topology
}

var _ watch.Source = (*Source)(nil)

// Parse parses "http://10.0.0.1:8080,10.0.0.2:8080": each entry is an
// http or https URL with host and port and no path, or a bare host:port.
// An https entry is a TLS shard whose certificate must be valid for the
// URL's host (see AllTLS for the others).
func Parse(list string, proto watch.Protocol) (*Source, error) {
	var t watch.Topology
	for i, raw := range strings.Split(list, ",") {
		addr, tls, err := shardAddr(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("--shards entry %d %q: %w", i+1, raw, err)
		}
		sh := watch.Shard{Ordinal: i, Name: fmt.Sprintf("shard-%d", i), Addr: addr, Ready: true, Protocol: cmp.Or(proto, watch.HTTP1)}
		if tls {
			sh.TLS = true
			sh.TLSName, _, _ = net.SplitHostPort(addr)
		}
		t.Shards = append(t.Shards, sh)
	}
	t.Replicas = len(t.Shards)
	return &Source{topo: t}, nil
}

// AllTLS makes every shard a TLS shard (--shard-tls), its certificate
// verified for the host its entry names.
func (s *Source) AllTLS() {
	for i := range s.topo.Shards {
		sh := &s.topo.Shards[i]
		sh.TLS = true
		sh.TLSName, _, _ = net.SplitHostPort(sh.Addr)
	}
}

func shardAddr(raw string) (addr string, tls bool, err error) {
	if raw == "" {
		return "", false, fmt.Errorf("empty entry (want http://host:port)")
	}
	hostport := raw
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", false, err
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", false, fmt.Errorf("scheme %q is not supported (want http://host:port or https://host:port)", u.Scheme)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return "", false, fmt.Errorf("want only %s://host:port, without path, query or user", u.Scheme)
		}
		hostport, tls = u.Host, u.Scheme == "https"
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" || port == "" {
		return "", false, fmt.Errorf("want host:port with an explicit port")
	}
	return net.JoinHostPort(host, port), tls, nil
}

// Topology returns the static topology.
func (s *Source) Topology() watch.Topology {
	t := s.topo
	t.HandoffFrom = s.HandoffFrom
	return t
}

// Run publishes the fixed topology once and waits for ctx.
func (s *Source) Run(ctx context.Context, publish watch.Publish) error {
	if err := publish(s.Topology()); err != nil {
		return fmt.Errorf("static shards: %w", err)
	}
	<-ctx.Done()
	return nil
}
