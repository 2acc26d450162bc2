package kube

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/shard-proxy/shard-proxy/internal/watch"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Hand-built objects for the conversion rules; the watcher itself is tested
// against a real API server in kube_test.go.

func testSts(name string, replicas *int32, start int32) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
	s.Spec.Replicas = replicas
	if start != 0 {
		s.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: start}
	}
	return s
}

func ptrTo[T any](v T) *T { return &v }

type testEPOpt func(*discoveryv1.Endpoint)

func epNotReady(e *discoveryv1.Endpoint)    { e.Conditions.Ready = ptrTo(false) }
func epTerminating(e *discoveryv1.Endpoint) { e.Conditions.Terminating = ptrTo(true) }
func epNilReady(e *discoveryv1.Endpoint)    { e.Conditions.Ready = nil }
func epNotServing(e *discoveryv1.Endpoint)  { e.Conditions.Serving = ptrTo(false) }
func epNilServing(e *discoveryv1.Endpoint)  { e.Conditions.Serving = nil }
func epByHostname(e *discoveryv1.Endpoint)  { e.Hostname, e.TargetRef = ptrTo(e.TargetRef.Name), nil }

func testEP(pod, addr string, opts ...testEPOpt) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{
		Addresses:  []string{addr},
		Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true), Serving: ptrTo(true), Terminating: ptrTo(false)},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: pod},
	}
	for _, o := range opts {
		o(&e)
	}
	return e
}

type testPort struct {
	name  string
	num   int32
	proto corev1.Protocol
	app   string // appProtocol
}

func testSlice(name string, ports []testPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
	}
	for _, p := range ports {
		ep := discoveryv1.EndpointPort{Name: ptrTo(p.name), Port: ptrTo(p.num)}
		if p.proto != "" {
			ep.Protocol = ptrTo(p.proto)
		}
		if p.app != "" {
			ep.AppProtocol = ptrTo(p.app)
		}
		s.Ports = append(s.Ports, ep)
	}
	return s
}

var testHTTPPort = []testPort{{name: "http", num: 8080, proto: corev1.ProtocolTCP}}

func testShard(ordinal int, addr string, ready bool) watch.Shard {
	return watch.Shard{Ordinal: ordinal, Name: "web-" + strconv.Itoa(ordinal), Addr: addr, Ready: ready, Protocol: watch.HTTP1}
}

// TestPortProtocol: appProtocol kubernetes.io/h2c and grpc make a shard
// h2c; anything else is HTTP/1.1.
func TestPortProtocol(t *testing.T) {
	for app, want := range map[string]watch.Protocol{
		"": watch.HTTP1, "kubernetes.io/h2c": watch.H2C, "grpc": watch.H2C, "GRPC": watch.H2C,
		"http": watch.HTTP1, "kubernetes.io/ws": watch.HTTP1,
	} {
		slice := testSlice("web-a", []testPort{{name: "api", num: 9000, app: app}}, testEP("web-0", "10.0.0.1"))
		topo, problems := kubeTopology(testSts("web", ptrTo(int32(1)), 0), []*discoveryv1.EndpointSlice{slice}, "api")
		if len(problems) > 0 || topo.Shards[0].Protocol != want {
			t.Errorf("appProtocol %q: shard %+v, problems %v; want protocol %s", app, topo.Shards[0], problems, want)
		}
	}
}

func TestKubeTopology(t *testing.T) {
	tests := []struct {
		name     string
		sts      *appsv1.StatefulSet
		slices   []*discoveryv1.EndpointSlice
		port     string
		want     watch.Topology
		problems int
	}{
		{
			name: "no statefulset means no shards",
			sts:  nil,
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", testHTTPPort, testEP("web-0", "10.0.0.1")),
			},
			want: watch.Topology{},
		},
		{
			name: "all ready",
			sts:  testSts("web", ptrTo[int32](3), 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", testHTTPPort, testEP("web-2", "10.0.0.3"), testEP("web-0", "10.0.0.1"), testEP("web-1", "10.0.0.2")),
			},
			want: watch.Topology{Replicas: 3, Shards: []watch.Shard{
				testShard(0, "10.0.0.1:8080", true), testShard(1, "10.0.0.2:8080", true), testShard(2, "10.0.0.3:8080", true),
			}},
		},
		{
			name: "nil replicas means 1",
			sts:  testSts("web", nil, 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", testHTTPPort, testEP("web-0", "10.0.0.1")),
			},
			want: watch.Topology{Replicas: 1, Shards: []watch.Shard{testShard(0, "10.0.0.1:8080", true)}},
		},
		{
			name: "zero replicas",
			sts:  testSts("web", ptrTo[int32](0), 0),
			want: watch.Topology{Replicas: 0, Shards: []watch.Shard{}},
		},
		{
			name: "missing, not ready and terminating pods keep their ordinals",
			sts:  testSts("web", ptrTo[int32](4), 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", testHTTPPort, testEP("web-0", "10.0.0.1", epNotReady, epNotServing), testEP("web-1", "10.0.0.2", epTerminating, epNotReady, epNotServing), testEP("web-3", "10.0.0.4")),
			},
			want: watch.Topology{Replicas: 4, Shards: []watch.Shard{
				testShard(0, "10.0.0.1:8080", false), testShard(1, "10.0.0.2:8080", false), testShard(2, "", false), testShard(3, "10.0.0.4:8080", true),
			}},
		},
		{
			name: "publishNotReadyAddresses: ready is forced true, serving false means not ready",
			sts:  testSts("web", ptrTo[int32](2), 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", testHTTPPort, testEP("web-0", "10.0.0.1", epNotServing), testEP("web-1", "10.0.0.2")),
			},
			want: watch.Topology{Replicas: 2, Shards: []watch.Shard{testShard(0, "10.0.0.1:8080", false), testShard(1, "10.0.0.2:8080", true)}},
		},
		{
			name: "terminating but still serving keeps its keys",
			sts:  testSts("web", ptrTo[int32](2), 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", testHTTPPort, testEP("web-0", "10.0.0.1", epTerminating, epNotReady), testEP("web-1", "10.0.0.2", epTerminating, epNotReady, epNotServing)),
			},
			want: watch.Topology{Replicas: 2, Shards: []watch.Shard{testShard(0, "10.0.0.1:8080", true), testShard(1, "10.0.0.2:8080", false)}},
		},
		{
			name: "without serving: nil ready means ready, but not while terminating",
			sts:  testSts("web", ptrTo[int32](2), 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", testHTTPPort, testEP("web-0", "10.0.0.1", epNilReady, epNilServing), testEP("web-1", "10.0.0.2", epTerminating, epNilReady, epNilServing)),
			},
			want: watch.Topology{Replicas: 2, Shards: []watch.Shard{testShard(0, "10.0.0.1:8080", true), testShard(1, "10.0.0.2:8080", false)}},
		},
		{
			name: "ordinals start",
			sts:  testSts("web", ptrTo[int32](2), 5),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", testHTTPPort, testEP("web-5", "10.0.0.5"), testEP("web-6", "10.0.0.6"), testEP("web-0", "10.0.0.9"), testEP("web-7", "10.0.0.7")),
			},
			want: watch.Topology{Replicas: 2, Shards: []watch.Shard{
				{Ordinal: 5, Name: "web-5", Addr: "10.0.0.5:8080", Ready: true, Protocol: watch.HTTP1},
				{Ordinal: 6, Name: "web-6", Addr: "10.0.0.6:8080", Ready: true, Protocol: watch.HTTP1},
			}},
		},
		{
			name: "pods beyond replicas and foreign names are ignored",
			sts:  testSts("web", ptrTo[int32](2), 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", testHTTPPort,
					testEP("web-2", "10.0.0.3"), testEP("web-01", "10.0.0.9"), testEP("web-+1", "10.0.0.9"), testEP("web-", "10.0.0.9"),
					testEP("webby-0", "10.0.0.9"), testEP("other-1", "10.0.0.9"), testEP("web-x", "10.0.0.9"), testEP("web-1", "10.0.0.2")),
			},
			want: watch.Topology{Replicas: 2, Shards: []watch.Shard{testShard(0, "", false), testShard(1, "10.0.0.2:8080", true)}},
		},
		{
			name: "hostname when there is no target",
			sts:  testSts("web", ptrTo[int32](1), 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", testHTTPPort, testEP("web-0", "10.0.0.1", epByHostname)),
			},
			want: watch.Topology{Replicas: 1, Shards: []watch.Shard{testShard(0, "10.0.0.1:8080", true)}},
		},
		{
			name: "duplicate ordinal: ready wins over not ready, in any slice order",
			sts:  testSts("web", ptrTo[int32](1), 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", testHTTPPort, testEP("web-0", "10.0.0.1", epNotReady, epNotServing)),
				testSlice("b", testHTTPPort, testEP("web-0", "10.0.0.2")),
				testSlice("c", testHTTPPort, testEP("web-0", "10.0.0.0", epTerminating)), // serving, but going away
			},
			want: watch.Topology{Replicas: 1, Shards: []watch.Shard{testShard(0, "10.0.0.2:8080", true)}},
		},
		{
			name: "duplicate ordinal, both ready: smallest address",
			sts:  testSts("web", ptrTo[int32](1), 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("v6", testHTTPPort, testEP("web-0", "fd00::1")),
				testSlice("v4", testHTTPPort, testEP("web-0", "10.0.0.1")),
			},
			want: watch.Topology{Replicas: 1, Shards: []watch.Shard{testShard(0, "10.0.0.1:8080", true)}},
		},
		{
			name: "IPv6 in brackets",
			sts:  testSts("web", ptrTo[int32](1), 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("v6", testHTTPPort, testEP("web-0", "fd00::1")),
			},
			want: watch.Topology{Replicas: 1, Shards: []watch.Shard{testShard(0, "[fd00::1]:8080", true)}},
		},
		{
			name: "named port",
			sts:  testSts("web", ptrTo[int32](1), 0),
			port: "admin",
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", []testPort{{name: "http", num: 8080}, {name: "admin", num: 9090}}, testEP("web-0", "10.0.0.1")),
			},
			want: watch.Topology{Replicas: 1, Shards: []watch.Shard{testShard(0, "10.0.0.1:9090", true)}},
		},
		{
			name: "numbered port",
			sts:  testSts("web", ptrTo[int32](1), 0),
			port: "9090",
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", []testPort{{name: "http", num: 8080}, {name: "admin", num: 9090}}, testEP("web-0", "10.0.0.1")),
			},
			want: watch.Topology{Replicas: 1, Shards: []watch.Shard{testShard(0, "10.0.0.1:9090", true)}},
		},
		{
			name: "only TCP port is chosen, UDP ignored",
			sts:  testSts("web", ptrTo[int32](1), 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", []testPort{{name: "dns", num: 53, proto: corev1.ProtocolUDP}, {name: "http", num: 8080}}, testEP("web-0", "10.0.0.1")),
			},
			want: watch.Topology{Replicas: 1, Shards: []watch.Shard{testShard(0, "10.0.0.1:8080", true)}},
		},
		{
			name: "ambiguous port: no address, not ready, a problem",
			sts:  testSts("web", ptrTo[int32](1), 0),
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", []testPort{{name: "http", num: 8080}, {name: "admin", num: 9090}}, testEP("web-0", "10.0.0.1")),
			},
			want:     watch.Topology{Replicas: 1, Shards: []watch.Shard{testShard(0, "", false)}},
			problems: 1,
		},
		{
			name: "missing named port in one slice only",
			sts:  testSts("web", ptrTo[int32](2), 0),
			port: "http",
			slices: []*discoveryv1.EndpointSlice{
				testSlice("a", testHTTPPort, testEP("web-0", "10.0.0.1")),
				testSlice("b", []testPort{{name: "grpc", num: 7070}}, testEP("web-1", "10.0.0.2")),
			},
			want:     watch.Topology{Replicas: 2, Shards: []watch.Shard{testShard(0, "10.0.0.1:8080", true), testShard(1, "", false)}},
			problems: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before []*discoveryv1.EndpointSlice
			for _, s := range tt.slices {
				before = append(before, s.DeepCopy())
			}
			got, problems := kubeTopology(tt.sts, tt.slices, tt.port)
			if len(tt.slices) > 0 && !reflect.DeepEqual(before, tt.slices) {
				t.Errorf("kubeTopology modified its input (objects from the informer cache)")
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("topology:\n got %+v\nwant %+v", got, tt.want)
			}
			if len(problems) != tt.problems {
				t.Errorf("problems = %q, want %d of them", problems, tt.problems)
			}
			if tt.want.Replicas > 0 {
				if _, err := got.Normalize(); err != nil {
					t.Errorf("result does not normalize: %v", err)
				}
			}
			// Determinism: any order of slices and endpoints gives the same answer.
			for range 20 {
				shuffled := shuffleSlices(tt.slices)
				if again, _ := kubeTopology(tt.sts, shuffled, tt.port); !reflect.DeepEqual(again, got) {
					t.Fatalf("order changed the result:\n got %+v\nwant %+v", again, got)
				}
			}
		})
	}
}

// shuffleSlices returns deep copies of slices in random order with their
// endpoints shuffled, leaving the originals alone.
func shuffleSlices(in []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	out := make([]*discoveryv1.EndpointSlice, len(in))
	for i, s := range in {
		out[i] = s.DeepCopy()
		rand.Shuffle(len(out[i].Endpoints), func(a, b int) {
			out[i].Endpoints[a], out[i].Endpoints[b] = out[i].Endpoints[b], out[i].Endpoints[a]
		})
	}
	rand.Shuffle(len(out), func(a, b int) { out[a], out[b] = out[b], out[a] })
	return out
}

func annotated(s *appsv1.StatefulSet, kv ...string) *appsv1.StatefulSet {
	s.Annotations = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		s.Annotations[kv[i]] = kv[i+1]
	}
	return s
}

// TestPinnedReplicasAndHandoff: the shard-proxy.io/replicas annotation sets
// the ring's N (pods above it are shards that own no keys; ordinals below
// it without a pod are not ready), handoff-from is carried, and invalid
// values are ignored with a problem.
func TestPinnedReplicasAndHandoff(t *testing.T) {
	eps := testSlice("a", testHTTPPort, testEP("web-0", "10.0.0.1"), testEP("web-1", "10.0.0.2"), testEP("web-2", "10.0.0.3"), testEP("web-3", "10.0.0.4"))
	tests := []struct {
		name         string
		sts          *appsv1.StatefulSet
		wantN        int
		wantShards   []watch.Shard
		wantHandoff  int
		wantProblems int
	}{
		{"pinned below spec: the new pod owns no keys", annotated(testSts("web", ptrTo[int32](4), 0), AnnotationReplicas, "3"), 3,
			[]watch.Shard{testShard(0, "10.0.0.1:8080", true), testShard(1, "10.0.0.2:8080", true), testShard(2, "10.0.0.3:8080", true), testShard(3, "10.0.0.4:8080", true)}, 0, 0},
		{"pinned above spec: the missing pod's keys wait", annotated(testSts("web", ptrTo[int32](3), 0), AnnotationReplicas, "4", AnnotationHandoffFrom, "3"), 4,
			[]watch.Shard{testShard(0, "10.0.0.1:8080", true), testShard(1, "10.0.0.2:8080", true), testShard(2, "10.0.0.3:8080", true), testShard(3, "10.0.0.4:8080", true)}, 3, 0},
		{"invalid values are ignored", annotated(testSts("web", ptrTo[int32](2), 0), AnnotationReplicas, "three", AnnotationHandoffFrom, "-1"), 2,
			[]watch.Shard{testShard(0, "10.0.0.1:8080", true), testShard(1, "10.0.0.2:8080", true)}, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo, problems := kubeTopology(tt.sts, []*discoveryv1.EndpointSlice{eps}, "")
			if topo.Replicas != tt.wantN || topo.HandoffFrom != tt.wantHandoff || !slices.Equal(topo.Shards, tt.wantShards) {
				t.Errorf("topology %+v, want N=%d handoff=%d shards %+v", topo, tt.wantN, tt.wantHandoff, tt.wantShards)
			}
			if len(problems) != tt.wantProblems {
				t.Errorf("problems %q, want %d", problems, tt.wantProblems)
			}
		})
	}
}
