# Outrigger. `make help` lists the targets.

IMG ?= ghcr.io/outrigger-dev/outrigger:dev
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GIT_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/outrigger-dev/outrigger/internal/version.Version=$(VERSION) \
           -X github.com/outrigger-dev/outrigger/internal/version.GitCommit=$(GIT_COMMIT)

BIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= go tool controller-gen
# The envtest binaries are built once and cached outside the clone (see hack/setup-envtest.sh).
ENVTEST_ASSETS = $(shell hack/setup-envtest.sh | tail -n 1)
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || echo "$$(hack/setup-envtest.sh | tail -n 1)/kubectl")
GO_TEST_FLAGS ?= -race -count=1 -timeout 20m

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs, RBAC and webhook configurations from the markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./apis/..." paths="./controllers/..." paths="./webhooks/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac output:webhook:artifacts:config=config/webhook

.PHONY: generate
generate: ## Generate the DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./apis/..."

.PHONY: proto
proto: ## Generate the Go code of Outrigger's own protos (proto/) with protoc and the go tool plugins.
	go build -o $(BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	go build -o $(BIN)/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc
	protoc --plugin=protoc-gen-go=$(BIN)/protoc-gen-go --plugin=protoc-gen-go-grpc=$(BIN)/protoc-gen-go-grpc \
		-I proto --go_out=. --go_opt=module=github.com/outrigger-dev/outrigger \
		--go-grpc_out=. --go-grpc_opt=module=github.com/outrigger-dev/outrigger \
		$$(find proto -name '*.proto' | sort)

.PHONY: verify-generated
verify-generated: manifests generate ## Fail when the committed generated files are stale.
	@if [ -n "$$(git status --porcelain -- apis config)" ]; then \
		echo "Generated files are stale; run 'make manifests generate' and commit:"; \
		git status --porcelain -- apis config; git --no-pager diff --stat -- apis config; exit 1; fi

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: envtest
envtest: ## Build the envtest binaries (kube-apiserver, etcd, kubectl) into the cache.
	hack/setup-envtest.sh

.PHONY: test
test: vet ## Run all tests: unit, envtest and the real-server suites.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test $(GO_TEST_FLAGS) ./...

.PHONY: fuzz
fuzz: ## Fuzz the state HTTP handlers and the CloudEvents envelopes, FUZZTIME each (default 15s).
	go test -run '^$$' -fuzz FuzzStateHTTP -fuzztime $${FUZZTIME:-15s} ./sidecar/api/http/
	go test -run '^$$' -fuzz FuzzEnvelope -fuzztime $${FUZZTIME:-15s} ./sidecar/blocks/pubsub/envelope/

.PHONY: bench
bench: ## Run the benchmarks, each against its baseline in the same run (needs Redis on loopback).
	go test -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench/
	go test -run '^$$' -bench . -benchmem ./webhooks/injector/

##@ Build

.PHONY: build
build: ## Build bin/outrigger.
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/outrigger ./cmd/outrigger

.PHONY: dev
dev: build ## Run the operator against a local control plane built from the envtest binaries.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" $(BIN)/outrigger dev

.PHONY: docker-build
docker-build: ## Build the image (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) --build-arg GIT_COMMIT=$(GIT_COMMIT) -t $(IMG) .

##@ Deployment (against the cluster in KUBECONFIG)

.PHONY: install
install: ## Install the CRDs.
	$(KUBECTL) apply --server-side --force-conflicts -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRDs.
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: ## Deploy the operator with IMG.
	cd config/manager && $(KUBECTL) kustomize . >/dev/null
	$(KUBECTL) kustomize config/default | sed "s|controller:latest|$(IMG)|g" | $(KUBECTL) apply --server-side --force-conflicts -f -

.PHONY: undeploy
undeploy: ## Remove the operator and the CRDs.
	$(KUBECTL) kustomize config/default | $(KUBECTL) delete --ignore-not-found -f -
