package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of DNS.
const (
	DefaultDNSInterval      = 5 * time.Second
	DefaultDNSLookupTimeout = 2 * time.Second
	DefaultClusterDomain    = "cluster.local"
)

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// DNS discovers shards without API access (--dns-service): shard i is
// <statefulset>-<i>.<service>.<namespace>.svc.<domain>, which a headless
// Service publishes for each pod. N is given, since DNS cannot tell a scaled
// StatefulSet from dead pods. A name that does not resolve is a shard that
// is not ready: its keys get 503, never another shard.
type DNS struct {
	// Service and Namespace name the headless Service. Required.
	Service, Namespace string
	// StatefulSet names the pods; "" means Service.
	StatefulSet string
	// Replicas is N. Required.
	Replicas int
	// Port is the shards' port number. Required.
	Port int
	// Domain is the cluster domain; "" means DefaultClusterDomain.
	Domain string
	// Interval between resolutions; 0 means DefaultDNSInterval.
	Interval time.Duration
	// LookupTimeout bounds one name's lookup; 0 means DefaultDNSLookupTimeout.
	LookupTimeout time.Duration
	// Resolver resolves names; nil means net.DefaultResolver.
	Resolver Resolver
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

var _ Source = (*DNS)(nil)

// ParseDNSService splits "SVC.NAMESPACE".
func ParseDNSService(s string) (svc, ns string, err error) {
	svc, ns, ok := strings.Cut(s, ".")
	if !ok || svc == "" || ns == "" || strings.Contains(ns, ".") {
		return "", "", fmt.Errorf("%q: want SVC.NAMESPACE, e.g. web.default", s)
	}
	return svc, ns, nil
}

// Name returns the DNS name of ordinal i.
func (d *DNS) Name(i int) string {
	sts := d.StatefulSet
	if sts == "" {
		sts = d.Service
	}
	domain := d.Domain
	if domain == "" {
		domain = DefaultClusterDomain
	}
	return fmt.Sprintf("%s-%d.%s.%s.svc.%s", sts, i, d.Service, d.Namespace, domain)
}

// Run resolves every shard name each Interval and publishes when the result
// changed.
func (d *DNS) Run(ctx context.Context, publish func(Topology)) error {
	switch {
	case d.Service == "" || d.Namespace == "":
		return errors.New("dns discovery needs a service and a namespace")
	case d.Replicas <= 0:
		return errors.New("dns discovery needs replicas > 0")
	case d.Port <= 0 || d.Port > 65535:
		return fmt.Errorf("dns discovery needs a port number, got %d", d.Port)
	}
	interval := durationOr(d.Interval, DefaultDNSInterval)
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	var last Topology
	first := true
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		topo := d.resolve(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if first || !dnsSameTopology(topo, last) {
			publish(topo)
			last, first = topo, false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// resolve looks up every ordinal's name concurrently.
func (d *DNS) resolve(ctx context.Context) Topology {
	res := d.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	timeout := durationOr(d.LookupTimeout, DefaultDNSLookupTimeout)
	topo := Topology{Replicas: d.Replicas, Shards: make([]Shard, d.Replicas)}
	done := make(chan struct{}, d.Replicas)
	sem := make(chan struct{}, 32)
	for i := range d.Replicas {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem; done <- struct{}{} }()
			name := d.Name(i)
			lctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			sh := Shard{Ordinal: i, Name: strings.SplitN(name, ".", 2)[0]}
			if addrs, err := res.LookupHost(lctx, name); err == nil && len(addrs) > 0 {
				// Several records for one pod name should not happen; if they
				// do, every replica must still pick the same one.
				slices.Sort(addrs)
				sh.Addr, sh.Ready = net.JoinHostPort(addrs[0], strconv.Itoa(d.Port)), true
			}
			topo.Shards[i] = sh
		}()
	}
	for range d.Replicas {
		<-done
	}
	return topo
}

func dnsSameTopology(a, b Topology) bool {
	return a.Replicas == b.Replicas && slices.Equal(a.Shards, b.Shards)
}

func durationOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
