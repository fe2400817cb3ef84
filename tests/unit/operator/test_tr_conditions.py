"""metav1.Condition helper: shape, lastTransitionTime stability, change detection."""

from __future__ import annotations

from modelyard_operator.conditions import get_condition, set_condition, status_changed

T0, T1 = "2025-01-01T00:00:00Z", "2025-01-01T00:05:00Z"


def test_new_condition_has_metav1_shape() -> None:
    conditions = set_condition([], "Succeeded", "Unknown", "Pending", "waiting", 3, now=T0)
    assert conditions == [{
        "type": "Succeeded", "status": "Unknown", "reason": "Pending", "message": "waiting",
        "lastTransitionTime": T0, "observedGeneration": 3,
    }]


def test_transition_time_kept_while_status_unchanged() -> None:
    first = set_condition([], "Succeeded", "Unknown", "Pending", "waiting", 1, now=T0)
    second = set_condition(first, "Succeeded", "Unknown", "Running", "training", 1, now=T1)
    assert second[0]["lastTransitionTime"] == T0
    assert second[0]["reason"] == "Running"


def test_transition_time_moves_when_status_flips() -> None:
    first = set_condition([], "Succeeded", "Unknown", "Running", "training", 1, now=T0)
    second = set_condition(first, "Succeeded", "True", "Succeeded", "done", 1, now=T1)
    assert second[0]["lastTransitionTime"] == T1


def test_input_not_mutated_and_other_types_kept_sorted() -> None:
    failed = set_condition([], "Failed", "False", "Running", "", 1, now=T0)
    both = set_condition(failed, "Succeeded", "Unknown", "Running", "", 1, now=T0)
    assert [c["type"] for c in both] == ["Failed", "Succeeded"]
    assert len(failed) == 1
    assert get_condition(both, "Failed") == failed[0]
    assert get_condition(both, "Ready") is None


def test_generation_omitted_when_unknown() -> None:
    assert "observedGeneration" not in set_condition(None, "Ready", "True", "Ok", "", None, T0)[0]


def test_message_truncated() -> None:
    assert len(set_condition([], "Failed", "True", "X", "m" * 10000, 1, T0)[0]["message"]) == 4096


def test_status_changed_only_counts_keys_we_write() -> None:
    old = {"phase": "Running", "kopf": {"progress": {}}}
    assert not status_changed(old, {"phase": "Running"})
    assert status_changed(old, {"phase": "Succeeded"})
    assert not status_changed({}, {"alias": None})  # a merge-patch null on an absent key
    assert status_changed(None, {"phase": "Pending"})
