// Package e2e holds the end-to-end tests: the shard-proxy binary, built
// once per test binary (with -race when the tests are), runs out of cluster
// against a real local control plane (test/kubeenv) and is checked from the
// outside only, through its data and admin ports and its JSON log.
//
// All tests share one control plane and run as subtests of TestE2E, each in
// its own namespace; the API server outage runs last because it restarts
// the shared API server. Run them with
//
//	go test -race -count=1 ./test/e2e/
//
// They skip under -short and where kubeenv cannot run (see its package doc).
package e2e
