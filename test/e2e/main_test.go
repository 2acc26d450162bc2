package e2e

import (
	"os"
	"testing"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proxyBuild.Remove()
	os.Exit(code)
}

// TestE2E starts one control plane, which takes seconds, and runs every
// scenario against it in a namespace of its own, one after the other:
// the latency measurements of Scale should not compete for two cores with
// other scenarios.
func TestE2E(t *testing.T) {
	env := kubeenv.Start(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *kubeenv.Env)
	}{
		{"Manifests", testManifests},
		{"Routing", testRouting},
		{"PodRestart", testPodRestart},
		{"Scale", testScale},
		{"TwoProxiesAgree", testTwoProxiesAgree},
		{"RBAC", testRBAC},
		{"Broadcast", testBroadcast},
		{"GRPC", testGRPC},
		{"RollingUpdate", testRollingUpdate},
		{"PodReplacedHeld", testPodReplacedHeld},
		{"Reshard", testReshard},
		{"Clients", testClients},
		{"ShardTLSImpostor", testShardTLSImpostor},
		// Last: they stop and restart the shared API server.
		{"APIServerOutage", testAPIServerOutage},
		{"ShutdownDuringOutage", testShutdownDuringOutage},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, env) })
	}
}
