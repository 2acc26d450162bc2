// Package testutil is what the tests of several packages share: real HTTP
// shard servers on loopback that record what they receive (Shard), request
// helpers (Client, Do, Answer), the goroutines leak checks ignore
// (LeakOptions), certificates made by the test (CA, issuing with Issue or
// Sign; also test/kubeenv's control plane and TLS pods) and Secret volumes
// (SecretDir), and, for tests that run the shard-proxy binary as a
// process, building it once (Builder), its environment (ChildEnv) and its
// JSON log (Log). Race tells whether the tests run with the race detector.
//
// It is imported only by tests. It depends on internal/watch, the leaf
// model, and never on client-go: packages that must not link Kubernetes
// can use it.
package testutil
