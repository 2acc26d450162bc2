# shard-proxy: build, test, bench, fuzz. `make test` is what CI runs.
GO       ?= go
FUZZTIME ?= 30s

.PHONY: build test test-short provision bench fuzz vet

build:
	$(GO) build -trimpath -o bin/shard-proxy ./cmd/shard-proxy

# Provisions the local Kubernetes control plane for the end-to-end tests
# (etcd from Debian, kube-apiserver and kube-controller-manager built once
# into a cache), then runs every test with the race detector. Where the
# control plane cannot be provisioned, those tests skip and say why.
test: provision
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

# Unit and socket tests only, no Kubernetes provisioning.
test-short:
	$(GO) test -race -count=1 -short ./...

provision:
	bash test/kube/provision.sh
	bash test/monitoring/provision.sh
	bash test/browser/provision.sh

bench:
	bash bench/run.sh

fuzz:
	$(GO) test -run XXX -fuzz '^FuzzParseRules$$'   -fuzztime $(FUZZTIME) ./internal/proxy/keys/
	$(GO) test -run XXX -fuzz '^FuzzPathTemplate$$' -fuzztime $(FUZZTIME) ./internal/proxy/keys/
	$(GO) test -run XXX -fuzz '^FuzzBodyKey$$'      -fuzztime $(FUZZTIME) ./internal/proxy/keys/
	$(GO) test -run XXX -fuzz '^FuzzJSONKeyDifferential$$' -fuzztime $(FUZZTIME) ./internal/proxy/keys/
	$(GO) test -run XXX -fuzz '^FuzzKeyDifferential$$'     -fuzztime $(FUZZTIME) ./internal/proxy/keys/
	$(GO) test -run XXX -fuzz '^FuzzHpackEncoder$$' -fuzztime $(FUZZTIME) ./internal/proxy/h2hpack/
	$(GO) test -run XXX -fuzz '^FuzzRelayFrames$$'  -fuzztime $(FUZZTIME) ./internal/proxy/
	$(GO) test -run XXX -fuzz '^FuzzRelayHTTP1Answers$$' -fuzztime $(FUZZTIME) ./internal/proxy/
	$(GO) test -run XXX -fuzz '^FuzzModulus$$'      -fuzztime $(FUZZTIME) ./ring/
	$(GO) test -run XXX -fuzz '^FuzzRequestDifferential$$'  -fuzztime $(FUZZTIME) ./internal/proxy/h1/
	$(GO) test -run XXX -fuzz '^FuzzResponseDifferential$$' -fuzztime $(FUZZTIME) ./internal/proxy/h1/
	$(GO) test -run XXX -fuzz '^FuzzChunkedDifferential$$'  -fuzztime $(FUZZTIME) ./internal/proxy/h1/

vet:
	$(GO) vet ./...
