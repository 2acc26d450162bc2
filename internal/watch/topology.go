// Package watch is the model every other package shares: a Topology of
// shards by ordinal, and the Source interface that discovery implements.
// It is a leaf: the sources themselves live in its subpackages (kube, dns,
// static, demo), and only kube links client-go.
package watch

import (
	"context"
	"fmt"
	"slices"
)

// Shard is one member of the ring as discovery sees it.
type Shard struct {
	// Ordinal is the pod ordinal (web-2 has ordinal 2). It is the shard's
	// identity: keys belong to ordinals, never to addresses.
	Ordinal int
	// Name is the pod or shard name, e.g. "web-2" or "shard-0".
	Name string
	// Addr is host:port of the shard, or "" when it is not known yet.
	Addr string
	// Ready reports whether the shard may take requests. A shard without an
	// address is never ready.
	Ready bool
	// Protocol is how the shard is spoken to; "" means HTTP/1.1.
	Protocol Protocol
	// TLS tells whether the shard is spoken to over TLS (HTTP/1.1 with
	// ALPN http/1.1, or HTTP/2 with ALPN h2).
	TLS bool
	// TLSName is the name the shard's certificate must be valid for, its
	// stable identity (see ServerName); it is also sent as SNI. Set with
	// TLS.
	TLSName string
}

// Protocol is the protocol a shard's port speaks.
type Protocol string

// The shard protocols.
const (
	// HTTP1 is HTTP/1.1 over TCP, the default.
	HTTP1 Protocol = "http1"
	// H2C is HTTP/2 over cleartext TCP with prior knowledge (gRPC shards);
	// in Kubernetes, a port whose appProtocol is kubernetes.io/h2c or grpc.
	H2C Protocol = "h2c"
)

// ParseProtocol parses a --shard-protocol value.
func ParseProtocol(s string) (Protocol, error) {
	switch Protocol(s) {
	case HTTP1, H2C:
		return Protocol(s), nil
	case "":
		return HTTP1, nil
	}
	return "", fmt.Errorf("%q: want http1 or h2c", s)
}

// Topology is one complete view of the sharded service. Replicas is N, the
// size of the ring (spec.replicas for a StatefulSet, or the N its
// shard-proxy.io/replicas annotation pins). Shards holds one entry per
// ordinal, sorted by ordinal: the first Replicas own keys; any after them
// (pods above a pinned N) are shards for broadcast that own no keys.
// HandoffFrom, when not 0, is the previous N while data moves to the new
// owners. A Topology is a value: sources build a new one for each change.
type Topology struct {
	Replicas    int
	Shards      []Shard
	HandoffFrom int
}

// Normalize returns a copy of t with shards sorted by ordinal, so that two
// sources that saw the same shards in different orders produce equal
// topologies. It fails when ordinals repeat or there are fewer shards than
// Replicas.
func (t Topology) Normalize() (Topology, error) {
	shards := slices.Clone(t.Shards)
	slices.SortFunc(shards, func(a, b Shard) int { return a.Ordinal - b.Ordinal })
	if len(shards) < t.Replicas || t.Replicas < 0 {
		return Topology{}, fmt.Errorf("topology has %d shards for %d replicas", len(shards), t.Replicas)
	}
	for i := 1; i < len(shards); i++ {
		if shards[i].Ordinal == shards[i-1].Ordinal {
			return Topology{}, fmt.Errorf("ordinal %d appears twice (%s, %s)", shards[i].Ordinal, shards[i-1].Name, shards[i].Name)
		}
	}
	for i := range shards {
		if shards[i].Addr == "" {
			shards[i].Ready = false
		}
	}
	return Topology{Replicas: t.Replicas, Shards: shards, HandoffFrom: max(t.HandoffFrom, 0)}, nil
}

// Equal reports whether t and u are the same view.
func (t Topology) Equal(u Topology) bool {
	return t.Replicas == u.Replicas && t.HandoffFrom == u.HandoffFrom && slices.Equal(t.Shards, u.Shards)
}

// Publish applies a Topology. It returns an error when the Topology cannot
// be applied (the previous one then stays in force); a source logs it and
// offers a Topology again later rather than assuming it took effect.
type Publish func(Topology) error

// Source discovers shards. Run blocks until ctx is cancelled or the source
// fails for good, calling publish with a complete Topology after every
// change (and at least once when the first view is known). publish is
// called from one goroutine at a time and must not retain the Shards slice
// for mutation.
type Source interface {
	Run(ctx context.Context, publish Publish) error
}
