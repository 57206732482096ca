# certsmith — the two commands users need are `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest

.PHONY: deps binaries lint test test-unit test-integration cluster-up cluster-down demo

deps:
	hack/install-deps

binaries:
	hack/build-binaries

lint: deps
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/lint-imports

test-unit: deps
	$(PYTEST) -m unit

test-integration: deps binaries
	$(PYTEST) -m integration

# Every tier, each in its own pytest run so a cluster is up only while its tier runs.
test: lint test-unit test-integration

cluster-up: deps
	hack/cluster up apiserver

cluster-down:
	hack/cluster down apiserver

demo: deps
	hack/demo
