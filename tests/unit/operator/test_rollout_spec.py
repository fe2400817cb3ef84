"""spec.rollout.strategy and friends: defaults keep Rolling, bad steps are refused."""

from __future__ import annotations

from typing import Any

import pytest
from modelyard_operator.modeldeployment.models import InvalidSpec, parse_md


def md(rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"name": "iris", "alias": "champion"}}
    if rollout is not None:
        spec["rollout"] = rollout
    return {"metadata": {"name": "iris", "namespace": "ml", "uid": "u"}, "spec": spec}


def test_rolling_is_the_default_with_canary_defaults_ready() -> None:
    rollout = parse_md(md()).spec.rollout
    assert rollout.strategy == "Rolling"
    assert rollout.steps == [10, 50, 100]
    assert rollout.analysis.interval_seconds == 60
    assert rollout.analysis.min_requests == 100
    assert rollout.rollback.revert_alias is False


def test_canary_spec_parses() -> None:
    rollout = parse_md(md({
        "strategy": "Canary", "steps": [25, 100],
        "analysis": {"interval": "30s", "maxErrorRate": 0.05, "minRequests": 20,
                     "trafficDeadline": "2m", "maxDivergence": 0.2},
        "rollback": {"revertAlias": True},
    })).spec.rollout
    assert rollout.strategy == "Canary" and rollout.steps == [25, 100]
    assert rollout.analysis.traffic_deadline_seconds == 120
    assert rollout.analysis.max_error_rate == 0.05 and rollout.rollback.revert_alias


@pytest.mark.parametrize(("rollout", "message"), [
    ({"steps": [10, 50]}, "ending at 100"),
    ({"steps": [50, 10, 100]}, "ascending"),
    ({"steps": [50, 50, 100]}, "ascending"),
    ({"steps": [0, 100]}, "1..100"),
    ({"steps": []}, "ending at 100"),
    ({"strategy": "BlueGreen"}, "strategy"),
    ({"analysis": {"maxErrorRate": 2}}, "maxErrorRate"),
    ({"analysis": {"interval": "soon"}}, "duration"),
    ({"shadow": {"percent": 0}}, "percent"),
])
def test_invalid_rollouts_are_refused(rollout: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_md(md(rollout))
