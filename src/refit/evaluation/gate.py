"""The promotion gate: its rules, each a small function returning its checks, and the decision.

A check's values are gains: positive means the candidate is better, whichever way the metric
points. The checks are listed in a fixed order (floor, ceiling, leakage guard, overall
regression, one per segment value, improvement); the decision and its wording read that list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from refit.config import DatasetConfig, GateConfig
from refit.errors import DataError
from refit.evaluation.bootstrap import paired_bootstrap
from refit.evaluation.records import GateCheck, GateDecision, Outcome, PairedBootstrap, SegmentResult
from refit.evaluation.segments import OVERALL, groupings, segment_key, segment_labels
from refit.evaluation.wording import describe_decision, p_text, reasons
from refit.metrics import Task, check_task_metric, checked_inputs, get_metric, metric_value, one_blas_thread


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (reject where adjusted <= alpha), same order as given."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def holm_levels(p_values: Sequence[float], alpha: float) -> list[float]:
    """The level each p-value is judged at by Holm's step-down, same order as given.

    The k-th smallest is judged at ``alpha / (m - k)`` until the first that fails; that level then
    holds for every later one, so ``p <= level`` is exactly ``holm_adjust(p) <= alpha``, and a
    threshold drawn at a column's level is crossed only by a column Holm rejects.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    levels = np.empty(m)
    stop: float | None = None
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        own = alpha / (m - rank)
        if stop is None and p[i] > own:
            stop = own  # the step-down stops here: no later p-value is rejected
        levels[i] = own if stop is None else stop
    return levels.tolist()


@dataclass(frozen=True)
class _Gain:
    """The overall comparison turned into gains (candidate better is positive)."""

    value: float
    ci_low: float | None
    ci_high: float | None
    replicates: np.ndarray


def _gain_interval(sign: float, lo: float | None, hi: float | None) -> tuple[float | None, float | None]:
    if lo is None or hi is None:
        return None, None
    a, b = sign * lo, sign * hi
    return (a, b) if a <= b else (b, a)


def _harm_p(gains: np.ndarray, tolerance: float) -> float | None:
    """Bootstrap p-value of "the loss is within tolerance": the fraction of resampled gains at or
    above ``-tolerance``. Small means the loss is significantly beyond tolerance; this is the
    test whose inversion is the percentile interval's upper bound."""
    valid = gains[np.isfinite(gains)]
    return float(np.mean(valid >= -tolerance)) if len(valid) else None


def _overall_check(
    gain: _Gain, name: str, threshold: float, margin: float | None, passed: bool, note: str, rejects: bool = True
) -> GateCheck:
    return GateCheck(
        name=name,
        scope=OVERALL,
        value=gain.value,
        threshold=threshold,
        ci_low=gain.ci_low,
        ci_high=gain.ci_high,
        margin=margin,
        passed=passed,
        rejects=rejects,
        note=note,
    )


# --------------------------------------------------------------------------------------------
# The rules


def _bound_checks(gate: GateConfig, cand: float) -> list[GateCheck]:
    """``floor`` and ``ceiling``: the candidate's own value, with or without a champion."""
    checks = []
    for name, bound, text in (("floor", gate.floor, "at least"), ("ceiling", gate.ceiling, "at most")):
        if bound is None:
            continue
        margin = cand - bound if name == "floor" else bound - cand
        checks.append(
            GateCheck(
                name=name,
                scope=OVERALL,
                value=cand,
                threshold=bound,
                margin=margin,
                passed=margin >= 0,
                note=f"candidate {gate.primary_metric} must be {text} the {name}",
            )
        )
    return checks


def _leakage_checks(gate: GateConfig, gain: _Gain, champion: float) -> list[GateCheck]:
    """``max_improvement`` / ``max_relative_improvement``: a gain too good to be true rejects."""
    limit = gate.improvement_limit(champion)
    if limit is None:
        return []
    note = "a gain this large is more likely leakage or a broken champion than progress"
    return [_overall_check(gain, "leakage_guard", limit, limit - gain.value, gain.value <= limit, note)]


def _overall_regression_checks(gate: GateConfig, gain: _Gain, alpha: float) -> list[GateCheck]:
    """``max_regression``: an overall loss significantly beyond it rejects."""
    tol = gate.max_regression
    p = _harm_p(gain.replicates, tol)
    margin = None if gain.ci_high is None else gain.ci_high + tol
    note = f"rejects when the loss is significantly beyond {tol:g} (p={p_text(p)})"
    return [_overall_check(gain, "overall_regression", 0.0 - tol, margin, not (p is not None and p <= alpha), note)]


def _improvement_checks(gate: GateConfig, gain: _Gain, champion: float) -> list[GateCheck]:
    """Promotion needs the gain's lower bound strictly above the required improvement; failing
    this only withholds promotion (``rejects=False``)."""
    required = max(gate.min_improvement, gate.min_relative_improvement * abs(champion))
    lo = gain.ci_low
    margin = None if lo is None else lo - required
    note = "promotion needs the gain's lower bound above the required improvement"
    return [_overall_check(gain, "improvement", required, margin, lo is not None and lo > required, note, False)]


_Pending = tuple[Any, bool, str, float | None]  # (segment comparison, gated, note, harm p-value)


def _holm_by_family(pending: Sequence[_Pending], gate: GateConfig) -> dict[int, float]:
    """Holm-adjusted harm p-values of the gated segments, by position in ``pending``.

    ``holm_scope: segmentation`` (default) corrects within each segmentation (all values of
    ``region``; all of ``region×plan``): the family of hypotheses a reader looks at together.
    ``all`` corrects across every gated segment value at once, which with dozens of segments
    needs overwhelming evidence before any harm counts, so a clearly worse segment can pass.
    """
    families: dict[str, list[int]] = {}
    for index, (seg, gated, _, p) in enumerate(pending):
        if gated and p is not None:
            families.setdefault(seg.segment if gate.holm_scope == "segmentation" else "*", []).append(index)
    out: dict[int, float] = {}
    for members in families.values():
        raw = [float(pending[i][3]) for i in members]  # type: ignore[arg-type]
        for i, p in zip(members, holm_adjust(raw) if gate.holm else raw, strict=True):
            out[i] = p
    return out


def _pending_segments(boot: PairedBootstrap, gate: GateConfig, sign: float, tol: float) -> list[_Pending]:
    """Which segment values are gated (large enough, metric defined in 90% of the resamples),
    with the harm p-value of those that are."""
    min_valid = 0.9 * boot.n_resamples
    pending: list[_Pending] = []
    for seg in boot.segments:
        if seg.n < gate.min_segment_size:
            pending.append((seg, False, f"n={seg.n} < min_segment_size {gate.min_segment_size}: not gated", None))
        elif seg.difference is None or seg.n_valid < min_valid:
            pending.append((seg, False, f"{boot.metric} undefined in too many resamples: not gated", None))
        else:
            pending.append((seg, True, "", _harm_p(sign * seg.replicates, tol)))
    return pending


def _segment_checks(
    boot: PairedBootstrap, gate: GateConfig, sign: float, alpha: float, tol: float
) -> tuple[list[SegmentResult], list[GateCheck]]:
    """A gated segment value whose loss is significantly beyond ``tol`` (the gate's segment
    tolerance against this champion) rejects (Holm-adjusted within its family when ``holm``).
    Every value is reported."""
    pending = _pending_segments(boot, gate, sign, tol)
    adjusted = _holm_by_family(pending, gate)
    segments: list[SegmentResult] = []
    checks: list[GateCheck] = []
    for index, (seg, gated, note, p_harm) in enumerate(pending):
        g_lo, g_hi = _gain_interval(sign, seg.ci_low, seg.ci_high)
        seg_gain = None if seg.difference is None else sign * seg.difference
        p_adj = adjusted.get(index)
        passed: bool | None = None
        if gated:
            passed = not (p_adj is not None and p_adj <= alpha)
            note = f"significantly worse than tolerance {tol:g}" if not passed else "within tolerance"
            note += f" (p={p_text(p_harm)}" + (f", Holm {p_text(p_adj)})" if gate.holm else ")")
        common: dict[str, Any] = {"ci_low": g_lo, "ci_high": g_hi, "passed": passed, "note": note}
        segments.append(
            SegmentResult(
                segment=seg.segment,
                value=seg.value,
                n=seg.n,
                gated=gated,
                candidate=seg.candidate,
                champion=seg.champion,
                gain=seg_gain,
                p_value=seg.p_value,
                p_harm=p_harm,
                p_harm_adjusted=p_adj,
                **common,
            )
        )
        scope = segment_key(seg.segment, seg.value)
        margin = None if g_hi is None else g_hi + tol
        checks.append(
            GateCheck(
                name="segment_regression", scope=scope, value=seg_gain, threshold=0.0 - tol, margin=margin, **common
            )
        )
    return segments, checks


# --------------------------------------------------------------------------------------------
# The decision


def _outcome(checks: list[GateCheck], improvement: GateCheck) -> Outcome:
    if any(c.passed is False and c.rejects for c in checks):
        return Outcome.REJECT
    return Outcome.PROMOTE if improvement.passed else Outcome.INCONCLUSIVE


def _finish(
    gate_outcome: Outcome,
    gate: GateConfig,
    checks: list[GateCheck],
    segments: list[SegmentResult],
    *,
    force: bool,
    force_reason: str | None,
    confidence: float,
    tolerance: float,
    **fields: Any,
) -> GateDecision:
    """The decision record: the rules' outcome, ``force`` applied, reasons and headline worded."""
    metric = gate.primary_metric
    draft = GateDecision(
        outcome=Outcome.PROMOTE if force else gate_outcome,
        gate_outcome=gate_outcome,
        forced=force,
        force_reason=force_reason if force else None,
        metric=metric,
        higher_is_better=get_metric(metric).higher_is_better,
        confidence=confidence,
        max_segment_regression=tolerance,
        holm=gate.holm,
        checks=checks,
        segments=segments,
        reasons=reasons(checks, metric, confidence),
        headline="",
        **fields,
    )
    return draft.model_copy(update={"headline": describe_decision(draft)})


def _check_force(force: bool, force_reason: str | None) -> None:
    if force and not (force_reason and force_reason.strip()):
        raise ValueError("force=True needs a non-empty force_reason (it is recorded in the registry)")


def decide_gate(
    boot: PairedBootstrap,
    gate: GateConfig,
    *,
    force: bool = False,
    force_reason: str | None = None,
) -> GateDecision:
    """The gate's rules applied to a paired bootstrap (candidate vs champion).

    With ``alpha = (1 - confidence) / 2`` (so a test agrees with the reported two-sided
    interval's bound):

    - REJECT when the candidate misses ``floor``/``ceiling``; when its overall gain exceeds
      ``max_improvement`` (leakage guard: too good to be true); when the overall loss is
      significantly beyond ``max_regression``; or when any gated segment's loss is
      significantly beyond ``max_segment_regression`` (one-sided bootstrap p-value of "gain >=
      -tolerance", Holm-adjusted across the gated segments when ``holm``).
    - PROMOTE when nothing rejects and the overall gain's lower bound clears the required
      improvement, ``max(min_improvement, min_relative_improvement * |champion|)`` (strictly
      above, so zero means "significantly better").
    - INCONCLUSIVE otherwise (the champion stays): e.g. too little data for a clear answer.

    p-values are bootstrap tail fractions (the share of resampled gains at or above
    ``-tolerance``, no +1), the test inversion of the percentile interval: clear harm gives 0,
    and a borderline segment under Holm across m segments needs ``n_resamples`` well above
    ``m / alpha`` to resolve. A segment is gated when it has at least ``min_segment_size`` rows
    and the metric was defined in at least 90% of the resamples; others are reported with
    ``gated=False``.
    ``force`` promotes regardless (a non-empty ``force_reason`` is required) and keeps the
    rules' verdict in ``gate_outcome``.
    """
    _check_force(force, force_reason)
    metric = gate.primary_metric
    if boot.metric != metric:
        raise ValueError(f"bootstrap metric {boot.metric!r} is not the gate's {metric!r}")
    hib = get_metric(metric).higher_is_better
    sign = 1.0 if hib else -1.0
    alpha = (1 - boot.confidence) / 2
    ov = boot.overall
    if ov.candidate is None or ov.champion is None or ov.difference is None:
        raise DataError(f"{metric} is undefined on the evaluation data (a single class?)")
    gain = _Gain(sign * ov.difference, *_gain_interval(sign, ov.ci_low, ov.ci_high), sign * ov.replicates)
    tolerance = gate.segment_tolerance(ov.champion)
    segments, segment_checks = _segment_checks(boot, gate, sign, alpha, tolerance)
    improvement = _improvement_checks(gate, gain, ov.champion)
    checks = [
        *_bound_checks(gate, ov.candidate),
        *_leakage_checks(gate, gain, ov.champion),
        *_overall_regression_checks(gate, gain, alpha),
        *segment_checks,
        *improvement,
    ]
    return _finish(
        _outcome(checks, improvement[0]),
        gate,
        checks,
        segments,
        force=force,
        force_reason=force_reason,
        confidence=boot.confidence,
        tolerance=tolerance,
        n_resamples=boot.n_resamples,
        seed=boot.seed,
        n_rows=ov.n,
        first_run=False,
        candidate_value=ov.candidate,
        champion_value=ov.champion,
        gain=gain.value,
        ci_low=gain.ci_low,
        ci_high=gain.ci_high,
    )


def _first_run_decision(
    task: Task,
    y: Any,
    cand_score: Any,
    labels: dict[str, Any],
    gate: GateConfig,
    *,
    force: bool,
    force_reason: str | None,
) -> GateDecision:
    """No champion: only ``floor``/``ceiling`` apply; segment values are reported, not gated."""
    metric = gate.primary_metric
    yv, (s,) = checked_inputs(task, y, cand_score, names=("cand_score",))
    cand = metric_value(metric, yv, s, task=task)
    if cand is None:
        raise DataError(f"{metric} is undefined on the evaluation data (a single class?)")
    segments = []
    with one_blas_thread():
        for gr in groupings(labels, len(yv))[1:]:
            for j, value in enumerate(gr.labels):
                rows = gr.codes == j
                segments.append(
                    SegmentResult(
                        segment=gr.name,
                        value=value,
                        n=int(rows.sum()),
                        gated=False,
                        candidate=metric_value(metric, yv[rows], s[rows], task=task),
                        note="first run: reported, not gated",
                    )
                )
    checks = _bound_checks(gate, cand)
    gate_outcome = Outcome.REJECT if any(c.passed is False for c in checks) else Outcome.PROMOTE
    return _finish(
        gate_outcome,
        gate,
        checks,
        segments,
        force=force,
        force_reason=force_reason,
        confidence=gate.confidence,
        tolerance=gate.segment_tolerance(None),  # nothing is gated: only recorded
        n_resamples=0,
        seed=gate.seed,
        n_rows=len(yv),
        first_run=True,
        candidate_value=cand,
    )


def evaluate_gate(
    task: Task,
    y: Any,
    cand_score: Any,
    champ_score: Any | None,
    segments_df: pd.DataFrame | None,
    gate: GateConfig,
    dataset_cfg: DatasetConfig | None,
    force: bool = False,
    force_reason: str | None = None,
    *,
    n_jobs: int | None = None,
) -> GateDecision:
    """Decide whether the candidate replaces the champion (see ``decide_gate`` for the rules).

    Without a champion (the first run) only ``floor``/``ceiling`` apply: PROMOTE when they pass,
    else REJECT; per-segment values are reported, not gated.

    Args:
        task: ``binary``, ``multiclass`` or ``regression``.
        y: Labels or values of the evaluation rows (multiclass: class indices into the score
            matrices' columns, ``refit.metrics.align_classes``).
        cand_score: Candidate scores (positive-class probabilities, ``(n, K)`` class
            probabilities, or predictions).
        champ_score: Champion scores on the same rows, or None when there is no champion.
        segments_df: Frame with the segment columns of those rows (None: overall only).
        gate: The gate's config.
        dataset_cfg: Segment columns, bins and crossings.
        force: Promote whatever the rules say (recorded as ``forced``).
        force_reason: Why; required with ``force``.
        n_jobs: Bootstrap threads.
    """
    _check_force(force, force_reason)
    metric = gate.primary_metric
    check_task_metric(task, metric)
    labels: dict[str, Any] = {}
    if segments_df is not None and dataset_cfg is not None:
        if len(segments_df) != len(np.asarray(y)):
            raise ValueError("segments_df must have one row per evaluation row")
        labels = dict(segment_labels(segments_df.reset_index(drop=True), dataset_cfg))
    if champ_score is None:
        return _first_run_decision(task, y, cand_score, labels, gate, force=force, force_reason=force_reason)
    boot = paired_bootstrap(
        task,
        metric,
        y,
        cand_score,
        champ_score,
        labels,
        gate.bootstrap_resamples,
        gate.confidence,
        gate.seed,
        n_jobs=n_jobs,
    )
    return decide_gate(boot, gate, force=force, force_reason=force_reason)
