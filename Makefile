# modelyard developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
TAG ?= 0.1.0
CLUSTER ?= local
KIND_CLUSTER ?= modelyard
RELEASE ?= modelyard
NAMESPACE ?= modelyard-system
export PYTHONPATH := $(CURDIR)/k8s/local
HELM = $(shell $(BIN)/python -c 'from localcluster import binaries; print(binaries.ensure_helm())' 2>/dev/null | tail -1)
COMPONENTS := operator serving training-image

.PHONY: help dev binaries test test-unit test-integration lint typecheck cluster-up cluster-down \
        bench bench-serving images kind-up kind-down kind-load deploy demo clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

dev: $(BIN)/python ## create .venv with the three components (editable) and the test tools
	$(BIN)/pip install --quiet -c tests/constraints.txt -r tests/requirements-dev.txt \
		-e ./operator -e ./serving -e ./training-image
	@echo "dev environment ready: source $(VENV)/bin/activate"

binaries: ## fetch or build the pinned Kubernetes, etcd and helm binaries (cached outside the repo)
	$(BIN)/python -m localcluster binaries

test: binaries ## the whole suite: unit + integration (starts the local cluster and MLflow)
	$(BIN)/pytest tests -ra

test-unit: ## unit tests only (no cluster)
	$(BIN)/pytest tests/unit -ra

test-integration: binaries ## integration tests only
	$(BIN)/pytest tests/integration -ra

lint: ## ruff
	$(BIN)/ruff check .

typecheck: ## mypy
	$(BIN)/mypy operator/modelyard_operator serving/modelyard_serving training-image/modelyard_training \
		k8s/local/localcluster

cluster-up: binaries ## start the local control plane, local node and MLflow
	$(BIN)/python -m localcluster up

cluster-down: ## stop it and delete its data
	$(BIN)/python -m localcluster down

bench: bench-serving ## all benchmarks

bench-serving: ## serving benchmark vs `mlflow models serve` (needs wrk: apt-get install wrk)
	$(BIN)/python tests/bench/bench_serving.py

images: ## build the three container images (needs Docker)
	docker build -t modelyard-operator:$(TAG) -f operator/Dockerfile operator
	docker build -t modelyard-serving:$(TAG) -f serving/Dockerfile serving
	docker build -t modelyard-training:$(TAG) -f training-image/Dockerfile training-image
	docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^modelyard-'

kind-up: ## create a kind cluster from k8s/kind/cluster.yaml
	kind create cluster --name $(KIND_CLUSTER) --config k8s/kind/cluster.yaml

kind-down:
	kind delete cluster --name $(KIND_CLUSTER)

kind-load: images ## load the images into the kind cluster
	for c in operator serving training; do kind load docker-image --name $(KIND_CLUSTER) modelyard-$$c:$(TAG); done

deploy: ## helm upgrade --install the chart into the current kube context
	$(HELM) upgrade --install $(RELEASE) ./helm/modelyard --namespace $(NAMESPACE) --create-namespace \
		--set mlflow.enabled=true --wait --timeout 5m

demo: ## train, register, deploy, predict, promote, roll (CLUSTER=local|kind|aks)
	$(BIN)/python -m localcluster.demo --cluster $(CLUSTER)

clean: cluster-down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
