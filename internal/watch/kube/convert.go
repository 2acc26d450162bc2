package kube

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// This file converts API objects at the edge: a StatefulSet and the
// EndpointSlices of its Service become a Topology, and nothing else in the
// program sees client-go types. It is pure, so the rules are tested with
// hand-built objects.

// Annotations an operator sets on the StatefulSet to reshard without
// moving keys before the data is there.
const (
	// AnnotationReplicas pins the ring's N instead of spec.replicas.
	AnnotationReplicas = "shard-proxy.io/replicas"
	// AnnotationHandoffFrom names the previous N while data moves.
	AnnotationHandoffFrom = "shard-proxy.io/handoff-from"
	// AnnotationShardTLS, "true" on the Service, says every shard speaks
	// TLS (as appProtocol https on its port does). It is read when
	// discovery starts.
	AnnotationShardTLS = "shard-proxy.io/shard-tls"
)

// maxPinned bounds the annotations' values.
const maxPinned = 4096

// kubeSet is the part of a StatefulSet the ring depends on.
type kubeSet struct {
	name     string
	replicas int // spec.replicas; nil means 1
	start    int // spec.ordinals.start; unset means 0
	ring     int // N: the pinned annotation when valid, else replicas
	handoff  int // the previous N, 0 when none
}

// kubeSetFrom reads a StatefulSet; problems says which annotations were
// invalid and ignored.
func kubeSetFrom(s *appsv1.StatefulSet) (ks kubeSet, problems []string) {
	ks = kubeSet{name: s.Name, replicas: 1}
	if s.Spec.Replicas != nil {
		ks.replicas = max(int(*s.Spec.Replicas), 0)
	}
	if s.Spec.Ordinals != nil {
		ks.start = int(s.Spec.Ordinals.Start)
	}
	ks.ring = ks.replicas
	if v, ok := s.Annotations[AnnotationReplicas]; ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= maxPinned {
			ks.ring = n
		} else {
			problems = append(problems, fmt.Sprintf("StatefulSet %s: annotation %s=%q is not a number from 0 to %d; N stays spec.replicas (%d)", s.Name, AnnotationReplicas, v, maxPinned, ks.replicas))
		}
	}
	if v, ok := s.Annotations[AnnotationHandoffFrom]; ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= maxPinned {
			ks.handoff = n
		} else {
			problems = append(problems, fmt.Sprintf("StatefulSet %s: annotation %s=%q is not a number from 1 to %d; ignored", s.Name, AnnotationHandoffFrom, v, maxPinned))
		}
	}
	return ks, problems
}

// shards is how many ordinals the set has shards for: its pods, and the
// ring's N when that is pinned above them (those shards have no pod yet,
// so they are not ready).
func (s kubeSet) shards() int { return max(s.replicas, s.ring) }

// kubeEndpoint is one endpoint of a pod of the StatefulSet.
type kubeEndpoint struct {
	ordinal int
	addr    string // host:port, "" when the slice has no usable port
	ready   bool
	// terminating: the pod is going away (still serving while ready).
	terminating bool
	proto       watch.Protocol
	tls         bool // the port's appProtocol is https
}

// endpointsFrom extracts the endpoints of the StatefulSet's pods from one
// EndpointSlice. Endpoints of other pods are ignored. When the slice has no
// port matching the wanted one, its endpoints are returned without an
// address (so not ready) and problem says why.
func endpointsFrom(slice *discoveryv1.EndpointSlice, set kubeSet, port string) (eps []kubeEndpoint, problem string) {
	portNum, proto, problem := slicePort(slice, port)
	for _, ep := range slice.Endpoints {
		ordinal, ok := podOrdinal(endpointPodName(ep), set)
		if !ok || len(ep.Addresses) == 0 {
			continue
		}
		ke := kubeEndpoint{ordinal: ordinal, proto: proto, tls: portTLS(slice, portNum)}
		if portNum != 0 {
			// Only the first address has defined semantics (EndpointSlice API).
			ke.addr = net.JoinHostPort(ep.Addresses[0], strconv.Itoa(portNum))
			ke.ready = endpointReady(ep.Conditions)
			ke.terminating = ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
		}
		eps = append(eps, ke)
	}
	return eps, problem
}

// endpointReady tells whether an endpoint takes its keys' requests. The
// serving condition decides when it is set: it is true for a pod that is
// ready even while it terminates (a rolling update's old pod keeps its keys
// until it stops serving, as there is no other owner), and it stays honest
// under publishNotReadyAddresses, where the controller forces ready to
// true. Without serving (older API servers), ready decides, and a
// terminating endpoint is not ready. A nil condition means true, except
// terminating.
func endpointReady(c discoveryv1.EndpointConditions) bool {
	if c.Serving != nil {
		return *c.Serving
	}
	ready := c.Ready == nil || *c.Ready
	terminating := c.Terminating != nil && *c.Terminating
	return ready && !terminating
}

// endpointPodName is the name of the pod behind an endpoint: the target
// Pod's name, else the hostname (which the EndpointSlice controller sets to
// the pod's hostname, the pod name for a StatefulSet, under a headless
// Service).
func endpointPodName(ep discoveryv1.Endpoint) string {
	if r := ep.TargetRef; r != nil && (r.Kind == "Pod" || r.Kind == "") && r.Name != "" {
		return r.Name
	}
	if ep.Hostname != nil {
		return *ep.Hostname
	}
	return ""
}

// podOrdinal parses "<statefulset>-<ordinal>" and reports whether the
// ordinal is one of the set's current ordinals. The ordinal must be written
// as the StatefulSet controller writes it: decimal without sign or leading
// zeros.
func podOrdinal(pod string, set kubeSet) (int, bool) {
	s, ok := strings.CutPrefix(pod, set.name+"-")
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < set.start || n >= set.start+set.shards() {
		return 0, false
	}
	return n, true
}

// slicePort picks the port to use from a slice's ports: the one named or
// numbered port, or with port "" the only TCP port. It returns its number
// and protocol, or 0 and a reason when there is no such port or the choice
// is ambiguous.
func slicePort(slice *discoveryv1.EndpointSlice, port string) (int, watch.Protocol, string) {
	var tcp []discoveryv1.EndpointPort
	for _, p := range slice.Ports {
		if p.Port != nil && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) {
			tcp = append(tcp, p)
		}
	}
	if port == "" {
		switch len(tcp) {
		case 1:
			return int(*tcp[0].Port), portProtocol(tcp[0]), ""
		case 0:
			return 0, "", fmt.Sprintf("EndpointSlice %s has no TCP port", slice.Name)
		default:
			return 0, "", fmt.Sprintf("EndpointSlice %s has %d TCP ports (%s); choose one with --port", slice.Name, len(tcp), portList(tcp))
		}
	}
	// Port names must contain a letter, so a number can only mean a number.
	num, numErr := strconv.Atoi(port)
	for _, p := range tcp {
		if (numErr == nil && int(*p.Port) == num) || (p.Name != nil && *p.Name == port) {
			return int(*p.Port), portProtocol(p), ""
		}
	}
	return 0, "", fmt.Sprintf("EndpointSlice %s has no TCP port %q (it has %s)", slice.Name, port, portList(tcp))
}

// portProtocol reads a port's appProtocol: kubernetes.io/h2c and grpc mean
// HTTP/2 over cleartext; anything else (or none) HTTP/1.1.
func portProtocol(p discoveryv1.EndpointPort) watch.Protocol {
	if p.AppProtocol != nil {
		switch strings.ToLower(*p.AppProtocol) {
		case "kubernetes.io/h2c", "grpc":
			return watch.H2C
		}
	}
	return watch.HTTP1
}

// portTLS tells whether the slice's port number num has appProtocol
// https: the shard speaks TLS there.
func portTLS(slice *discoveryv1.EndpointSlice, num int) bool {
	for _, p := range slice.Ports {
		if p.Port != nil && int(*p.Port) == num && p.AppProtocol != nil && strings.EqualFold(*p.AppProtocol, "https") {
			return true
		}
	}
	return false
}

func portList(ports []discoveryv1.EndpointPort) string {
	if len(ports) == 0 {
		return "none"
	}
	var parts []string
	for _, p := range ports {
		if p.Name != nil && *p.Name != "" {
			parts = append(parts, fmt.Sprintf("%s=%d", *p.Name, *p.Port))
		} else {
			parts = append(parts, strconv.Itoa(int(*p.Port)))
		}
	}
	return strings.Join(parts, ", ")
}

// kubeTopology builds the Topology for a StatefulSet (nil when it does not
// exist: no shards) and the EndpointSlices of its Service. Every ordinal of
// the set gets a shard, ready or not: N is spec.replicas, never the number of
// ready pods. The result depends only on the objects, not on their order, so
// every proxy replica that sees the same objects builds the same Topology.
// problems lists slices whose port could not be chosen, sorted.
func kubeTopology(sts *appsv1.StatefulSet, epSlices []*discoveryv1.EndpointSlice, port string) (topo watch.Topology, problems []string) {
	if sts == nil {
		return watch.Topology{}, nil
	}
	set, problems := kubeSetFrom(sts)
	best := make(map[int]kubeEndpoint, set.shards())
	for _, slice := range epSlices {
		eps, problem := endpointsFrom(slice, set, port)
		if problem != "" {
			problems = append(problems, problem)
		}
		for _, ep := range eps {
			if cur, ok := best[ep.ordinal]; !ok || betterEndpoint(ep, cur) {
				best[ep.ordinal] = ep
			}
		}
	}
	topo = watch.Topology{Replicas: set.ring, Shards: make([]watch.Shard, set.shards()), HandoffFrom: set.handoff}
	for i := range set.shards() {
		ordinal := set.start + i
		ep := best[ordinal]
		topo.Shards[i] = watch.Shard{
			Ordinal:  ordinal,
			Name:     set.name + "-" + strconv.Itoa(ordinal),
			Addr:     ep.addr,
			Ready:    ep.ready && ep.addr != "",
			Protocol: cmp.Or(ep.proto, watch.HTTP1),
			TLS:      ep.tls,
		}
	}
	slices.Sort(problems)
	return topo, slices.Compact(problems)
}

// betterEndpoint orders duplicates of one ordinal (several slices or address
// families): ready first, then not terminating, then one with an address,
// then the smallest address, so that the choice never depends on event
// order.
func betterEndpoint(a, b kubeEndpoint) bool {
	if a.ready != b.ready {
		return a.ready
	}
	if a.terminating != b.terminating {
		return !a.terminating
	}
	if (a.addr != "") != (b.addr != "") {
		return a.addr != ""
	}
	return cmp.Less(a.addr, b.addr)
}
