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
HELM = $(shell PYTHONPATH=$(CURDIR)/k8s/local $(BIN)/python -c 'from localcluster import binaries; print(binaries.ensure_helm())' 2>/dev/null | tail -1)
COMPONENTS := operator serving training-image

.PHONY: help host-deps dev prereqs binaries lock chart-crds monitoring-up test test-unit test-integration lint typecheck cluster-up cluster-down \
        bench bench-serving bench-rollout bench-operator bench-node images kind-up kind-down kind-load deploy demo clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# What the local node needs from Debian: the container runtime, CNI plugins, the image builders,
# catatonit (the pause image), conntrack/iptables (kube-proxy), Prometheus (monitoring tests) and
# PostgreSQL (the postgres-s3 MLflow backend; the harness runs the server itself, not the service).
HOST_PACKAGES := containerd runc containernetworking-plugins buildah mmdebstrap catatonit conntrack iptables \
	iproute2 prometheus postgresql
host-deps: ## install the Debian packages the local node and image builds need (root, apt)
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing: $$missing"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

dev: $(BIN)/python host-deps ## create .venv with the three components (editable), the test tools and host packages
	$(BIN)/pip install --quiet -c tests/constraints.txt -r tests/requirements-dev.txt \
		-e ./operator -e ./serving -e ./training-image
	@echo "dev environment ready: source $(VENV)/bin/activate"

binaries: ## fetch or build the pinned Kubernetes, etcd and helm binaries (cached outside the repo)
	$(BIN)/python -m localcluster binaries

# Binaries (CPU-bound Go builds) and images (mostly downloads and unpacking) overlap well.
prereqs: ## binaries and images, side by side
	$(MAKE) --no-print-directory -j2 binaries images

# Two passes on one cluster. The whole suite runs with MLflow on sqlite; then the tests marked
# mlflow_backend (train, register, serve, follow an alias, webhook, store outages) run again with
# MLflow on PostgreSQL + S3 (versitygw): the cluster is kept in between and only MLflow restarts.
# A cluster that was already up before `make test` stays up, on its own backend.
test: prereqs ## the whole suite: unit + integration (starts the local cluster and MLflow), then the MLflow tests on PostgreSQL + S3
	@up_before=$$($(BIN)/python -c 'from localcluster import cluster; print(int(all(cluster.status().values())))'); \
	MODELYARD_KEEP_CLUSTER=1 $(BIN)/pytest tests -ra -m "not postgres_s3"; rc=$$?; \
	if [ "$$up_before" = 1 ]; then down=; else down=1; fi; \
	MODELYARD_MLFLOW_BACKEND=postgres-s3 MODELYARD_CLUSTER_DOWN=$$down \
		$(BIN)/pytest tests/integration -m mlflow_backend -ra || rc=1; \
	exit $$rc

test-unit: ## unit tests only (no cluster)
	$(BIN)/pytest tests/unit -ra

test-integration: prereqs ## integration tests only
	$(BIN)/pytest tests/integration -ra

lint: ## ruff
	$(BIN)/ruff check .

typecheck: ## mypy
	$(BIN)/mypy operator/modelyard_operator serving/modelyard_serving training-image/modelyard_training \
		k8s/local/localcluster k8s/local/prometheus_crds.py

cluster-up: prereqs ## start the local control plane, the real local node and MLflow
	$(BIN)/python -m localcluster up

cluster-down: ## stop it and delete its data
	$(BIN)/python -m localcluster down

bench: bench-serving bench-rollout bench-operator bench-node ## all benchmarks

bench-node: ## on the real node: iris TrainingRun apply -> Succeeded and serving pod created -> Ready, by phase
	$(BIN)/pytest -s -q -p no:cacheprovider tests/bench/bench_node_start.py

bench-rollout: ## shadow mirroring cost (side by side) and alias move -> promoted on the local cluster
	cd tests/bench && ../../$(BIN)/python bench_mirror.py
	$(BIN)/pytest -s -q -p no:cacheprovider tests/bench/bench_promotion.py

bench-serving: ## serving benchmark vs `mlflow models serve`, bare FastAPI and a raw ASGI floor (needs wrk: apt-get install wrk)
	$(BIN)/python tests/bench/bench_serving.py

# Full scale by default: 1,000 ModelDeployments over 100 models plus 200 TrainingRuns on kwok
# nodes, with the old always-apply behaviour measured in the same run. Smaller, e.g.:
#   make bench-operator BENCH_OPERATOR_ARGS="--sizes 20,50,100 --compare"
# On a cluster started from another checkout, point MODELYARD_CLUSTER_DIR at its state dir.
BENCH_OPERATOR_ARGS ?= --sizes 1000 --compare
bench-operator: ## operator at scale: RSS, resync time, API writes, registry reads, alias-move latency
	$(BIN)/python tests/bench/bench_operator.py $(BENCH_OPERATOR_ARGS)

images: ## build the four images (operator, serving, training, mlflow): buildah here, Docker where an engine runs
	MODELYARD_TAG=$(TAG) $(BIN)/python -m localcluster images

kind-up: ## create a kind cluster from k8s/kind/cluster.yaml
	kind create cluster --name $(KIND_CLUSTER) --config k8s/kind/cluster.yaml

kind-down:
	kind delete cluster --name $(KIND_CLUSTER)

kind-load: images ## load the images into the kind cluster
	for c in operator serving training mlflow; do kind load docker-image --name $(KIND_CLUSTER) modelyard-$$c:$(TAG); done

MONITORING ?= false
deploy: ## helm upgrade --install the chart into the current kube context (MONITORING=true with kube-prometheus-stack)
	$(HELM) upgrade --install $(RELEASE) ./helm/modelyard --namespace $(NAMESPACE) --create-namespace \
		--set monitoring.serviceMonitor.enabled=$(MONITORING) --set monitoring.prometheusRule.enabled=$(MONITORING) \
		--set monitoring.dashboards.enabled=$(MONITORING) --wait --timeout 5m

monitoring-up: ## install kube-prometheus-stack configured to pick up modelyard's monitors and dashboards
	$(HELM) repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
	$(HELM) upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
		--namespace monitoring --create-namespace -f k8s/monitoring/kube-prometheus-stack-values.yaml --wait

chart-crds: ## copy crds/ into the chart (a test enforces byte equality)
	cp crds/*.yaml helm/modelyard/crds/

lock: ## re-resolve the hash-pinned requirements.lock of each image
	@test -x /tmp/modelyard-lock/bin/uv || { $(PYTHON) -m venv /tmp/modelyard-lock && /tmp/modelyard-lock/bin/pip install --quiet uv; }
	for c in operator serving; do \
		excludes=$$(test -f $$c/lock-excludes.txt && echo "--excludes $$c/lock-excludes.txt"); \
		/tmp/modelyard-lock/bin/uv pip compile $$c/pyproject.toml --universal --python-version 3.11 $$excludes \
			--generate-hashes --custom-compile-command "make lock" --quiet -o $$c/requirements.lock; done
	@# The training image takes the dev pins except python-dateutil: its `s3` extra (DVC remotes on
	@# S3) brings botocore, which wants dateutil < 3, while the dev venv's kubernetes wants >= 3.
	grep -v '^python-dateutil==' tests/constraints.txt > /tmp/modelyard-lock/training-constraints.txt
	/tmp/modelyard-lock/bin/uv pip compile training-image/pyproject.toml --extra s3 \
		-c /tmp/modelyard-lock/training-constraints.txt --generate-hashes \
		--python-version 3.11 --python-platform linux --custom-compile-command "make lock" \
		-o training-image/requirements.lock
	/tmp/modelyard-lock/bin/uv pip compile k8s/images/mlflow/requirements.in --only-binary :all: --generate-hashes \
		--python-version 3.11 --python-platform linux --custom-compile-command "make lock" \
		-o k8s/images/mlflow/requirements.lock

demo: $(if $(filter local,$(CLUSTER)),prereqs) ## train, register, deploy, predict, promote, roll (CLUSTER=local|kind|aks)
	$(BIN)/python -m localcluster.demo --cluster $(CLUSTER)

clean: cluster-down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
