"""The evaluation's typed results: the bootstrap's comparisons and the gate's decision.

``GateDecision`` is what flows branch on and what the registry and the dossier store
(JSON-serialisable through pydantic); the bootstrap records are plain frozen dataclasses
because they carry numpy arrays of resampled differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from pydantic import Field

from refit.evaluation.segments import OVERALL, segment_key
from refit.records import Record


@dataclass(frozen=True)
class SegmentComparison:
    """One row of a paired comparison: a segment value (or the whole data set).

    ``difference`` is candidate minus champion in the metric's own units; ``ci_low`` /
    ``ci_high`` are its percentile interval; ``p_value`` is two-sided against 0 (twice the
    smaller bootstrap tail fraction, capped at 1). ``replicates`` holds the resampled
    differences (NaN where the metric was undefined in that resample).
    """

    segment: str
    value: str
    n: int
    candidate: float | None
    champion: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_valid: int
    replicates: np.ndarray = field(repr=False, compare=False)

    @property
    def scope(self) -> str:
        return OVERALL if self.segment == OVERALL else segment_key(self.segment, self.value)


@dataclass(frozen=True)
class PairedBootstrap:
    """A paired bootstrap comparison, overall and per segment value."""

    metric: str
    confidence: float
    n_resamples: int
    seed: int
    overall: SegmentComparison
    segments: list[SegmentComparison]


class Outcome(StrEnum):
    PROMOTE = "PROMOTE"
    REJECT = "REJECT"
    INCONCLUSIVE = "INCONCLUSIVE"


class GateCheck(Record):
    """One rule of the gate. Values are gains: positive means the candidate is better.

    ``passed`` is None when the check is reported but not gated (a small segment). ``margin``
    is how far the check is from flipping, positive on the passing side. ``rejects`` says
    whether failing it rejects the candidate (the improvement check only withholds promotion).
    """

    name: str
    scope: str
    value: float | None
    threshold: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    margin: float | None = None
    passed: bool | None
    rejects: bool = True
    note: str = ""


class SegmentResult(Record):
    """One segment value in the decision: both models' metric and the candidate's gain."""

    segment: str
    value: str
    n: int
    gated: bool
    candidate: float | None
    champion: float | None = None
    gain: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_harm: float | None = None
    p_harm_adjusted: float | None = None
    passed: bool | None = None
    note: str = ""

    @property
    def scope(self) -> str:
        return segment_key(self.segment, self.value)


class GateDecision(Record):
    """What the gate decided and why; JSON-serialisable (``model_dump_json``).

    ``outcome`` is what happens (PROMOTE moves the champion alias); ``gate_outcome`` is what the
    rules said, which differs only when ``forced``. Gains are candidate minus champion for
    higher-is-better metrics and champion minus candidate otherwise: positive is better.
    """

    outcome: Outcome
    gate_outcome: Outcome
    forced: bool = False
    force_reason: str | None = None
    metric: str
    higher_is_better: bool
    confidence: float
    n_resamples: int
    seed: int
    n_rows: int
    first_run: bool
    candidate_value: float | None
    champion_value: float | None = None
    gain: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    max_segment_regression: float
    holm: bool
    checks: list[GateCheck]
    segments: list[SegmentResult]
    reasons: list[str]
    headline: str
    evaluated_on: str = Field("holdout", description="holdout, recent or both (gate.evaluate_on, after any fallback).")
    evaluation_note: str = Field("", description="Which rows were judged, or why the recent window was not.")

    @property
    def promote(self) -> bool:
        return self.outcome == Outcome.PROMOTE

    @property
    def failed_checks(self) -> list[GateCheck]:
        return [c for c in self.checks if c.passed is False]
