"""The ModelDeployment controller's long-lived parts, started and stopped with the operator.

One instance owns: the registry client and its cache, the reconcile runner, the shared
registry watcher, the MLflow webhook receiver, a resync loop (kopf timers would put a
finalizer on every ModelDeployment; this needs none) and the drift loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from modelyard_operator import kube, memory, metrics
from modelyard_operator.modeldeployment.models import InvalidSpec, ModelDeployment
from modelyard_operator.modeldeployment.resolver import Resolver
from modelyard_operator.modeldeployment.retrain import check_retrain
from modelyard_operator.modeldeployment.runner import MDRunner
from modelyard_operator.modeldeployment.watcher import MDKey, RegistryWatcher
from modelyard_operator.modeldeployment.webhook import WebhookReceiver
from modelyard_operator.registry import Registry, RegistryError, RegistryUnavailable
from modelyard_operator.settings import Settings

logger = logging.getLogger(__name__)

RESYNC_TICK_SECONDS = 5.0
API_RETRY_SECONDS = 5.0
WEBHOOK_REGISTER_RETRY_SECONDS = 30.0
# Same bound as kopf's handler pool (__main__.py): enough for one model's fan-out.
WAKE_WORKERS = 16
# Resyncs use at most this many of those threads, leaving the rest to registry wakes.
RESYNC_CONCURRENCY = 4


def _log_namespace_terminating(key: MDKey) -> None:
    # The API server refuses creates in a namespace being deleted (a 403 that is not an RBAC
    # refusal); the ModelDeployment goes with its namespace, so there is nothing to retry.
    logger.info("namespace %s is being deleted; ModelDeployment %s/%s not reconciled", key[0], *key)


class MDController:
    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or Registry(settings.mlflow_tracking_uri)
        # Twice the poll interval: the watcher refreshes snapshots every interval, so a
        # reconcile practically never has to ask MLflow itself.
        self.resolver = Resolver(self.registry, max_age=2 * settings.poll_interval)
        self.runner = MDRunner(settings, self.resolver)
        self.watcher = RegistryWatcher(self.resolver, self._wake, settings.poll_interval)
        self.runner.watcher = self.watcher
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        self.webhook = WebhookReceiver(self.watcher, secret)
        self._tasks: list[asyncio.Task[Any]] = []
        self._pool = ThreadPoolExecutor(max_workers=WAKE_WORKERS, thread_name_prefix="md-wake")

    async def start(self) -> None:
        if self.settings.webhook_enabled:
            await self.webhook.start(self.settings.webhook_port)
        else:
            # An unsigned receiver would let anyone who reaches the port trigger registry
            # reads; polling alone still follows every change, only later.
            logger.warning("MLflow webhook receiver not started: no MODELYARD_WEBHOOK_SECRET "
                           "(set MODELYARD_WEBHOOK_INSECURE=true to accept unsigned deliveries); "
                           "following the registry by polling every %.0fs",
                           self.settings.poll_interval)
        loops: list[Callable[[], Coroutine[Any, Any, None]]] = [
            self.watcher.run, self._resync_loop, self._drift_loop,
        ]
        if self.settings.webhook_register and self.settings.webhook_url:
            loops.append(self._register_webhook)
        self._tasks = [asyncio.create_task(loop()) for loop in loops]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.webhook.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def reconcile(self, key: MDKey) -> None:
        """kopf create/update/resume path: errors become kopf's retry semantics."""
        try:
            outcome = self.runner.run(key)
        except InvalidSpec as error:
            raise kopf.PermanentError(str(error)) from error
        except (ApiException, HTTPError) as error:
            if kube.is_namespace_terminating(error):
                _log_namespace_terminating(key)
                return
            raise kopf.TemporaryError(f"Kubernetes API: {error}", delay=API_RETRY_SECONDS) from error
        if outcome is not None and isinstance(outcome.registry_error, RegistryUnavailable):
            raise kopf.TemporaryError(str(outcome.registry_error),
                                      delay=self.settings.poll_interval)

    def resume(self, key: MDKey) -> None:
        """kopf resume (operator start): only if no other trigger reconciled ``key`` yet.

        After a restart the Deployments' listing often reaches an MD first; resuming it again
        would double the work of a full resync.
        """
        if self.runner.reconciled(key):
            metrics.RECONCILES.labels(kind="ModelDeployment", result="seen").inc()
            return
        self.reconcile(key)

    def reconcile_quietly(self, key: MDKey, unless_seen: str | None = None) -> None:
        """Event/loop paths: not retried by kopf, so just log; the resync loop catches up.

        These only ask for a fresh look, so they coalesce with a run already waiting.
        """
        try:
            self.runner.run(key, coalesce=True, unless_seen=unless_seen)
        except InvalidSpec:
            pass  # already reported in status by the runner
        except Exception as error:
            if kube.is_namespace_terminating(error):
                _log_namespace_terminating(key)
            else:
                logger.exception("reconcile of ModelDeployment %s/%s failed", *key)

    def deployment_changed(self, key: MDKey, resource_version: str | None) -> None:
        """A serving Deployment changed: reconcile unless the last run already saw this version."""
        if self.runner.saw_deployment(key, resource_version):
            metrics.RECONCILES.labels(kind="ModelDeployment", result="seen").inc()
            return
        self.reconcile_quietly(key, unless_seen=resource_version)

    def deployment_changed_soon(self, key: MDKey, resource_version: str | None) -> None:
        """``deployment_changed`` on the wake pool, without waiting for it (kopf event path)."""
        self._pool.submit(self.deployment_changed, key, resource_version)

    async def _wake(self, key: MDKey) -> None:
        # A pool of its own: asyncio's default one has cpu+4 threads (6 here), too few for an
        # alias move that wakes every ModelDeployment of a model at once.
        await asyncio.get_running_loop().run_in_executor(self._pool, self.reconcile_quietly, key)

    async def _resync_loop(self) -> None:
        # A few at a time: one after another, a thousand steady MDs took longer than the
        # minute between their resyncs; all at once, they would crowd out alias moves.
        slots = asyncio.Semaphore(RESYNC_CONCURRENCY)

        async def resync(key: MDKey) -> None:
            async with slots:
                await self._wake(key)

        while True:
            await asyncio.sleep(RESYNC_TICK_SECONDS)
            due = [key for key in self.runner.known() if self.runner.due_for_resync(key)]
            await asyncio.gather(*(resync(key) for key in due))
            if due:
                await asyncio.to_thread(memory.release)

    def _retrain_step(self, md: ModelDeployment) -> bool:
        event = check_retrain(md)
        if event is None:
            return False
        self.runner.post_events(md, [event])
        return True

    async def _drift_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.drift_interval)
            for key in sorted(self.runner.retrain_keys):
                try:
                    await asyncio.to_thread(self.runner.run_with, key, self._retrain_step)
                except Exception:
                    logger.exception("drift check of ModelDeployment %s/%s failed", *key)

    async def _register_webhook(self) -> None:
        """Register our receiver in MLflow, retrying until MLflow answers."""
        url = str(self.settings.webhook_url)
        secret = self.webhook_secret()
        while True:
            try:
                await asyncio.to_thread(self.registry.ensure_webhook, url, secret)
                return
            except RegistryError as error:
                logger.warning("MLflow webhook registration failed (%s); retrying", error)
            await asyncio.sleep(WEBHOOK_REGISTER_RETRY_SECONDS)

    def webhook_secret(self) -> str | None:
        secret = self.settings.webhook_secret
        return secret.get_secret_value() if secret is not None else None
