"""metav1.Condition helpers shared by all controllers."""

from __future__ import annotations

import datetime as dt
from typing import Any


def utc_now() -> str:
    """RFC 3339 timestamp with second precision, as the API server formats metav1.Time."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 timestamp from status (the format utc_now writes), or None."""
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    """The condition of ``type_``, or None."""
    for condition in conditions or []:
        if condition.get("type") == type_:
            return condition
    return None


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """A new condition list with ``type_`` set; the input list is not modified.

    ``lastTransitionTime`` only moves when ``status`` flips, so clients can tell how long a
    state has held and an unchanged reconcile produces an identical status (no write).
    """
    previous = get_condition(conditions, type_)
    if previous is not None and previous.get("status") == status:
        transition = previous.get("lastTransitionTime") or now or utc_now()
    else:
        transition = now or utc_now()
    condition: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        # metav1.Condition caps message at 32768 bytes; keep well below.
        "message": message[:4096],
        "lastTransitionTime": transition,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    result = [dict(c) for c in conditions or [] if c.get("type") != type_]
    result.append(condition)
    return sorted(result, key=lambda c: str(c.get("type")))


def status_changed(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """True when writing ``new`` would change anything in ``old``.

    Only keys present in ``new`` count: the status subresource may carry fields written by
    others (e.g. kopf's own bookkeeping) that we neither own nor want to churn.
    """
    old = old or {}
    return any(old.get(key) != value for key, value in (new or {}).items())
