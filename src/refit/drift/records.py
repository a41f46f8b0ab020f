"""The typed results of a drift check: per column, per window, and the check with its samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from refit.compat.evidently import ColumnKind
from refit.drift import null as drift_null
from refit.records import Record

if TYPE_CHECKING:
    from refit.drift.plan import _Plan


class ColumnDrift(Record):
    """The drift test of one column.

    ``score`` is a p-value for tests (drift when below ``threshold``) and a distance for
    distances (drift when at or above it); None when the column could not be tested.
    ``n_reference`` / ``n_current`` count the non-missing sampled values the test saw.

    Calibrated checks also carry ``p_value`` (the share of null scores at least as extreme,
    +1 smoothed), ``level`` (the p-value Holm needed at this column's rank: the threshold is
    the score at that level of the null), ``null_draws`` and ``window_bucket`` (the window
    size the null was drawn for). ``drifted`` is then Holm's verdict.
    """

    column: str
    kind: ColumnKind
    method: str
    score: float | None
    threshold: float | None
    drifted: bool
    n_reference: int
    n_current: int
    note: str | None = None
    p_value: float | None = None
    level: float | None = None
    null_draws: int | None = None
    window_bucket: int | None = None

    @property
    def ratio(self) -> float | None:
        """How far past its threshold the score is: 1.0 is the line, above it drift."""
        return score_ratio(self.method, self.score, self.threshold)


def score_ratio(method: str, score: float | None, threshold: float | None) -> float | None:
    """Score over threshold for distances, threshold over score for p-values (both: > 1 drifts)."""
    if score is None or threshold is None:
        return None
    if method in drift_null.P_VALUE_METHODS:
        return float(threshold / score) if score > 0 else (float("inf") if threshold > 0 else 0.0)
    if threshold == 0:
        return float("inf") if score > 0 else 0.0
    return float(score / threshold)


class DriftResult(Record):
    """Drift of one window: per feature, the dataset verdict, and the prediction's drift.

    ``drift_share`` is the share of drifted features among those judged: a feature with no
    values in the current sample (while the reference has some) counts as drifted, one with
    no reference values is reported but not judged. ``drift_detected`` is
    ``drift_share >= drift_share_threshold``, Evidently's rule. The prediction's drift is
    reported apart and does not count towards the share.

    With ``threshold_mode`` ``calibrated`` a window drifts when Holm rejects any judged feature
    at ``alpha`` (``drift_share_threshold`` is then one column's share, ``1 / n_columns``).
    """

    columns: list[ColumnDrift]
    n_columns: int
    n_drifted: int
    drift_share: float
    drift_share_threshold: float
    drift_detected: bool
    prediction: ColumnDrift | None
    reference_rows: int
    current_rows: int
    reference_sample_rows: int
    current_sample_rows: int
    sample_size: int
    stratified_by: str | None
    seed: int
    engine: str
    threshold_mode: str = "fixed"
    alpha: float | None = None

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def prediction_drifted(self) -> bool:
        return self.prediction is not None and self.prediction.drifted


@dataclass(frozen=True)
class DriftCheck:
    """A drift result and Evidently's HTML report of the same run (None when not asked for).

    ``plan`` keeps the samples and thresholds, so :func:`render_report` can render the report of
    this very check later (only when it is needed: it costs most of a check's time)."""

    result: DriftResult
    html: str | None
    plan: _Plan | None = field(default=None, repr=False, compare=False)
