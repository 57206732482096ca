# certsmith — the two commands users need: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PYTEST := $(VENV)/bin/pytest

.PHONY: deps binaries lint test test-unit test-integration test-chaos test-e2e e2e-kind bench bench-compare bench-pod-certificates bench-scale \
        cluster-up cluster-down demo demo-down

deps:
	hack/install-deps

binaries:
	hack/build-binaries >/dev/null

# Shell scripts are found by their shebang (sourced libraries by their `# shellcheck shell=`
# line), so a new script in hack/ or .ci/ is checked without being listed here. The alerts
# and dashboard (monitoring/): manifests/monitoring rendered from them, the rules valid and
# each alert firing and quiet on its promtool test series. The Helm chart (charts/certsmith):
# helm lint, helm template with its schema (bad values refused) under Helm 4 and Helm 3, and
# its default rendering equal to crds/ + manifests/ (hack/render-chart; helm is built by
# hack/build-helm).
lint: deps
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	find hack .ci -type f \
	  -exec awk 'FNR == 1 && /^#!.*[\/ ](ba)?sh( |$$)/ || /^# shellcheck shell=/ { print FILENAME; nextfile }' {} + | \
	  sort | xargs shellcheck --severity=style --external-sources
	hack/render-monitoring --check
	promtool check rules monitoring/alerts.yaml
	promtool test rules monitoring/tests/*.yaml
	hack/render-chart --check

test-unit: deps
	$(PYTEST) -m unit

# etcd + kube-apiserver + controller-manager as local processes, started by the tests:
# once per Kubernetes version in CERTSMITH_KUBERNETES_VERSIONS (hack/versions.env), side by
# side, each with its own binaries, state and ports; CERTSMITH_KUBERNETES_VERSIONS=v1.35.4
# runs one.
test-integration: deps
	hack/test-integration

# A kind cluster (offline node image built here, or kind's own where it can be pulled),
# certsmith deployed in it from the Dockerfile and manifests/.
test-e2e: deps binaries
	$(PYTEST) -m e2e

e2e-kind: test-e2e

# Crash safety (SIGKILLs and an apiserver restart during issuance) and the spec fuzzer, at
# sizes that fit CI, on the default Kubernetes version only (as e2e, bench and the demo);
# CERTSMITH_CHAOS_COUNT=1000 CERTSMITH_FUZZ_EXAMPLES=1000 for the full run.
test-chaos: deps binaries
	CERTSMITH_CHAOS_COUNT=$${CERTSMITH_CHAOS_COUNT:-200} CERTSMITH_CHAOS_KILLS=$${CERTSMITH_CHAOS_KILLS:-20} \
	CERTSMITH_FUZZ_EXAMPLES=$${CERTSMITH_FUZZ_EXAMPLES:-200} $(PYTEST) -m chaos

# Every tier, each in its own pytest run so a cluster is up only while its tier runs.
test: lint test-unit test-integration test-chaos test-e2e

bench: deps binaries
	$(VENV)/bin/python bench/issuance.py

# cert-manager (built from its Go module by hack/build-cert-manager) and certsmith, one after
# the other on fresh apiserver profiles, same N Certificates: one table of ratios. Run it
# alone on the machine: ratios hold on a busy host, absolute times do not.
bench-compare: deps binaries
	$(VENV)/bin/python bench/compare.py $(if $(COUNT),--count $(COUNT))

bench-pod-certificates: deps binaries
	$(VENV)/bin/python bench/pod_certificates.py

# The 1k/5k/10k curve, then idle CPU, a second 10k churn and a restart at 10k (minutes);
# BENCH_SCALE_ARGS="--counts 1000" for a short run.
bench-scale: deps binaries
	$(VENV)/bin/python bench/scale.py $${BENCH_SCALE_ARGS:---idle 60 --churn --restart}

cluster-up: deps binaries
	hack/cluster up apiserver

cluster-down:
	hack/cluster down apiserver

demo:
	hack/demo

demo-down:
	hack/cluster down kind
