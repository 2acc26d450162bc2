//go:build tools

// Package tools pins the Kubernetes control-plane binaries that the
// end-to-end tests run: kube-apiserver and
// kube-controller-manager, built from k8s.io/kubernetes at the same minor
// version as the client-go the proxy uses. test/kube/provision.sh builds them
// from this module with `go build`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
