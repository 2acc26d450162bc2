package kube

import (
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// TestPortTLS: appProtocol https makes a shard a TLS one, verified for
// its pod's stable name (or the --shard-server-name template); the
// Service annotation (all) makes every shard one.
func TestPortTLS(t *testing.T) {
	for _, tc := range []struct {
		app, template string
		all           bool
		wantTLS       bool
		wantName      string
	}{
		{app: "", wantTLS: false},
		{app: "https", wantTLS: true, wantName: "web-0.web.ns.svc.cluster.local"},
		{app: "HTTPS", template: "{statefulset}-{ordinal}.{namespace}.example", wantTLS: true, wantName: "web-0.ns.example"},
		{app: "grpc", all: true, wantTLS: true, wantName: "web-0.web.ns.svc.cluster.local"},
	} {
		slice := testSlice("web-a", []testPort{{name: "api", num: 9000, app: tc.app}}, testEP("web-0", "10.0.0.1"))
		topo, problems := kubeTopology(testSts("web", ptrTo(int32(1)), 0), []*discoveryv1.EndpointSlice{slice}, "api")
		src := &Source{Namespace: "ns", Service: "web", ServerName: tc.template}
		src.nameTLS(&topo, tc.all)
		if sh := topo.Shards[0]; len(problems) > 0 || sh.TLS != tc.wantTLS || sh.TLSName != tc.wantName {
			t.Errorf("appProtocol %q, template %q, all %v: shard %+v, problems %v; want TLS %v for %q", tc.app, tc.template, tc.all, sh, problems, tc.wantTLS, tc.wantName)
		}
	}
}
