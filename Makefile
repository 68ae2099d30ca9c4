# tickserve developer entry points. `make install` then `make test` set up and check a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tickserve
export TOOLS_CACHE  # the k8s test tier finds the binaries `make envtest-assets` built here

.PHONY: install system-deps envtest-assets kserve-manager gitea flux test test-unit test-k8s lint bench demo e2e manifests clean rules test-rules

install: system-deps ## create .venv with tickserve (editable) and everything the tests need
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[all]"
	$(MAKE) envtest-assets
	$(MAKE) kserve-manager
	$(MAKE) gitea
	$(MAKE) flux

system-deps: ## redis-server, prometheus, alertmanager, promtool and wrk from Debian packages when missing
	bash hack/install-system-deps.sh

envtest-assets: ## etcd, kube-apiserver, helm and kubeconform built with Go, cached in $(TOOLS_CACHE)
	bash hack/envtest-assets.sh "$(TOOLS_CACHE)"

kserve-manager: ## KServe's controller manager (v0.20.0, the CRDs' version) built with Go, cached in $(TOOLS_CACHE)
	bash hack/build-kserve-manager.sh "$(TOOLS_CACHE)"

gitea: ## Gitea v1.26.0 (the forge the registry-sync tests open PRs on) built with Go, cached in $(TOOLS_CACHE)
	bash hack/build-gitea.sh "$(TOOLS_CACHE)"

flux: ## Flux's source-controller and kustomize-controller (v1.9.6) built with Go, cached in $(TOOLS_CACHE)
	bash hack/build-flux.sh "$(TOOLS_CACHE)"

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint ## every test tier; in CI a tier that cannot run fails instead of skipping
	$(VENV)/bin/pytest

test-unit: ## no servers: pure unit tests
	$(VENV)/bin/pytest -m "not integration and not k8s"

test-k8s: ## the k8s tier only (envtest-style kube-apiserver + etcd)
	$(VENV)/bin/pytest -m k8s

bench: ## side-by-side benchmarks; JSON under bench-results/ and a printed table
	$(PY) benchmarks/run.py $(BENCH)

demo: ## the whole data path on one machine, with a bad canary rolled back (`tickserve demo` alone: a sound canary)
	$(VENV)/bin/tickserve demo --bad_challenger

manifests: ## render manifests/ from the Helm chart (the chart is the source of truth)
	bash hack/render-manifests.sh "$(TOOLS_CACHE)"
	bash hack/render-rules.sh "$(TOOLS_CACHE)"

rules: ## render monitoring/rules/tickserve.rules.yaml (plain Prometheus rules) from the chart's PrometheusRule
	bash hack/render-rules.sh "$(TOOLS_CACHE)"

test-rules: ## promtool unit tests of the alert rules (monitoring/rules/tests)
	promtool check rules monitoring/rules/tickserve.rules.yaml
	promtool test rules monitoring/rules/tests/*.test.yaml

e2e: ## kind cluster end to end: needs Docker and internet, not run in CI
	bash e2e/run.sh

clean:
	rm -rf $(VENV) bench-results .pytest_cache
