"""Canary (and Shadow) rollouts: one level-based pass decides what each side runs.

Called by reconcile once the registry has answered. The registry decides *which* version
should serve (the target); this decides *how* it gets there. The stable Deployment keeps the
last promoted version (status.resolvedVersion) while a candidate Deployment runs the target.

Every decision is written to status.candidate before it is acted on (see canary.py), and
children have fixed names, so a restarted operator resumes without duplicates or a reset.
The registry is written only to tag a rejected version and, if asked (revertAlias), to move
the alias back.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from modelyard_operator import API_VERSION, kube
from modelyard_operator.events import Event
from modelyard_operator.modeldeployment import canary, sides
from modelyard_operator.modeldeployment.builders import (
    build_candidate_deployment,
    build_shadow_service,
)
from modelyard_operator.modeldeployment.canary import Candidate
from modelyard_operator.modeldeployment.models import (
    MD_KIND,
    MD_PLURAL,
    ROLLOUT_ANNOTATION,
    VERSION_LABEL,
    ModelDeployment,
)
from modelyard_operator.modeldeployment.pods import load_errors
from modelyard_operator.modeldeployment.resolver import Resolver
from modelyard_operator.modeldeployment.rollout import analyse
from modelyard_operator.registry import RegistryError, ResolvedVersion
from modelyard_operator.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Plan:
    """What the stable side serves now, and the rollout record to publish."""

    serve: ResolvedVersion
    stable_replicas: int | None = None
    candidate: Candidate | None = None
    events: list[Event] = field(default_factory=list)
    delete_candidate: bool = False


def plan_rollout(
    md: ModelDeployment, target: ResolvedVersion, stable: ResolvedVersion | None,
    settings: Settings, resolver: Resolver, now: dt.datetime | None = None,
) -> Plan | None:
    """None when a plain rolling update applies (Rolling, or nothing served yet)."""
    record: Candidate | None = md.status.get("candidate") or None
    if md.spec.rollout.strategy == "Rolling" or stable is None:
        if canary.is_active(record):  # strategy switched mid-rollout: the Deployment rolls
            assert record is not None
            done = canary.finish(record, "Aborted", "StrategyChanged", "strategy is Rolling now")
            write_candidate(md, done)
            sides.delete_candidate(md)
        return None
    return _Pass(md, target, stable, settings, resolver, now or dt.datetime.now(dt.UTC)).run(record)


def write_candidate(md: ModelDeployment, record: Candidate) -> None:
    """Record a decision in status before acting on it."""
    kube.patch_status(API_VERSION, MD_PLURAL, md.namespace, md.name, {"candidate": record})
    md.body.setdefault("status", {})["candidate"] = record


class _Pass:
    def __init__(self, md: ModelDeployment, target: ResolvedVersion, stable: ResolvedVersion,
                 settings: Settings, resolver: Resolver, now: dt.datetime) -> None:
        self.md, self.target, self.stable = md, target, stable
        self.settings, self.resolver, self.now = settings, resolver, now
        self.rollout = md.spec.rollout
        annotations = (md.body.get("metadata") or {}).get("annotations") or {}
        control = str(annotations.get(ROLLOUT_ANNOTATION, "")).strip().lower()
        self.control = control if control in canary.CONTROLS else None
        self.events: list[Event] = []

    def plan(self, record: Candidate | None, *, replicas: int | None = None,
             serve: ResolvedVersion | None = None, delete: bool = False) -> Plan:
        return Plan(serve or self.stable, replicas, record, self.events, delete)

    def decide(self, record: Candidate, event: Event | None = None) -> Candidate:
        write_candidate(self.md, record)
        if event is not None:
            self.events.append(event)
        return record

    def consume_control(self) -> None:
        kube.merge_patch(API_VERSION, MD_KIND, self.md.namespace, self.md.name,
                         {"metadata": {"annotations": {ROLLOUT_ANNOTATION: None}}})

    def run(self, record: Candidate | None) -> Plan:
        version = self.target.version
        if version == self.stable.version:
            if (canary.is_active(record) and (record or {}).get("phase") == "Promoting"
                    and (record or {}).get("version") == version):
                # Promotion rolls stable to the approved version, so stable already names it:
                # finish the promotion rather than mistake it for the registry moving back.
                assert record is not None
                return self.promoting(record)
            if canary.is_active(record):
                assert record is not None
                record = self.decide(canary.finish(
                    record, "Aborted", "RegistryMoved",
                    f"the registry selects stable version {version} again"),
                    Event("Normal", "RolloutAborted", f"registry moved back to {version}"))
            # Any earlier rollout may have left a candidate (e.g. a crash right after Promoted).
            return self.plan(record, delete=record is not None)
        if canary.is_active(record) and (record or {}).get("version") != version:
            # The candidate Deployment is reused: applying the new version rolls its pods, and
            # analysis reads only pods of the new version.
            assert record is not None
            self.decide(canary.finish(
                record, "Aborted", "RegistryMoved",
                f"the registry moved to version {version} during the rollout"),
                Event("Normal", "RolloutAborted",
                      f"rollout of {record.get('version')} aborted: registry now selects {version}"))
            record = None
        if not canary.is_active(record):
            held = self.held_back(record)
            if held is not None:
                return held
            record = canary.start(version, self.stable.version, self.rollout.strategy,
                                  self.rollout.steps, self.now)
            if self.rollout.strategy == "Shadow":
                record["shadowBaseline"] = sides.shadow_baseline(self.md, self.stable.version, version)
            record = self.decide(
                record,
                Event("Normal", "RolloutStarted",
                      f"{self.rollout.strategy} of version {version} against {self.stable.version}"))
        assert record is not None
        return self.progress(record)

    def held_back(self, record: Candidate | None) -> Plan | None:
        """A plan keeping stable when the target was rejected before; None to (re)start."""
        version = self.target.version
        tagged = self.rejected_tag(version)
        if canary.rejected_here(record, version):
            assert record is not None
            if self.control == "resume":
                self.consume_control()
                return None
            if record.get("phase") == "Rejected" and not record.get("tagged"):
                record = self.decide(self.tag(record, str(record.get("tagValue") or "rejected")))
            elif record.get("phase") == "Rejected" and tagged is None:
                return None  # the user removed the tag: try again
            return self.plan(record, delete=True)
        if tagged is not None and tagged is not False:
            return self.plan(self.decide(canary.finish(
                canary.start(version, self.stable.version, self.rollout.strategy,
                             self.rollout.steps, self.now) | {"tagged": True},
                "Rejected", "PreviouslyRejected",
                f"version {version} carries {canary.REJECTED_TAG}={tagged}; remove the tag "
                "to try it again")), delete=True)
        return None

    def rejected_tag(self, version: str) -> str | bool | None:
        """The rejection tag's value, None if absent, False if unreadable (assume rejected)."""
        try:
            return self.resolver.tags(self.target.name, version).get(canary.REJECTED_TAG)
        except RegistryError:
            return False

    def progress(self, record: Candidate) -> Plan:
        if record.get("phase") == "Promoting":
            return self.promoting(record)
        if self.control == "abort":
            self.consume_control()
            return self.reject(record, "AbortedByUser", "aborted by annotation", None, "Aborted")
        if self.control == "promote":
            self.consume_control()
            record = self.decide(
                canary.finish(record, "Promoting", "PromotedByUser", "promoted by annotation"),
                Event("Normal", "PromotedByUser", f"version {record['version']} promoted by hand"))
            return self.promoting(record)
        if self.control == "pause" and record.get("phase") != "Paused":
            record = self.decide(canary.pause(record, "PausedByUser", "paused by annotation"),
                                 Event("Normal", "RolloutPaused", "paused by annotation"))
        elif self.control == "resume":
            self.consume_control()
            if record.get("phase") == "Paused":
                record = self.decide(canary.resume(record, self.now),
                                     Event("Normal", "RolloutResumed", "resumed by annotation"))
        stable_replicas = self.apply_candidate(record)
        if record.get("phase") == "Paused":
            return self.plan(record, replicas=stable_replicas)
        return self.analyse_step(record, stable_replicas)

    def total(self) -> int:
        if self.md.spec.autoscaling is None:
            return self.md.spec.replicas
        live = kube.get("apps/v1", "Deployment", self.md.namespace, self.md.name) or {}
        return int((live.get("spec") or {}).get("replicas") or self.md.spec.autoscaling.min_replicas)

    def apply_candidate(self, record: Candidate) -> int | None:
        """Size both sides for the record's step; returns the stable replica count to apply."""
        total = self.total()
        if self.rollout.strategy == "Shadow":
            _, replicas = canary.split(total, int(self.rollout.shadow.percent))
            stable: int | None = None
        else:
            stable, replicas = canary.split(total, int(record.get("weight") or 1))
        self.candidate = kube.apply(build_candidate_deployment(
            self.md, self.target, self.settings, replicas,
            behind_service=self.rollout.strategy == "Canary"), owner=self.md.body)
        if self.rollout.strategy == "Shadow":
            kube.apply(build_shadow_service(self.md), owner=self.md.body)
        return None if self.md.spec.autoscaling is not None else stable

    def analyse_step(self, record: Candidate, stable_replicas: int | None) -> Plan:
        version = self.target.version
        pods = sides.candidate_pods(self.md, self.candidate)
        health = analyse(self.candidate, pods, version, load_errors(pods, version))
        if health.phase in ("LoadFailed", "Stalled"):
            return self.reject(record, "CandidateRejected", f"gate load: {health.message}",
                               f"load={health.phase}")
        analysis = self.rollout.analysis
        if health.phase != "Complete":
            return self.plan(canary.finish(record, "Progressing", "WaitingForCandidate",
                                           health.message), replicas=stable_replicas)
        if canary.elapsed(record, self.now) < analysis.interval_seconds:
            return self.plan(record, replicas=stable_replicas)
        verdict = sides.measure(self.md, self.stable.version, self.candidate, version, record)
        if verdict is None:
            return self.plan(record, replicas=stable_replicas)
        record = canary.with_verdict(record, verdict)
        if verdict.decision == "fail":
            return self.reject(record, "CandidateRejected", f"gate {verdict.summary}",
                               canary.rejection_tag(verdict))
        if verdict.decision == "wait":
            overdue = analysis.interval_seconds + analysis.traffic_deadline_seconds
            if canary.elapsed(record, self.now) > overdue:
                record = self.decide(
                    canary.pause(record, "InsufficientTraffic",
                                 f"{verdict.summary}; paused (annotate resume to retry)"),
                    Event("Warning", "InsufficientTraffic", verdict.summary))
            return self.plan(record, replicas=stable_replicas)
        requests = float(verdict.gates[0].value or 0) + float(record.get("stepStartRequests") or 0)
        record = self.decide(canary.advance(record, self.rollout.steps, self.now, requests),
                             Event("Normal", "StepPassed", f"{record.get('stepText')}: {verdict.summary}"))
        if record["phase"] == "Promoting":
            return self.promoting(record)
        return self.plan(record, replicas=self.apply_candidate(record))

    def promoting(self, record: Candidate) -> Plan:
        """Stable rolls to the approved version; the candidate goes once that is complete."""
        live = kube.get("apps/v1", "Deployment", self.md.namespace, self.md.name)
        pods = sides.stable_pods(self.md)
        if analyse(live, pods, self.target.version).phase == "Complete" and _pins(live, self.target):
            record = self.decide(
                canary.finish(record, "Promoted", "CandidatePromoted",
                              f"version {self.target.version} is stable"),
                Event("Normal", "CandidatePromoted", f"version {self.target.version} promoted"))
            return self.plan(record, serve=self.target, delete=True)
        return self.plan(record, serve=self.target)

    def reject(self, record: Candidate, reason: str, message: str, tag: str | None,
               phase: str = "Rejected") -> Plan:
        record = self.decide(canary.finish(record, phase, reason, message)
                             | {"tagged": False if tag else None, "tagValue": tag},
                             Event("Warning", reason, f"version {record['version']}: {message}"))
        # The candidate goes after stable is back at full size (the plan's delete).
        if tag is not None:
            record = self.decide(self.tag(record, tag))
            self.revert_alias()
        return self.plan(record, delete=True)

    def tag(self, record: Candidate, value: str) -> Candidate:
        name, version = self.target.name, str(record["version"])
        try:
            self.resolver.registry.tag_version(name, version, canary.REJECTED_TAG, value)
        except RegistryError as error:
            logger.warning("could not tag %s/%s as rejected: %s", name, version, error)
            return record
        self.resolver.forget_tags(name, version)
        return record | {"tagged": True}

    def revert_alias(self) -> None:
        alias = self.md.spec.model.alias
        if not self.rollout.rollback.revert_alias or alias is None:
            return
        try:
            self.resolver.registry.set_alias(self.target.name, alias, self.stable.version)
            self.resolver.refresh(self.target.name)
            self.events.append(Event("Normal", "AliasReverted",
                                     f"alias {alias} moved back to {self.stable.version}"))
        except RegistryError as error:
            logger.warning("could not revert alias %s: %s", alias, error)


def _pins(deployment: dict[str, Any] | None, version: ResolvedVersion) -> bool:
    template = ((deployment or {}).get("spec") or {}).get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(VERSION_LABEL) == version.version)
