"""Performance decay: has the champion got worse on recent labelled data than at registration?

Judged in the gate's metric, on the gate's segments, with intervals: the window's metric is
bootstrapped with the gate's own kernels (``refit.evaluation.metric_bootstrap``) and a drop
counts only when it is significantly beyond the tolerance. The registered value is an estimate
too (from the holdout's rows of that segment): registration stores its bootstrap standard error
(:func:`registered_errors`), and the drop's interval and p-value carry both sources of noise. The drift check
(``refit.monitoring``) calls :func:`compute_decay` on the labelled part of its window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from refit.config import DriftConfig
from refit.errors import DataError
from refit.metrics import get_metric
from refit.records import Record


class SegmentDecay(Record):
    """The champion's metric on recent labelled rows of one segment, against registration.

    ``drop`` is the point estimate (positive: worse than at registration); ``ci_low`` /
    ``ci_high`` its bootstrap interval; ``p_value`` the one-sided bootstrap p-value of "the
    drop is within the tolerance", ``p_adjusted`` Holm's within the segmentation.
    """

    segment: str  # "overall" or "column=value"
    n_rows: int
    current: float | None
    registered: float | None
    drop: float | None  # positive: worse than at registration
    decayed: bool
    note: str | None = None
    tolerance: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    registered_se: float | None = None  # bootstrap SE of the registered value; None: not stored
    registered_n: int | None = None  # holdout rows behind the registered value, when stored


class DecayResult(Record):
    """Performance decay of the champion, overall and per segment."""

    metric: str
    higher_is_better: bool
    tolerance: float
    overall: SegmentDecay
    segments: list[SegmentDecay]
    decayed: bool
    n_labelled: int
    confidence: float = 0.95
    n_resamples: int = 0

    @property
    def decayed_segments(self) -> list[str]:
        return [s.segment for s in [self.overall, *self.segments] if s.decayed]


def compute_decay(
    y_true: Sequence[float] | np.ndarray | pd.Series,
    y_score: Sequence[float] | np.ndarray | pd.Series,
    registered: Mapping[str, float],
    cfg: DriftConfig,
    metric: str,
    segments: Mapping[str, Any] | pd.DataFrame | None = None,
    seed: int = 0,
    *,
    registered_se: Mapping[str, float] | None = None,
    registered_n: Mapping[str, int] | None = None,
    weak_below: int | None = None,
) -> DecayResult:
    """Has the champion got worse on recent labelled data than it was at registration, beyond
    the tolerance, by more than chance explains?

    The metric and its direction come from ``refit.metrics`` (the gate's ``primary_metric``,
    the one registration stores); the segments are the gate's. The window's metric is
    bootstrapped over its rows (``cfg.decay_resamples``, the gate's vectorised kernels), and a
    segment decays only when its drop from the registered value is significantly beyond
    ``cfg.decay_limit`` of that value: the one-sided bootstrap p-value of "drop <= tolerance",
    Holm-adjusted within each segmentation (``region``; ``region×plan``), is at most
    ``(1 - decay_confidence) / 2``, so the interval's lower bound clears the tolerance. The
    registered value is an estimate too: with its standard error (``registered_se``) each
    resampled drop is spread by the registered value's independent normal error (integrated,
    not drawn), so a value registered on few holdout rows (a lucky high one) needs a larger
    drop; without one (versions registered before refit stored it) it is taken as exact. Segments with fewer than
    ``cfg.decay_min_rows`` labelled rows, an undefined metric (one class only), or no registered
    value are reported but never decay.

    Args:
        y_true: Labels; rows whose label is missing (not arrived yet) are dropped.
        y_score: The champion's scores (probability of the positive class), predictions, or
            for multiclass its ``(n, K)`` probabilities, with ``y_true`` as class indices
            (``refit.pipeline.gate_inputs``).
        registered: Metric values at registration: ``"overall"`` and segment keys
            (``refit.evaluation.segment_key``: ``"region=north"``, ``"region×plan=north×pro"``).
        cfg: Tolerance, minimum rows, resamples and confidence.
        metric: A name from ``refit.metrics.METRICS``.
        segments: Each segmentation's label of every row, aligned with ``y_true``
            (``refit.evaluation.segment_labels``: bins, labels and crossings included).
        seed: Seed of the resamples.
        registered_se: Bootstrap standard error of each registered value, same keys
            (:func:`registered_errors`, what registration stores as ``<metric>_se``).
        registered_n: Holdout rows behind each registered value.
        weak_below: A segment registered on fewer holdout rows (``gate.min_segment_size``) is
            noted as weak evidence.
    """
    from refit.evaluation.gate import holm_adjust

    m = get_metric(metric)
    boot, n_labelled = _window_bootstrap(y_true, y_score, m, segments, cfg, seed)
    undefined = "one class only" if "regression" not in m.tasks else f"{m.name} undefined"
    alpha = (1 - cfg.decay_confidence) / 2
    sign = 1.0 if m.higher_is_better else -1.0
    sides = (registered, registered_se or {}, registered_n or {})

    def known(scope: str) -> SegmentDecay:  # the registered side, before the window is judged
        return _registered_side(scope, *sides, cfg)

    judged = [_judge(rep, known(rep.scope), cfg, sign, alpha, undefined) for rep in boot]
    judged = _holm_within_segmentations(judged, alpha, cfg.decay_holm, holm_adjust)
    if not judged:  # no labelled row at all
        judged = [known("overall").model_copy(update={"note": f"fewer than {cfg.decay_min_rows} labelled rows"})]
    judged = [_weak_note(row, weak_below) for row in judged]
    overall, per_segment = judged[0], judged[1:]
    return DecayResult(
        metric=m.name,
        higher_is_better=m.higher_is_better,
        tolerance=cfg.decay_limit(registered.get("overall")),
        overall=overall,
        segments=per_segment,
        decayed=overall.decayed or any(s.decayed for s in per_segment),
        n_labelled=n_labelled,
        confidence=cfg.decay_confidence,
        n_resamples=cfg.decay_resamples,
    )


def _registered_side(
    scope: str, values: Mapping[str, float], errors: Mapping[str, float], rows: Mapping[str, int], cfg: DriftConfig
) -> SegmentDecay:
    """One scope's registered value, its standard error and holdout rows, as a row to judge."""
    base, n = values.get(scope), rows.get(scope)
    return SegmentDecay(
        segment=scope, n_rows=0, current=None, registered=base, drop=None, decayed=False,
        tolerance=cfg.decay_limit(base), registered_se=errors.get(scope), registered_n=None if n is None else int(n),
    )  # fmt: skip


def _window_bootstrap(
    y_true: Any, y_score: Any, m: Any, segments: Mapping[str, Any] | pd.DataFrame | None, cfg: DriftConfig, seed: int
) -> tuple[list[Any], int]:
    """The window's metric on resampled labelled rows, overall and per segment value, and how
    many rows were labelled (and scored)."""
    from refit.evaluation import metric_bootstrap

    truth = np.asarray(pd.Series(y_true, dtype="float64"))
    multi = np.ndim(y_score) == 2
    score = np.asarray(y_score, dtype=np.float64) if multi else np.asarray(pd.Series(y_score, dtype="float64"))
    if truth.shape[0] != score.shape[0]:
        raise DataError(f"y_true has {truth.shape[0]} rows but y_score has {score.shape[0]}")
    task = m.task_of(score)  # multiclass: (n, K) probabilities, labels as class indices
    scored = ~np.isnan(score).any(axis=1) if multi else ~np.isnan(score)
    labelled = ~np.isnan(truth) & scored
    if not labelled.any():
        return [], 0
    groups = _decay_groups(segments, len(truth), labelled)
    boot = metric_bootstrap(
        task, m.name, truth[labelled], score[labelled], groups, n_resamples=cfg.decay_resamples, seed=seed
    )
    return boot, int(labelled.sum())


def _judge(rep: Any, row: SegmentDecay, cfg: DriftConfig, sign: float, alpha: float, undefined: str) -> SegmentDecay:
    """One group's decay: its drop from the registered value with the bootstrap interval and
    the one-sided p-value of "drop <= tolerance" (``decayed`` is set once the family's p-values
    are adjusted)."""
    row = row.model_copy(update={"n_rows": rep.n, "current": rep.point})
    base, se, tol = row.registered, row.registered_se, row.tolerance
    valid = rep.replicates[np.isfinite(rep.replicates)]
    if rep.n < cfg.decay_min_rows:
        return row.model_copy(update={"note": f"fewer than {cfg.decay_min_rows} labelled rows"})
    if rep.point is None or len(valid) < 0.9 * cfg.decay_resamples:
        return row.model_copy(update={"note": undefined})
    if base is None:
        return row.model_copy(update={"note": "no registered value"})
    drops = sign * (base - valid)
    if se:  # the registered value's own noise: each resampled drop spread by N(0, se^2)
        p, lo, hi = _with_registered_noise(drops, se, tol, alpha)  # type: ignore[arg-type]
    else:  # registered before refit stored the SE: the registered value as exact
        p, (lo, hi) = float(np.mean(drops <= tol)), np.quantile(drops, [alpha, 1 - alpha])
    update = {"drop": sign * (base - rep.point), "ci_low": float(lo), "ci_high": float(hi)}
    return row.model_copy(update={**update, "p_value": p})


def _with_registered_noise(drops: np.ndarray, se: float, tol: float, alpha: float) -> tuple[float, float, float]:
    """The drop's distribution when the registered value is itself an estimate: the window's
    resampled drops, each convolved with the registered value's normal error (independent
    samples), integrated exactly rather than drawn. Returns P(drop <= tol) and the
    ``alpha`` / ``1 - alpha`` quantiles (read off the mixture's CDF on a fine grid)."""
    from scipy.special import ndtr

    p = float(np.mean(ndtr((tol - drops) / se)))
    grid = np.linspace(drops.min() - 6 * se, drops.max() + 6 * se, 1024)
    cdf = ndtr((grid[:, None] - drops[None, :]) / se).mean(axis=1)
    lo, hi = np.interp([alpha, 1 - alpha], cdf, grid)
    return p, float(lo), float(hi)


def _weak_note(row: SegmentDecay, weak_below: int | None) -> SegmentDecay:
    """Say so when the registered value came from fewer holdout rows than the gate judges."""
    if weak_below is None or row.registered_n is None or row.registered_n >= weak_below:
        return row
    weak = f"registered on {row.registered_n} holdout rows (under gate.min_segment_size {weak_below}): weak evidence"
    return row.model_copy(update={"note": weak if row.note is None else f"{row.note}; {weak}"})


def se_key(metric: str) -> str:
    """Where registration stores a metric's bootstrap standard error, beside the metric."""
    return f"{metric}_se"


def registered_errors(
    task: Any, metric: str, y: Any, score: Any, segments: Mapping[str, Any] | None, n_resamples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """What registration stores for decay to judge against, per scope (``"overall"`` and every
    segment key): the holdout rows ``n``, the metric and its bootstrap standard error
    (:func:`se_key`), with the gate's kernels, resamples and seed. None where the metric is
    undefined in more than half the resamples (one class only in most)."""
    from refit.evaluation import metric_bootstrap

    out: dict[str, dict[str, Any]] = {}
    for rep in metric_bootstrap(task, metric, y, score, segments, n_resamples=n_resamples, seed=seed):
        valid = rep.replicates[np.isfinite(rep.replicates)]
        se = float(np.std(valid, ddof=1)) if len(valid) >= max(2, len(rep.replicates) / 2) else None
        out[rep.scope] = {"n": rep.n, metric: rep.point, se_key(metric): se}
    return out


def _decay_groups(
    segments: Mapping[str, Any] | pd.DataFrame | None, n: int, labelled: np.ndarray
) -> dict[str, pd.Categorical]:
    """Each segmentation's labels of the labelled rows, every category kept (a segment without
    labelled rows is still reported)."""
    out: dict[str, pd.Categorical] = {}
    for name, values in ({} if segments is None else segments).items():
        cat = values.array if isinstance(values, pd.Series) else values
        if not isinstance(cat, pd.Categorical):
            cat = pd.Categorical(np.asarray(cat, dtype=object))
        if len(cat) != n:
            raise DataError(f"segment {name!r} has {len(cat)} rows but y_true has {n}")
        out[str(name)] = cat[labelled]
    return out


def _holm_within_segmentations(
    rows: list[SegmentDecay], alpha: float, holm: bool, adjust: Callable[[Sequence[float]], list[float]]
) -> list[SegmentDecay]:
    """``decayed`` from the p-values, Holm-adjusted within each segmentation (overall alone)."""
    families: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if row.p_value is not None:
            families.setdefault(row.segment.split("=", 1)[0], []).append(i)
    out = list(rows)
    for members in families.values():
        raw = [float(rows[i].p_value) for i in members]  # type: ignore[arg-type]
        for i, p in zip(members, adjust(raw) if holm else raw, strict=True):
            out[i] = rows[i].model_copy(update={"p_adjusted": p, "decayed": p <= alpha})
    return out
