"""Pure pieces of a progressive rollout: replica weights and the ``status.candidate`` record.

``status.candidate`` is the rollout's memory. Every transition builds a new record here; the
caller writes it to the status subresource *before* acting on it, so an operator restarted at
any point finds the step it was in, the time the step began, and what it decided last.

Phases: Progressing -> (Paused <-> Progressing) -> Promoting -> Promoted, or -> Rejected
(a gate failed, or the candidate could not load) or Aborted (by hand, or the registry moved).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from modelyard_operator.conditions import parse_time
from modelyard_operator.modeldeployment.analysis import Verdict

ACTIVE = frozenset({"Progressing", "Paused", "Promoting"})
REJECTED_TAG = "modelyard.rejected"
CONTROLS = frozenset({"promote", "abort", "pause", "resume"})
# Gates that fail below their threshold (the others fail above it).
LOWER_BOUNDS = frozenset({"agreement"})

Candidate = dict[str, Any]


def split(total: int, weight: int) -> tuple[int, int]:
    """(stable, candidate) replicas approximating ``weight`` percent for the candidate.

    The candidate gets round(total * weight / 100) pods, at least one. Stable keeps the rest
    and at least one until promotion, so a rejection never has to scale it back up first and
    there is always a baseline to compare with. With few replicas this is coarse: one stable
    and one candidate pod is 50 % whatever the step says.
    """
    total = max(total, 1)
    candidate = min(max(1, round(total * weight / 100)), total)
    return max(1, total - candidate), candidate


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def step_text(step: int, steps: list[int]) -> str:
    return f"{step + 1}/{len(steps)} ({steps[step]}%)"


def is_active(candidate: Candidate | None) -> bool:
    return bool(candidate) and (candidate or {}).get("phase") in ACTIVE


def start(version: str, stable: str, strategy: str, steps: list[int],
          now: dt.datetime) -> Candidate:
    """A fresh rollout of ``version`` at its first step."""
    first = steps[0] if strategy == "Canary" else 0
    return {
        "version": version, "stableVersion": stable, "strategy": strategy,
        "phase": "Progressing", "step": 0, "weight": first,
        "stepText": step_text(0, steps) if strategy == "Canary" else "shadow",
        "stepStartTime": format_time(now), "stepStartRequests": 0,
        "reason": "RolloutStarted",
        "message": f"{strategy.lower()} of version {version} against stable {stable} started",
        "tagged": None, "gates": [],
    }


def advance(candidate: Candidate, steps: list[int], now: dt.datetime,
            candidate_requests: float) -> Candidate:
    """The next step, or Promoting after the last one."""
    step = int(candidate.get("step") or 0) + 1
    if candidate.get("strategy") != "Canary" or step >= len(steps):
        return {**candidate, "phase": "Promoting", "reason": "GatesPassed",
                "message": f"version {candidate['version']} passed every gate; promoting"}
    return {
        **candidate, "step": step, "weight": steps[step], "stepText": step_text(step, steps),
        "stepStartTime": format_time(now), "stepStartRequests": int(candidate_requests),
        "reason": "StepPassed",
        "message": f"step {step} passed; candidate weight now {steps[step]}%",
    }


def with_verdict(candidate: Candidate, verdict: Verdict) -> Candidate:
    return {**candidate, "gates": [g.as_status() for g in verdict.gates]}


def finish(candidate: Candidate, phase: str, reason: str, message: str) -> Candidate:
    return {**candidate, "phase": phase, "reason": reason, "message": message}


def pause(candidate: Candidate, reason: str, message: str) -> Candidate:
    return {**candidate, "phase": "Paused", "reason": reason, "message": message}


def resume(candidate: Candidate, now: dt.datetime) -> Candidate:
    """Back to Progressing; the step's clock restarts so the traffic deadline counts anew."""
    return {**candidate, "phase": "Progressing", "reason": "Resumed",
            "message": "resumed by annotation", "stepStartTime": format_time(now)}


def elapsed(candidate: Candidate, now: dt.datetime) -> float:
    started = parse_time(candidate.get("stepStartTime"))
    return (now - started).total_seconds() if started else 0.0


def rejection_tag(verdict_or_reason: Verdict | str) -> str:
    """The tag value recorded on a rejected MLflow version: the failing gates, briefly."""
    if isinstance(verdict_or_reason, str):
        return verdict_or_reason[:500]
    parts = [
        f"{g.name}={g.value:.4g}{'<' if g.name in LOWER_BOUNDS else '>'}{g.threshold:.4g}"
        if g.value is not None and g.threshold is not None else g.name
        for g in verdict_or_reason.failed
    ]
    return ",".join(parts)[:500]


def rejected_here(candidate: Candidate | None, version: str) -> bool:
    """Whether status remembers rejecting (or aborting) ``version``."""
    return bool(candidate) and (candidate or {}).get("version") == version and (
        (candidate or {}).get("phase") in ("Rejected", "Aborted"))
