"""Pure Shadow analysis: stable pods' agreement counters and the candidate's own metrics -> a verdict.

No I/O here. Stable pods mirror a sample of live requests to the candidate and count, per
candidate version, the rows on which the two agreed (same class; for regressors a relative
error within tolerance). That compares old and new on identical inputs, which a canary cannot.

Gates (spec.rollout.shadow and spec.rollout.analysis):
- ``minSamples``: enough mirrored rows were compared since the rollout began; until then the
  verdict is ``wait``, so a candidate is never promoted or rejected blind.
- ``agreement``: agreeing rows / compared rows >= minAgreement.
- ``errorRate``: the candidate's own errors per mirrored request <= maxErrorRate.

There is no latency gate: stable pods send mirrored rows in small batches, so the candidate's
latency under them says nothing about what clients would see (a Canary measures that).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from modelyard_operator.modeldeployment.analysis import (
    PREFIX,
    GateResult,
    MetricSnapshot,
    Verdict,
)


@dataclass(frozen=True)
class Tally:
    """Mirrored rows compared against one candidate version, summed over stable pods."""

    agree: float = 0.0
    disagree: float = 0.0

    @property
    def samples(self) -> float:
        return self.agree + self.disagree

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.agree + other.agree, self.disagree + other.disagree)

    def since(self, baseline: Tally) -> Tally:
        """The rows counted after ``baseline``; a pod restart resets counters, so never negative."""
        if self.agree < baseline.agree or self.disagree < baseline.disagree:
            return self
        return Tally(self.agree - baseline.agree, self.disagree - baseline.disagree)

    def as_status(self) -> dict[str, int]:
        return {"agree": int(self.agree), "disagree": int(self.disagree)}

    @classmethod
    def from_status(cls, value: object) -> Tally:
        if not isinstance(value, dict):
            return cls()
        return cls(float(value.get("agree") or 0), float(value.get("disagree") or 0))


def parse_tally(text: str, version: str) -> Tally:
    """One stable pod's comparisons against candidate ``version``, from its /metrics text."""
    agree = disagree = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name != f"{PREFIX}_shadow_rows_total" or s.labels.get("candidate_version") != version:
                continue
            if s.labels.get("outcome") == "agree":
                agree += s.value
            elif s.labels.get("outcome") == "disagree":
                disagree += s.value
    return Tally(agree, disagree)


@dataclass(frozen=True)
class ShadowGates:
    min_agreement: float = 0.95
    min_samples: int = 200
    max_error_rate: float = 0.01


def evaluate(candidate: MetricSnapshot, tally: Tally, gates: ShadowGates) -> Verdict:
    samples = tally.samples
    enough = samples >= gates.min_samples
    volume = GateResult("minSamples", "Pass" if enough else "Wait", samples, gates.min_samples,
                        f"{samples:.0f} mirrored rows compared (need {gates.min_samples})")
    share = tally.agree / samples if samples else 0.0
    agreement = GateResult(
        "agreement", "Pass" if share >= gates.min_agreement else "Fail", share, gates.min_agreement,
        f"candidate agreed on {tally.agree:.0f} of {samples:.0f} rows ({share:.4f}) vs min "
        f"{gates.min_agreement}")
    rate = candidate.error_rate
    errors = GateResult(
        "errorRate", "Pass" if rate <= gates.max_error_rate else "Fail", rate, gates.max_error_rate,
        f"candidate error rate {rate:.4f} ({candidate.errors:.0f}/{candidate.requests:.0f}) vs max "
        f"{gates.max_error_rate}")
    results = (volume, agreement, errors)
    if not enough:  # never decide on too little evidence, either way
        return Verdict("wait", tuple(GateResult(g.name, "Wait", g.value, g.threshold, g.message)
                                     for g in results))
    if any(g.result == "Fail" for g in results):
        return Verdict("fail", results)
    return Verdict("pass", results)
