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
# Renders config/ and generates the bundle with the kustomize Go API (no kubectl needed).
MANIFESTS_TOOL ?= go run ./hack/manifests
# The tree `make deploy` and `make build-installer` render: config/default (self-managed
# webhook CA), config/certmanager or config/overlays/ha.
DEPLOY_CONFIG ?= config/default
BUNDLE_CHANNELS ?= alpha
BUNDLE_IMG ?= ghcr.io/outrigger-dev/outrigger-bundle:v$(shell $(MANIFESTS_TOOL) bundle --print-version 2>/dev/null || echo 0.0.0)

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
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./apis/..." paths="./controllers/..." paths="./webhooks/..." paths="./sentry/..." \
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

.PHONY: bundle
bundle: ## Generate the OLM bundle (bundle/, bundle.Dockerfile) from config/: make bundle VERSION=x.y.z [IMG=...].
	$(MANIFESTS_TOOL) bundle --channels $(BUNDLE_CHANNELS) \
		$(if $(filter command line,$(origin VERSION)),--version $(VERSION)) \
		$(if $(filter command line,$(origin IMG)),--image $(IMG))

.PHONY: docs
docs: ## Generate docs/reference: the annotation, CRD, error code and CLI references.
	go run ./hack/docs
	go run ./cmd/outrigger docs > docs/reference/cli.md.tmp
	mv docs/reference/cli.md.tmp docs/reference/cli.md

GENERATED_PATHS = apis config bundle bundle.Dockerfile docs

.PHONY: verify-generated
verify-generated: manifests generate bundle docs ## Fail when the committed generated files (CRDs, RBAC, webhooks, deepcopy, bundle, docs) are stale.
	@if [ -n "$$(git status --porcelain -- $(GENERATED_PATHS))" ]; then \
		echo "Generated files are stale; run 'make manifests generate bundle docs' and commit:"; \
		git status --porcelain -- $(GENERATED_PATHS); git --no-pager diff --stat -- $(GENERATED_PATHS); exit 1; fi

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

.PHONY: test-e2e
test-e2e: ## Run the e2e test: make demo's walkthrough driven by kubectl and HTTP (needs root, ip netns, node, python3, Redis, PostgreSQL).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test -tags e2e -count=1 -timeout 20m -v ./test/e2e/

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

.PHONY: demo
demo: build ## The seed's hello-kubernetes walkthrough on a local control plane, pods run as local processes (Linux; root, or sudo).
	@assets="$(ENVTEST_ASSETS)"; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; \
		echo "make demo: each pod gets a network namespace, which needs root: running bin/outrigger dev --demo with sudo"; fi; \
	exec $$sudo env PATH="$$PATH" KUBEBUILDER_ASSETS="$$assets" $(BIN)/outrigger dev --demo

.PHONY: docker-build
docker-build: ## Build the image (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) --build-arg GIT_COMMIT=$(GIT_COMMIT) -t $(IMG) .

.PHONY: build-installer
build-installer: ## Render dist/install.yaml: CRDs, RBAC, the operator and webhooks of DEPLOY_CONFIG, with IMG.
	mkdir -p dist
	$(MANIFESTS_TOOL) render --image $(IMG) $(DEPLOY_CONFIG) > dist/install.yaml.tmp
	mv dist/install.yaml.tmp dist/install.yaml
	@echo "Wrote dist/install.yaml ($(DEPLOY_CONFIG), image $(IMG)): kubectl apply --server-side -f dist/install.yaml"

.PHONY: bundle-build
bundle-build: ## Build the OLM bundle image BUNDLE_IMG (needs a Docker engine).
	docker build -f bundle.Dockerfile -t $(BUNDLE_IMG) .

##@ Deployment (against the cluster in KUBECONFIG)

.PHONY: install
install: ## Install the CRDs.
	$(KUBECTL) apply --server-side --force-conflicts -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRDs.
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: ## Deploy the operator of DEPLOY_CONFIG (default config/default) with IMG.
	$(MANIFESTS_TOOL) render --image $(IMG) $(DEPLOY_CONFIG) | $(KUBECTL) apply --server-side --force-conflicts -f -

.PHONY: undeploy
undeploy: ## Remove the operator and the CRDs.
	$(MANIFESTS_TOOL) render $(DEPLOY_CONFIG) | $(KUBECTL) delete --ignore-not-found -f -
