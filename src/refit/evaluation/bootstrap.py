"""The paired bootstrap: both models on the same resampled rows, overall and per segment value.

Resamples are drawn in chunks (``kernels._draw_weights``), each chunk a weights matrix that
every metric plan reads in one pass. Pure numpy; nothing here touches a store or Prefect.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refit.errors import DataError
from refit.evaluation.kernels import _build_plans, _draw_weights, _score_order
from refit.evaluation.records import PairedBootstrap, SegmentComparison
from refit.evaluation.segments import OVERALL, Grouping, groupings, segment_key
from refit.metrics import Task, check_task_metric, checked_inputs, get_metric, one_blas_thread

_Map = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


def _chunk_size(n: int) -> int:
    """Resamples per chunk: 128, fewer for very large data (the weights chunk stays ~128 MB)."""
    return int(min(128, max(16, (1 << 27) // max(n, 1) // 16 * 16)))


def _point(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _summarise(diffs: np.ndarray, confidence: float) -> tuple[float | None, float | None, float | None, int]:
    valid = diffs[np.isfinite(diffs)]
    if len(valid) == 0:
        return None, None, None, 0
    alpha = 1 - confidence
    lo, hi = np.quantile(valid, [alpha / 2, 1 - alpha / 2])
    tail = min(np.mean(valid <= 0), np.mean(valid >= 0))
    return float(lo), float(hi), float(min(1.0, 2 * tail)), len(valid)


@contextmanager
def _thread_map(n_jobs: int | None) -> Iterator[_Map]:
    """A ``map`` over ``n_jobs`` threads (default: the machine's cores, at most 4)."""
    jobs = max(1, n_jobs or min(4, os.cpu_count() or 1))
    if jobs == 1:
        yield lambda fn, items: [fn(x) for x in items]
        return
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        yield lambda fn, items: list(pool.map(fn, items))


def _champion_order(
    y: np.ndarray, scores: list[np.ndarray], grs: list[Grouping], pmap: _Map
) -> tuple[np.ndarray, list[np.ndarray], list[Grouping], list[np.ndarray]]:
    """The rows relabelled into the champion's score order, and both models' row spaces.

    Rows get iid weights, so which weight goes to which row is ours to choose: the weights are
    drawn in the champion's score order (its rows read in place), and copied once per chunk
    into the candidate's order (one gather, not one per segment). ROC AUC only.
    """
    n = len(y)
    relabel, cand_order = pmap(lambda sc: _score_order(y, sc), [scores[1], scores[0]])
    inverse = np.empty(n, dtype=np.intp)
    inverse[relabel] = np.arange(n)
    moved = [Grouping(gr.name, gr.codes[relabel], gr.labels) for gr in grs]
    return y[relabel], [sc[relabel] for sc in scores], moved, [inverse[cand_order], np.arange(n)]


def _point_estimates(
    plans: list[Any], y: np.ndarray, spaces: list[np.ndarray] | None, n_groups: int, pmap: _Map
) -> np.ndarray:
    """Both models' metric per group: the same plans on unit weights, shape (2, groups, 1)."""
    n = len(y)
    ones = np.zeros((n + 1, 1), dtype=np.uint8)
    ones[:n] = 1
    if spaces is not None:
        ones[:n, 0] <<= 4 * y
        ones_views = [np.zeros_like(ones), ones]
        ones_views[0][:n] = ones[spaces[0]]
    else:
        ones_views = [ones]
    point = np.empty((2, n_groups, 1))
    pmap(lambda plan: plan.evaluate(ones_views[getattr(plan, "space", 0)], point), plans)
    return point


def _resampled_values(
    plans: list[Any],
    y: np.ndarray,
    spaces: list[np.ndarray] | None,
    n_groups: int,
    n_resamples: int,
    seed: int,
    pmap: _Map,
) -> np.ndarray:
    """Both models' metric per group and resample, shape (2, groups, resamples).

    Chunk i is drawn from the i-th child of ``SeedSequence(seed)``, so the values depend on the
    seed and the data only, not on which thread ran which chunk.
    """
    n = len(y)
    k = _chunk_size(n)
    chunks = [(c0, min(k, n_resamples - c0)) for c0 in range(0, n_resamples, k)]
    seeds = np.random.SeedSequence(seed).spawn(len(chunks))
    values = np.empty((2, n_groups, n_resamples))
    local = threading.local()  # per thread: the weights buffer and the candidate's copy

    def weight_spaces(W: np.ndarray) -> list[np.ndarray]:
        if spaces is None:
            return [W]
        Wc = getattr(local, "cand", None)
        if Wc is None or Wc.shape != W.shape:
            Wc = np.zeros_like(W)
            local.cand = Wc
        np.take(W, spaces[0], axis=0, out=Wc[:n], mode="clip")
        return [Wc, W]

    def run(i: int) -> None:
        c0, width = chunks[i]
        labels = y if spaces is not None else None
        W = _draw_weights(seeds[i], n, -(-width // 8) * 8, labels, getattr(local, "buffer", None))
        local.buffer = W
        views = weight_spaces(W)
        out = np.empty((2, n_groups, W.shape[1]))
        for plan in plans:
            plan.evaluate(views[getattr(plan, "space", 0)], out)
        values[:, :, c0 : c0 + width] = out[:, :, :width]

    pmap(run, range(len(chunks)))
    return values


def _comparisons(
    grs: list[Grouping], group_ids: list[np.ndarray], point: np.ndarray, values: np.ndarray, confidence: float
) -> list[SegmentComparison]:
    """One ``SegmentComparison`` per group, in grouping order (``overall`` first)."""
    rows: list[SegmentComparison] = []
    for gr, ids in zip(grs, group_ids, strict=True):
        sizes = np.bincount(gr.codes, minlength=len(gr.labels))
        for j, label in enumerate(gr.labels):
            g = ids[j]
            diffs = values[0, g] - values[1, g]
            lo, hi, p, n_valid = _summarise(diffs, confidence)
            cand, champ = _point(point[0, g, 0]), _point(point[1, g, 0])
            rows.append(
                SegmentComparison(
                    segment=gr.name,
                    value=label,
                    n=int(sizes[j]),
                    candidate=cand,
                    champion=champ,
                    difference=None if cand is None or champ is None else cand - champ,
                    ci_low=lo,
                    ci_high=hi,
                    p_value=p,
                    n_valid=n_valid,
                    replicates=diffs,
                )
            )
    return rows


def _run(
    metric: str,
    yv: np.ndarray,
    scores: list[np.ndarray],
    segments: Mapping[str, Any] | None,
    n_resamples: int,
    seed: int,
    n_jobs: int | None,
) -> tuple[list[Grouping], list[np.ndarray], np.ndarray, np.ndarray]:
    """The groups, and both score vectors' metric per group on unit weights and per resample."""
    grs = groupings(segments, len(yv))
    bounds = np.cumsum([0] + [len(gr.labels) for gr in grs])
    group_ids = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    n_groups = int(bounds[-1])
    with _thread_map(n_jobs) as pmap, one_blas_thread():
        spaces = None
        if get_metric(metric).kernel == "auc":
            yv, scores, grs, spaces = _champion_order(yv, scores, grs, pmap)
        plans = _build_plans(metric, yv, scores, grs, group_ids, spaces, pmap)
        point = _point_estimates(plans, yv, spaces, n_groups, pmap)
        values = _resampled_values(plans, yv, spaces, n_groups, n_resamples, seed, pmap)
    return grs, group_ids, point, values


def paired_bootstrap(
    task: Task,
    metric: str,
    y: Any,
    cand_score: Any,
    champ_score: Any,
    segments: Mapping[str, Any] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    *,
    n_jobs: int | None = None,
) -> PairedBootstrap:
    """Compare two models' metric on the same resampled rows, overall and per segment value.

    Both models are scored on identical resamples, so what the rows have in common cancels
    out of the difference (far narrower intervals than two separate bootstraps). Resamples
    are drawn per chunk from ``SeedSequence(seed)``: the result depends on ``seed`` and the
    data only, not on ``n_jobs`` or thread timing.

    Args:
        task: ``binary``, ``multiclass`` or ``regression``.
        metric: The metric to compare (see ``refit.metrics.METRICS``).
        y: Labels or values (multiclass: class indices into the score matrices' columns,
            ``refit.metrics.align_classes``).
        cand_score: Candidate scores (positive-class probabilities, ``(n, K)`` class
            probabilities, or predictions).
        champ_score: Champion scores.
        segments: ``{name: one label per row}`` (e.g. from ``segment_labels``); every
            distinct label is a segment value.
        n_resamples: Bootstrap resamples.
        confidence: Two-sided level of the percentile intervals.
        seed: Seed of the resamples.
        n_jobs: Threads (default: the machine's cores, at most 4).

    Returns:
        ``PairedBootstrap`` with the overall comparison and one per segment value.
    """
    check_task_metric(task, metric)
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    yv, scores = checked_inputs(task, y, cand_score, champ_score, names=("cand_score", "champ_score"))
    if len(yv) == 0:
        raise DataError("cannot evaluate on zero rows")
    grs, group_ids, point, values = _run(metric, yv, scores, segments, n_resamples, seed, n_jobs)
    rows = _comparisons(grs, group_ids, point, values, confidence)
    return PairedBootstrap(
        metric=metric, confidence=confidence, n_resamples=n_resamples, seed=seed, overall=rows[0], segments=rows[1:]
    )


@dataclass(frozen=True)
class MetricReplicates:
    """One model's metric on one group (``overall`` or a segment value) and on its resamples."""

    segment: str
    value: str
    n: int
    point: float | None
    replicates: np.ndarray = field(repr=False, compare=False)  # NaN where undefined in a resample

    @property
    def scope(self) -> str:
        return OVERALL if self.segment == OVERALL else segment_key(self.segment, self.value)


def metric_bootstrap(
    task: Task,
    metric: str,
    y: Any,
    score: Any,
    segments: Mapping[str, Any] | None = None,
    n_resamples: int = 500,
    seed: int = 0,
    *,
    n_jobs: int | None = None,
) -> list[MetricReplicates]:
    """One model's metric on resampled rows, overall and per segment value.

    The paired bootstrap's own kernels with the model on both sides (the resamples, chunks and
    seeds are the gate's), so decay is judged with the same machinery as promotion.
    """
    check_task_metric(task, metric)
    yv, (sv,) = checked_inputs(task, y, score, names=("score",))
    if len(yv) == 0:
        raise DataError("cannot evaluate on zero rows")
    grs, group_ids, point, values = _run(metric, yv, [sv, sv], segments, n_resamples, seed, n_jobs)
    out: list[MetricReplicates] = []
    for gr, ids in zip(grs, group_ids, strict=True):
        sizes = np.bincount(gr.codes, minlength=len(gr.labels))
        for j, label in enumerate(gr.labels):
            g = ids[j]
            out.append(MetricReplicates(gr.name, label, int(sizes[j]), _point(point[1, g, 0]), values[1, g].copy()))
    return out
