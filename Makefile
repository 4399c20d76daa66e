# scalekeeper developer workflow. `make help` lists the targets.
#
# On a fresh machine `make test` bootstraps everything it needs: uv (pinned,
# when none is on PATH), the virtualenv from uv.lock, and the pinned Go-built
# tools (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok,
# kubectl, helm, grpcurl, ghz, and on a host that can run the real node its
# kubelet, containerd and CoreDNS; built once into
# ~/.cache/scalekeeper/tools, which takes a while the first time).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# -- bootstrap ----------------------------------------------------------------

UV_VERSION := 0.13.9
UV_HOME := $(HOME)/.cache/scalekeeper/uv-$(UV_VERSION)
# A uv already on PATH wins; otherwise the pinned one, installed on first use.
UV ?= $(or $(shell command -v uv 2>/dev/null),$(UV_HOME)/bin/uv)
VENV := .venv
PYTHON := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
RUFF := $(VENV)/bin/ruff
DEV := $(PYTHON) -m scalekeeper_dev
PYTEST_ARGS ?=
PROTOS := $(wildcard proto/scalekeeper/v1/*.proto)

$(UV_HOME)/bin/uv:
	python3 -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The stamp makes `uv sync` run again only when the lock or project changes.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	touch $@

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
	  | awk 'BEGIN {FS = ":.*## "} {printf "  %-18s %s\n", $$1, $$2}'

.PHONY: venv
venv: $(VENV)/.synced ## create/update .venv from uv.lock (uv sync --frozen)

.PHONY: tools
tools: venv ## build or locate the pinned tools; print paths and versions
	$(DEV) tools

# -- development ----------------------------------------------------------------

.PHONY: certs
certs: venv ## write development certificates to .dev/certs (kept if present)
	$(DEV) certs --dir .dev/certs

.PHONY: run
run: venv tools ## the server on $$KUBECONFIG's cluster, else on a local control plane; demo data, grpcurl examples
	$(DEV) run

# NODES=real: one real node (kubelet + containerd, Linux and root) instead of simulated ones.
NODES ?= kwok
.PHONY: cluster-up
cluster-up: venv ## start the local cluster (control plane + KWOK nodes, or NODES=real) in the background; kubeconfig in .dev/kubeconfig
	$(DEV) cluster-up --nodes $(NODES)

.PHONY: cluster-down
cluster-down: venv ## stop the background cluster and remove its files (.dev/cluster)
	$(DEV) cluster-down

.PHONY: proto
proto: venv ## regenerate python/scalekeeper/v1 from proto/
	$(PYTHON) -m grpc_tools.protoc -Iproto --python_out=python --pyi_out=python --grpc_python_out=python \
	  $(PROTOS)

# -- checks ---------------------------------------------------------------------

.PHONY: lint
lint: venv ## ruff check, ruff format --check, and the import-layer contracts (lint-imports)
	$(RUFF) check .
	$(RUFF) format --check .
	$(VENV)/bin/lint-imports --no-cache

.PHONY: test-unit
test-unit: venv ## unit tests (no control plane)
	$(PYTEST) -m "not integration" tests/unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: venv tools ## integration tests against the local cluster (control plane + KWOK nodes)
	$(PYTEST) -m integration tests/integration $(PYTEST_ARGS)

# In this order: the cheap checks fail first (test-integration builds the tools).
.PHONY: test
test: venv ## lint, unit, integration, fault and fuzz tests, then deploy + upgrade on a real node (where possible)
	$(MAKE) lint
	$(MAKE) test-unit
	$(MAKE) test-integration
	$(MAKE) test-reliability
	$(MAKE) test-delivery

# --- Benchmarks and reliability ---
# Both start their own local cluster (like the integration tests).
# `make bench` takes ~30 minutes (most of it creating 100,000 Deployments) and
# rewrites docs/benchmarks.md; targets are reported there, never asserted.
# BENCH_ARGS: e.g. --duration=5s --scale-namespaces=100 --watchers=0 --no-cluster.
BENCH_ARGS ?=

.PHONY: bench
bench: venv tools ## benchmarks against a local control plane; writes docs/benchmarks.md
	$(PYTHON) -m scalekeeper_dev.bench $(BENCH_ARGS)

.PHONY: test-reliability
test-reliability: venv tools ## fault injection, concurrency and fuzz tests (a few minutes)
	$(PYTEST) tests/reliability $(PYTEST_ARGS)

# --- Delivery ---
# Build with Nix, run on kind, roll with Helm. `make test` needs none of this
# except what check-nix and chart-lint check (the unit tests run both too);
# nix, kind and a container runtime are needed for the rest.

NIX ?= nix
# nix or docker; empty: the first usable (scalekeeper_dev/image.py says which and why).
IMAGE_BUILDER ?=
KIND ?= kind
KIND_CLUSTER ?= scalekeeper
# kind v0.33.0's node image for Kubernetes v1.37.0 (the toolchain pins 1.37).
KIND_NODE_IMAGE ?= kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5
KUBE_CONTEXT ?= kind-$(KIND_CLUSTER)
# Where deploy and test-upgrade go: kind, or `local`, the cluster of
# `make cluster-up NODES=real` (a real kubelet + containerd node on this host).
CLUSTER ?= kind
ifeq ($(CLUSTER),local)
KUBE_CONTEXT := scalekeeper-dev
export KUBECONFIG := $(CURDIR)/.dev/kubeconfig
LOAD_IMAGE = $(DEV) node-load-image $(IMAGE_ARCHIVE)
else
LOAD_IMAGE = $(KIND) load image-archive $(IMAGE_ARCHIVE) --name $(KIND_CLUSTER)
endif
RELEASE ?= scalekeeper
DEPLOY_NAMESPACE ?= scalekeeper
DEPLOY_HELM_ARGS ?=
CHART := helm/scalekeeper
# What `helm template` assumes without a cluster (helm's compiled-in default
# may be older than the chart's kubeVersion).
CHART_KUBE_VERSION ?= 1.37.0
IMAGE_ARCHIVE := .dev/image.tar
IMAGE_REF_FILE := .dev/image.ref
# The pinned binaries, located (or built once) by the toolchain.
TOOL = $$($(PYTHON) -c 'from scalekeeper_dev import toolchain; print(toolchain.ensure("$(1)"))')
HELM = $(call TOOL,helm)
KUBECTL = $(call TOOL,kubectl)

.PHONY: build
build: venv ## the runtime virtualenv: nix build (./result) with Nix >= 2.18 + flakes, else uv into .dev/runtime
	$(DEV) build --nix $(NIX) --uv $(UV)

.PHONY: image
image: venv ## image archive .dev/image.tar, its ref in .dev/image.ref (Nix >= 2.18 + flakes, else the Dockerfile)
	$(DEV) image --nix $(NIX) --archive $(IMAGE_ARCHIVE) --ref-file $(IMAGE_REF_FILE) $(if $(IMAGE_BUILDER),--builder $(IMAGE_BUILDER))

.PHONY: kind-up
kind-up: ## create the kind cluster $(KIND_CLUSTER) (pinned node image) unless it exists
	$(KIND) get clusters | grep -qx '$(KIND_CLUSTER)' \
	  || $(KIND) create cluster --name $(KIND_CLUSTER) --image $(KIND_NODE_IMAGE) --wait 120s

.PHONY: kind-down
kind-down: ## delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)

# Secrets from the dev PKI (make certs): server TLS, and a reader client
# certificate for `helm test` and test-upgrade. Their names are handed to the
# chart (tls.secretName, tests.clientSecret) rather than guessed from its
# naming rules. The dev server certificate names "scalekeeper", hence
# tests.tlsServerName.
TLS_SECRET ?= $(RELEASE)-tls
READER_SECRET ?= $(RELEASE)-reader-tls
# test-upgrade's writer (SetReplicas during the rollout).
WRITER_SECRET ?= $(RELEASE)-writer-tls
# $(call dev_secret,NAME,CERT): Secret NAME from .dev/certs/CERT.{crt,key} and the CA, applied idempotently.
dev_secret = $$kubectl $$ctx create secret generic $(1) --dry-run=client -o yaml \
	  --from-file=tls.crt=.dev/certs/$(2).crt --from-file=tls.key=.dev/certs/$(2).key \
	  --from-file=ca.crt=.dev/certs/ca.crt | $$kubectl $$ctx apply -f -

.PHONY: deploy
deploy: image certs ## load the image (kind, or CLUSTER=local); helm upgrade --install --wait --atomic; helm test
	$(LOAD_IMAGE)
	kubectl=$(KUBECTL); ctx="--context $(KUBE_CONTEXT) --namespace $(DEPLOY_NAMESPACE)"; \
	$$kubectl --context $(KUBE_CONTEXT) create namespace $(DEPLOY_NAMESPACE) --dry-run=client -o yaml \
	  | $$kubectl --context $(KUBE_CONTEXT) apply -f -; \
	$(call dev_secret,$(TLS_SECRET),server); \
	$(call dev_secret,$(READER_SECRET),reader); \
	$(call dev_secret,$(WRITER_SECRET),writer)
	ref=$$(cat $(IMAGE_REF_FILE)); \
	$(HELM) upgrade --install $(RELEASE) $(CHART) --kube-context $(KUBE_CONTEXT) --namespace $(DEPLOY_NAMESPACE) \
	  --wait --atomic --timeout 10m \
	  --set image.repository=$${ref%:*} --set image.tag=$${ref##*:} --set image.pullPolicy=Never \
	  --set 'auth.readers={scalekeeper-reader}' --set 'auth.writers={scalekeeper-writer}' \
	  --set tls.secretName=$(TLS_SECRET) \
	  --set tests.clientSecret=$(READER_SECRET) --set tests.tlsServerName=scalekeeper \
	  $(DEPLOY_HELM_ARGS)
	$(HELM) test $(RELEASE) --kube-context $(KUBE_CONTEXT) --namespace $(DEPLOY_NAMESPACE) --logs

.PHONY: test-upgrade
test-upgrade: deploy ## traffic through the Service during a rolling helm upgrade and a leader kill; fails on any failed call
	$(PYTHON) tests/delivery/rpc_loop.py --kubectl $(KUBECTL) --helm $(HELM) \
	  --context $(KUBE_CONTEXT) --namespace $(DEPLOY_NAMESPACE) --release $(RELEASE) --chart $(CHART) \
	  --image $$(cat $(IMAGE_REF_FILE)) --reader-secret $(READER_SECRET) --writer-secret $(WRITER_SECRET) \
	  --server-name scalekeeper

# What `make test` runs last: deploy (helm test) and test-upgrade on a local
# cluster with a real node, when this host can run one (Linux, root);
# elsewhere it prints why and skips.
.PHONY: test-delivery
test-delivery: venv ## make deploy + make test-upgrade on a local real-node cluster (cluster-up NODES=real)
	@if ! reason=$$($(DEV) node-support); then echo "SKIPPED test-delivery: $$reason"; exit 0; fi; \
	$(MAKE) cluster-down; \
	trap '$(MAKE) cluster-down' EXIT; \
	$(MAKE) cluster-up NODES=real; \
	$(MAKE) test-upgrade CLUSTER=local

.PHONY: check-nix
check-nix: ## parse every .nix file (nix-instantiate --parse; apt-get install nix-bin); flake.lock is JSON
	command -v nix-instantiate >/dev/null || { echo "nix-instantiate not found: apt-get install nix-bin (or install Nix)"; exit 1; }
	for f in $$(git ls-files --cached --others --exclude-standard '*.nix'); do \
	  nix-instantiate --parse "$$f" >/dev/null || { echo "parse error: $$f"; exit 1; }; \
	done
	$(PYTHON) -c 'import json; json.load(open("flake.lock"))'

.PHONY: chart-lint
chart-lint: venv ## helm lint --strict and helm template for each ci/*-values.yaml
	for values in $(CHART)/ci/*-values.yaml; do \
	  $(HELM) lint --strict $(CHART) --values $$values; \
	  $(HELM) template ci $(CHART) --values $$values --kube-version $(CHART_KUBE_VERSION) >/dev/null; \
	done
