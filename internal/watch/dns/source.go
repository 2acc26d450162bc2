// Package dns discovers shards without API access (--dns-service) by
// resolving the per-pod names a headless Service publishes; N is given, since
// DNS cannot tell a scaled StatefulSet from dead pods.
package dns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shard-proxy/shard-proxy/internal/watch"
)

// Defaults of Source.
const (
	DefaultInterval      = 5 * time.Second
	DefaultLookupTimeout = 2 * time.Second
	DefaultClusterDomain = "cluster.local"
)

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Source discovers shards without API access (--dns-service): shard i is
// <statefulset>-<i>.<service>.<namespace>.svc.<domain>, which a headless
// Service publishes for each pod. N is given, since DNS cannot tell a scaled
// StatefulSet from dead pods. A name that does not resolve is a shard that
// is not ready: its keys get 503, never another shard.
type Source struct {
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
	// Interval between resolutions; 0 means DefaultInterval.
	Interval time.Duration
	// LookupTimeout bounds one name's lookup; 0 means DefaultLookupTimeout.
	LookupTimeout time.Duration
	// Protocol is what every shard speaks; "" means watch.HTTP1.
	Protocol watch.Protocol
	// HandoffFrom is the previous N while data moves (--handoff-from); 0
	// means none.
	HandoffFrom int
	// TLS: every shard is spoken to over TLS (--shard-tls), its
	// certificate verified for ServerName filled for it (see
	// watch.ServerName; "" means watch.DefaultServerName).
	TLS        bool
	ServerName string
	// Resolver resolves names; nil means net.DefaultResolver.
	Resolver Resolver
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

var _ watch.Source = (*Source)(nil)

// ParseService splits "SVC.NAMESPACE".
func ParseService(s string) (svc, ns string, err error) {
	svc, ns, ok := strings.Cut(s, ".")
	if !ok || svc == "" || ns == "" || strings.Contains(ns, ".") {
		return "", "", fmt.Errorf("%q: want SVC.NAMESPACE, e.g. web.default", s)
	}
	return svc, ns, nil
}

// Name returns the DNS name of ordinal i.
func (d *Source) Name(i int) string {
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
// changed. A Topology that publish rejects is offered again at the next
// tick. Lookup failures are logged when they change, not at every tick.
func (d *Source) Run(ctx context.Context, publish watch.Publish) error {
	switch {
	case d.Service == "" || d.Namespace == "":
		return errors.New("dns discovery needs a service and a namespace")
	case d.Replicas <= 0:
		return errors.New("dns discovery needs replicas > 0")
	case d.Port <= 0 || d.Port > 65535:
		return fmt.Errorf("dns discovery needs a port number, got %d", d.Port)
	}
	log := cmp.Or(d.Logger, slog.Default()).With("source", "dns", "service", d.Service, "namespace", d.Namespace)
	var (
		last      watch.Topology
		published bool
		failures  []string // the lookup failures last logged
		rejected  string   // the publish error last logged
	)
	tick := time.NewTicker(cmp.Or(d.Interval, DefaultInterval))
	defer tick.Stop()
	for {
		topo, errs := d.resolve(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !slices.Equal(errs, failures) {
			for _, e := range errs {
				log.Warn("shard name does not resolve; its keys get 503", "problem", e)
			}
			failures = errs
		}
		if !published || !topo.Equal(last) {
			if err := publish(topo); err != nil {
				if err.Error() != rejected {
					log.Error("topology rejected; keeping the previous one, retrying at the next resolution", "err", err)
					rejected = err.Error()
				}
			} else {
				last, published, rejected = topo, true, ""
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// lookupConcurrency caps the lookups in flight at once.
const lookupConcurrency = 32

// resolve looks up every ordinal's name concurrently. errs describes the
// names that did not resolve, in ordinal order.
func (d *Source) resolve(ctx context.Context) (watch.Topology, []string) {
	res := d.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	timeout := cmp.Or(d.LookupTimeout, DefaultLookupTimeout)
	topo := watch.Topology{Replicas: d.Replicas, Shards: make([]watch.Shard, d.Replicas), HandoffFrom: d.HandoffFrom}
	problems := make([]string, d.Replicas)
	sem := make(chan struct{}, lookupConcurrency)
	var wg sync.WaitGroup
	for i := range d.Replicas {
		sem <- struct{}{} // taken before the goroutine starts: at most lookupConcurrency exist
		wg.Go(func() {
			defer func() { <-sem }()
			lctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			topo.Shards[i], problems[i] = d.lookup(lctx, res, i)
		})
	}
	wg.Wait()
	var errs []string
	for _, p := range problems {
		if p != "" {
			errs = append(errs, p)
		}
	}
	return topo, errs
}

// lookup resolves ordinal i; problem says why it has no address.
func (d *Source) lookup(ctx context.Context, res Resolver, i int) (sh watch.Shard, problem string) {
	name := d.Name(i)
	sh = watch.Shard{Ordinal: i, Name: strings.SplitN(name, ".", 2)[0], Protocol: cmp.Or(d.Protocol, watch.HTTP1), TLS: d.TLS}
	if d.TLS {
		sh.TLSName = watch.ServerName(d.ServerName, watch.NameParts{Pod: sh.Name, Ordinal: i, StatefulSet: cmp.Or(d.StatefulSet, d.Service),
			Service: d.Service, Namespace: d.Namespace, Domain: cmp.Or(d.Domain, DefaultClusterDomain)})
	}
	addrs, err := res.LookupHost(ctx, name)
	switch {
	case err != nil:
		return sh, name + ": " + err.Error()
	case len(addrs) == 0:
		return sh, name + ": no addresses"
	}
	// Several records for one pod name should not happen; if they do, every
	// replica must still pick the same one.
	slices.Sort(addrs)
	sh.Addr, sh.Ready = net.JoinHostPort(addrs[0], strconv.Itoa(d.Port)), true
	return sh, ""
}
