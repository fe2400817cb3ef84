"""Registry resolution, the shared cache/watcher and webhook delivery against a REAL MLflow.

A throwaway ``mlflow server`` (sqlite backend in a temp dir) is started once for this module:
no mocks of MLflow. Webhooks need the server to allow plain-http, private-address receivers.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from mlflow.tracking import MlflowClient
from modelyard_operator.modeldeployment.models import ModelRef
from modelyard_operator.modeldeployment.resolver import Resolver
from modelyard_operator.modeldeployment.watcher import MDKey, RegistryWatcher
from modelyard_operator.modeldeployment.webhook import WebhookReceiver
from modelyard_operator.registry import (
    ModelNotFound,
    ModelSnapshot,
    Registry,
    RegistryUnavailable,
    ResolvedVersion,
    SelectorNotSet,
)

from tests.helpers import free_port

pytestmark = [
    pytest.mark.timeout(300),
    # Stages are deprecated in MLflow but still supported (and used) by ModelDeployment.
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        # Test-only relaxations so MLflow delivers to our receiver on 127.0.0.1 over http,
        # and re-reads the webhook list at once instead of caching it for a minute.
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    log = (root / "mlflow.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((root / "mlflow.log").read_text()[-3000:]) from None
            time.sleep(0.5)
    yield uri
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # uvicorn's graceful shutdown can hang on a busy box
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(mlflow_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)


def new_model(client: MlflowClient, versions: int) -> str:
    """A registered model with ``versions`` versions, each backed by a real run."""
    name = f"m-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    experiment = client.create_experiment(name)
    for _ in range(versions):
        run = client.create_run(experiment)
        client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
    return name


def test_resolves_alias_stage_and_pinned_version(client: MlflowClient, mlflow_uri: str) -> None:
    name = new_model(client, 3)
    client.set_registered_model_alias(name, "champion", "2")
    client.transition_model_version_stage(name, "3", "Production")
    registry = Registry(mlflow_uri)
    resolver = Resolver(registry, max_age=60)
    by_alias = resolver.resolve(ModelRef(name=name, alias="champion"))
    assert (by_alias.version, by_alias.model_uri) == ("2", f"models:/{name}/2")
    assert by_alias.run_id and by_alias.source and by_alias.source.endswith("/model")
    assert resolver.resolve(ModelRef(name=name, stage="Production")).version == "3"
    assert resolver.resolve(ModelRef(name=name, version="1")).version == "1"
    snap = registry.snapshot(name)
    assert snap.aliases == {"champion": "2"} and set(snap.stages) == {"Production"}


def test_typed_errors(client: MlflowClient, mlflow_uri: str) -> None:
    name = new_model(client, 1)
    resolver = Resolver(Registry(mlflow_uri), max_age=60)
    with pytest.raises(SelectorNotSet) as alias_error:
        resolver.resolve(ModelRef(name=name, alias="champion"))
    assert alias_error.value.reason == "AliasNotSet"
    with pytest.raises(SelectorNotSet) as stage_error:
        resolver.resolve(ModelRef(name=name, stage="Staging"))
    assert stage_error.value.reason == "StageEmpty"
    with pytest.raises(ModelNotFound, match="version 7"):
        resolver.resolve(ModelRef(name=name, version="7"))
    with pytest.raises(ModelNotFound, match="not found"):
        resolver.resolve(ModelRef(name="no-such-model", alias="champion"))


def test_dead_mlflow_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable):
        Resolver(Registry(f"http://127.0.0.1:{free_port()}"), max_age=60).resolve(ModelRef(name="m", alias="a"))
    assert time.monotonic() - started < 5


def test_hung_mlflow_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable):
            Registry(f"http://127.0.0.1:{silent.getsockname()[1]}").snapshot("m")
    assert time.monotonic() - started < 10


def test_server_errors_are_unavailability() -> None:
    class Failing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RegistryUnavailable):
            Registry(f"http://127.0.0.1:{server.server_address[1]}").snapshot("m")
    finally:
        server.shutdown()


class CountingRegistry(Registry):
    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.snapshots: list[str] = []
        self.versions: list[tuple[str, str]] = []

    def snapshot(self, name: str) -> ModelSnapshot:
        self.snapshots.append(name)
        return super().snapshot(name)

    def version(self, name: str, version: str) -> ResolvedVersion:
        self.versions.append((name, version))
        return super().version(name, version)


def test_resolver_shares_one_query_per_model(client: MlflowClient, mlflow_uri: str) -> None:
    name = new_model(client, 2)
    client.set_registered_model_alias(name, "champion", "1")
    client.transition_model_version_stage(name, "2", "Staging")
    registry = CountingRegistry(mlflow_uri)
    resolver = Resolver(registry, max_age=60)
    threads = [threading.Thread(target=resolver.resolve, args=(ModelRef(name=name, alias="champion"),))
               for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert resolver.resolve(ModelRef(name=name, stage="Staging")).version == "2"
    assert registry.snapshots == [name]  # 11 resolutions, one registry read
    assert registry.versions == [(name, "1")]


def test_resolver_caches_outages_briefly(mlflow_uri: str) -> None:
    registry = CountingRegistry(f"http://127.0.0.1:{free_port()}")
    resolver = Resolver(registry, max_age=60)
    for _ in range(5):
        with pytest.raises(RegistryUnavailable):
            resolver.resolve(ModelRef(name="m", alias="a"))
    assert registry.snapshots == ["m"]


def _watcher(registry: Registry, woken: list[MDKey]) -> RegistryWatcher:
    async def wake(key: MDKey) -> None:
        woken.append(key)

    return RegistryWatcher(Resolver(registry, max_age=60), wake, default_interval=30)


def test_watcher_polls_each_distinct_model_once_and_wakes_only_moved(
    client: MlflowClient, mlflow_uri: str,
) -> None:
    a, b = new_model(client, 2), new_model(client, 1)
    client.set_registered_model_alias(a, "champion", "1")
    client.set_registered_model_alias(a, "challenger", "2")
    client.set_registered_model_alias(b, "champion", "1")
    registry = CountingRegistry(mlflow_uri)
    woken: list[MDKey] = []
    watcher = _watcher(registry, woken)
    watcher.track(("ns", "a-champ-1"), ModelRef(name=a, alias="champion"), None, "1")
    watcher.track(("ns2", "a-champ-2"), ModelRef(name=a, alias="champion"), None, "1")
    watcher.track(("ns", "a-chall"), ModelRef(name=a, alias="challenger"), None, "2")
    watcher.track(("ns", "a-pinned"), ModelRef(name=a, version="1"), None, "1")
    watcher.track(("ns", "b"), ModelRef(name=b, alias="champion"), 5, "1")
    asyncio.run(watcher.poll_once())
    assert sorted(registry.snapshots) == sorted([a, b]) and woken == []
    client.set_registered_model_alias(a, "champion", "2")
    registry.snapshots.clear()
    asyncio.run(watcher.check(a))
    assert registry.snapshots == [a]
    assert woken == [("ns", "a-champ-1"), ("ns2", "a-champ-2")]
    woken.clear()
    asyncio.run(watcher.check(a))
    assert len(woken) == 2  # level-based: woken again until their reconcile reports "2"
    for key in woken:  # what their reconcile does at its end
        watcher.track(key, ModelRef(name=a, alias="champion"), None, "2")
    client.delete_registered_model_alias(a, "challenger")
    woken.clear()
    asyncio.run(watcher.check(a))
    assert woken == [("ns", "a-chall")]  # AliasNotSet differs from "2": wake to report it


def test_watcher_interval_per_model(client: MlflowClient, mlflow_uri: str) -> None:
    name = new_model(client, 1)
    watcher = _watcher(Registry(mlflow_uri), [])
    watcher.track(("ns", "slow"), ModelRef(name=name, alias="a"), None, "1")
    watcher.track(("ns", "fast"), ModelRef(name=name, alias="b"), 2, "1")
    watcher.track(("ns", "pinned"), ModelRef(name="other", version="4"), 1, "4")
    assert watcher.watched_models() == {name: 2}  # pinned models are not polled
    watcher.track(("ns", "pinned"), ModelRef(name="other", version="4"), 1, "!ModelNotFound")
    assert watcher.watched_models() == {name: 2, "other": 1}


def test_webhook_from_real_mlflow_wakes_the_watcher_at_once(
    client: MlflowClient, mlflow_uri: str,
) -> None:
    name = new_model(client, 2)
    client.set_registered_model_alias(name, "champion", "1")
    woken: list[MDKey] = []
    registry = Registry(mlflow_uri)
    watcher = _watcher(registry, woken)
    watcher.track(("ns", "md"), ModelRef(name=name, alias="champion"), None, "1")
    port, secret = free_port(), "whsec-test"

    async def scenario() -> float:
        receiver = WebhookReceiver(watcher, secret)
        await receiver.start(port, host="127.0.0.1")
        try:
            url = f"http://127.0.0.1:{port}/webhooks/mlflow"
            first = await asyncio.to_thread(registry.ensure_webhook, url, secret)
            again = await asyncio.to_thread(registry.ensure_webhook, url, secret)
            assert first == again  # idempotent by URL
            # The server caches "which webhooks listen to this event" (TTL 1 s here); the
            # alias set above cached an empty list, so let it expire first.
            await asyncio.sleep(1.5)
            started = time.monotonic()
            await asyncio.to_thread(client.set_registered_model_alias, name, "champion", "2")
            while not woken and time.monotonic() - started < 20:
                await asyncio.sleep(0.02)
            return time.monotonic() - started
        finally:
            await receiver.stop()
            await asyncio.to_thread(client.delete_webhook, first)

    elapsed = asyncio.run(scenario())
    assert woken == [("ns", "md")]
    # Typically ~0.25 s; the bound leaves room for a busy 2-core CI machine. The < 1 s p50
    # target is measured end to end in tests/integration/test_modeldeployment.py.
    assert elapsed < 3.0
