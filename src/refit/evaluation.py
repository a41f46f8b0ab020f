"""Evaluation: segments, a paired bootstrap per segment, and the promotion gate.

The metrics themselves live in ``refit.metrics`` (name, task kinds, direction, function).
They are computed on a *weights matrix*: a resample is a column of per-row weights, so one
call evaluates a metric on many resamples at once (``metric_values``). The gate compares
candidate and champion on the same resampled rows (paired), per segment, and returns our own
typed ``GateDecision``. Pure numpy / pandas; nothing here touches a store or Prefect.

Bootstrap weights. Each resample gives every row an independent weight
``w = a + 2*b*c`` from three fair random bits: P(0)=P(1)=3/8, P(2)=P(3)=1/8. Like the
Poisson(1) bootstrap it has mean 1 and variance 1 (skewness 0.75 against Poisson's 1), which
is what a weighted bootstrap needs, and it is drawn at about a byte per weight: 1,000
resamples of a million rows cost about a second of random numbers, not a minute.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from refit.config import DatasetConfig, GateConfig
from refit.errors import DataError
from refit.metrics import (
    ECE_BINS,
    Task,
    _as_labels,
    _as_scores,
    _cumsum_rows,
    _finalize,
    _sum_features,
    _tie_starts,
    check_task_metric,
    get_metric,
    metric_value,
    one_blas_thread,
)

OVERALL = "overall"


# --------------------------------------------------------------------------------------------
# Segments


def _bin_labels(edges: Sequence[float]) -> list[str]:
    return [f"[{a:g}, {b:g})" for a, b in zip(edges[:-1], edges[1:], strict=False)]


def segment_labels(df: pd.DataFrame, dataset: DatasetConfig) -> dict[str, pd.Categorical]:
    """The segment of every row, per configured segment column and crossing.

    Numeric columns with ``bins`` are cut into ``[edge, next_edge)`` intervals (named by
    ``labels`` when given); values outside the edges are ``(out of range)``, missing values
    ``(missing)``. A crossing of ``region`` and ``plan`` is named ``region×plan`` and its
    values ``north×pro``.
    """
    out: dict[str, pd.Categorical] = {}
    for spec in dataset.segments:
        if spec.column not in df.columns:
            raise DataError(f"segment column {spec.column!r} is not in the evaluation frame")
        col = df[spec.column]
        if spec.bins is not None:
            names = list(spec.labels or _bin_labels(spec.bins))
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
            idx = np.searchsorted(np.asarray(spec.bins), values, side="right") - 1
            text = np.asarray(names + ["(out of range)", "(missing)"], dtype=object)
            idx = np.where((idx < 0) | (idx >= len(names)), len(names), idx)
            idx = np.where(np.isnan(values), len(names) + 1, idx)
            cat = pd.Categorical.from_codes(idx, categories=text)
        else:
            strings = col.astype(object).where(col.notna(), "(missing)").astype(str)
            cat = pd.Categorical(strings, categories=sorted(pd.unique(strings)))
        out[spec.column] = cat.remove_unused_categories()
    for crossing in dataset.segment_crossings:
        parts = []
        for name in crossing:
            if name not in out:
                if name not in df.columns:
                    raise DataError(f"crossing column {name!r} is not in the evaluation frame")
                strings = df[name].astype(object).where(df[name].notna(), "(missing)").astype(str)
                out[name] = pd.Categorical(strings, categories=sorted(pd.unique(strings)))
            parts.append(out[name])
        joined = pd.Series(np.asarray(parts[0]).astype(str), dtype=object)
        for part in parts[1:]:
            joined = joined + "×" + np.asarray(part).astype(str)
        order = ["×".join(t) for t in pd.MultiIndex.from_product([list(p.categories) for p in parts]).to_flat_index()]
        present = set(joined)
        out["×".join(crossing)] = pd.Categorical(joined, categories=[v for v in order if v in present])
    return out


def segment_key(segment: str, value: object) -> str:
    """How one segment value is named wherever it is stored or judged: ``region=north``,
    ``region×plan=north×pro``, ``tenure_months=[0, 12)``."""
    return f"{segment}={value}"


def segment_masks(df: pd.DataFrame, dataset: DatasetConfig) -> dict[str, dict[str, np.ndarray]]:
    """Row indices of every segment value: ``{"region": {"north": array([...]), ...}, ...}``."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, cat in segment_labels(df, dataset).items():
        codes = np.asarray(cat.codes)
        out[name] = {str(v): np.flatnonzero(codes == i) for i, v in enumerate(cat.categories)}
    return out


@dataclass(frozen=True)
class _Grouping:
    name: str
    codes: np.ndarray  # (n,) int32, every code present
    labels: list[str]


def _groupings(segments: Mapping[str, Any] | None, n: int) -> list[_Grouping]:
    out = [_Grouping(OVERALL, np.zeros(n, dtype=np.int32), ["all"])]
    for name, values in (segments or {}).items():
        if name == OVERALL:
            raise ValueError(f"{OVERALL!r} is reserved; rename that segment")
        if isinstance(values, pd.Series):
            values = values.array if isinstance(values.dtype, pd.CategoricalDtype) else values.to_numpy()
        if isinstance(values, pd.Categorical):
            cat = values.remove_unused_categories()
            codes = np.asarray(cat.codes)
            if (codes < 0).any():
                cat = cat.add_categories(["(missing)"]).fillna("(missing)")
                codes = np.asarray(cat.codes)
            labels = [str(c) for c in cat.categories]
        else:
            arr = np.asarray(values)
            if arr.ndim != 1 or len(arr) != n:
                raise ValueError(f"segment {name!r} must have one label per row ({n})")
            codes, uniq = pd.factorize(arr, use_na_sentinel=False)
            text = [str(u) for u in uniq]
            numeric = np.asarray(uniq).dtype.kind in "biuf"  # segment ids: 2 before 10
            rank = np.argsort(np.asarray(uniq if numeric else text, dtype=None if numeric else object), kind="stable")
            codes = np.argsort(rank)[codes]
            labels = [text[r] for r in rank]
        if len(codes) != n:
            raise ValueError(f"segment {name!r} must have one label per row ({n})")
        out.append(_Grouping(str(name), codes.astype(np.int32), labels))
    return out


# --------------------------------------------------------------------------------------------
# The paired bootstrap


def _chunk_size(n: int) -> int:
    """Resamples per chunk: 128, fewer for very large data (the weights chunk stays ~128 MB)."""
    return int(min(128, max(16, (1 << 27) // max(n, 1) // 16 * 16)))


_LOW_BITS = np.uint64(0x0101010101010101)
_SECOND_BITS = np.uint64(0x0202020202020202)


def _draw_weights(
    seed: np.random.SeedSequence, n: int, k: int, y: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """(n + 1, k) uint8 weights ``a + 2*b*c`` (see the module docstring); row n is 0 (the
    padding row). ``out`` reuses a buffer (a fresh one costs more in page faults than the
    random numbers).

    ``k`` must be a multiple of 8: each random byte makes one weight, eight at a time in a
    uint64 (bit 0, and bits 1 & 2), in cache-sized blocks. With labels ``y``, positive rows'
    weights are moved to bits 4-5 (the encoding ``_AucPlan`` reads).
    """
    if k % 8:
        raise ValueError("k must be a multiple of 8")
    bits = np.random.SFC64(seed)
    shape = (n + 1, k)
    W = out if out is not None and out.shape == shape else np.empty(shape, dtype=np.uint8)
    W[n:] = 0
    per_row = k // 8
    words = W[:n].reshape(-1).view(np.uint64)
    shift = None if y is None else (y.astype(np.uint64) * np.uint64(4))
    rows = max(1, (1 << 16) // per_row)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        block = words[r0 * per_row : r1 * per_row]
        raw = bits.random_raw(len(block))
        np.right_shift(raw, np.uint64(1), out=block)
        np.bitwise_and(block, raw, out=block)
        np.bitwise_and(block, _SECOND_BITS, out=block)
        np.bitwise_and(raw, _LOW_BITS, out=raw)
        np.add(block, raw, out=block)
        if shift is not None:
            np.left_shift(block, np.repeat(shift[r0:r1], per_row), out=block)
    return W


_UNIT = 16  # level-1 unit: 16 consecutive rows in score order
_SUPER = _UNIT * _UNIT  # level-2 unit: 256 rows; every segment is padded to a multiple


class _AucPlan:
    """ROC AUC of one model on every group of one grouping, for integer weights up to 3.

    The model's rows come already sorted by (score, label) in the weight matrix it reads (its
    *row space*), so the whole data set is read in place and a segment is a stable subset.
    Weights come encoded (``_draw_weights`` with labels): a positive row's weight sits in bits
    4-5, a negative row's in bits 0-1. Each group is padded to 256 rows. The AUC numerator
    (weighted pairs with the positive above the negative) is summed in levels: within runs of
    8 rows in uint8, two runs joined into 16-row units, those summed over 256-row units, and
    those combined by one short cumulative sum. No per-row cumulative sum is ever taken: each
    step is a vectorised uint8/uint16 operation over (units, resamples). Tied
    positive/negative pairs are first counted whole, then half of them taken back.
    """

    TILE = 512  # 16-row units per gather: (TILE, resamples) uint8 work arrays stay in L2
    BATCH = 16  # tiles per pass of the 256-row level

    def __init__(
        self, model: int, space: int, y: np.ndarray, s: np.ndarray, grouping: _Grouping, group_ids: np.ndarray
    ) -> None:
        """``y``, ``s`` and the grouping are in the model's row space (ascending score); row
        ``len(y)`` of the weights is zero (padding)."""
        self.model, self.space, self.group_ids = model, space, group_ids
        n = len(y)
        codes = grouping.codes
        if len(grouping.labels) == 1:
            order = np.arange(n)
        else:
            small = codes.astype(np.int16) if len(grouping.labels) < (1 << 15) else codes
            order = np.argsort(small, kind="stable")
        counts = np.bincount(codes, minlength=len(grouping.labels))
        padded = -(-counts // _SUPER) * _SUPER
        start = np.cumsum(counts) - counts
        pad_start = np.cumsum(padded) - padded
        sorted_codes = codes[order]
        total = int(padded.sum())
        units = total // _UNIT
        self.tiles = [(u0, min(units, u0 + self.TILE)) for u0 in range(0, units, self.TILE)]
        # Gathered even when already in order: a contiguous copy beats reading strided views.
        pos = pad_start[sorted_codes] + np.arange(n) - start[sorted_codes]
        cols = np.full(total, n, dtype=np.intp)
        cols[pos] = order
        by_unit = cols.reshape(units, _UNIT)
        self.cols = np.concatenate([by_unit[u0:u1].T.ravel() for u0, u1 in self.tiles])
        self.n_super = total // _SUPER
        self.super_starts = (pad_start // _SUPER).astype(np.intp)
        # Mixed tie runs (both labels at one score, within one group).
        self.ties: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        s_sorted = s[order]
        y_sorted = y[order]
        same = (s_sorted[1:] == s_sorted[:-1]) & (sorted_codes[1:] == sorted_codes[:-1])
        if not (same & (y_sorted[1:] != y_sorted[:-1])).any():
            return
        run_id = np.cumsum(np.r_[True, ~same]) - 1
        run_pos = np.bincount(run_id, weights=y_sorted).astype(np.int64)
        run_size = np.bincount(run_id)
        keep = ((run_pos > 0) & (run_pos < run_size))[run_id]
        kept_runs = run_id[keep]
        tie_starts = np.flatnonzero(np.r_[True, kept_runs[1:] != kept_runs[:-1]])
        self.ties = (order[keep], tie_starts, sorted_codes[keep][tie_starts])

    @staticmethod
    def _run8(G: np.ndarray, lo: int, bufs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positive weight, negative weight and pairs (positive after negative) of rows lo..lo+7."""
        wp, wn, tmp, pu, cneg, pairs = bufs
        np.right_shift(G[lo], 4, out=pu)
        np.bitwise_and(G[lo], 15, out=cneg)
        pairs.fill(0)
        for i in range(lo + 1, lo + 8):
            g = G[i]
            np.right_shift(g, 4, out=wp)
            np.multiply(wp, cneg, out=tmp)  # <= 3 * 21
            np.add(pairs, tmp, out=pairs)  # <= 4 * 3 * 12 = 144: fits uint8
            np.bitwise_and(g, 15, out=wn)
            np.add(cneg, wn, out=cneg)
            np.add(pu, wp, out=pu)
        return pu, cneg, pairs

    def evaluate(self, W: np.ndarray, out: np.ndarray) -> None:
        k = W.shape[1]
        V = self.n_super
        P2 = np.empty((V, k), dtype=np.int64)
        N2 = np.empty((V, k), dtype=np.int64)
        X2 = np.empty((V, k), dtype=np.int64)
        tile = self.TILE
        bufs_a = [np.empty((tile, k), dtype=np.uint8) for _ in range(6)]
        bufs_b = bufs_a[:3] + [np.empty((tile, k), dtype=np.uint8) for _ in range(3)]
        span = tile * self.BATCH
        unit_p = np.empty((span, k), dtype=np.uint8)
        unit_n = np.empty((span, k), dtype=np.uint8)
        unit_x = np.empty((span, k), dtype=np.uint16)
        offset = 0
        for b0 in range(0, len(self.tiles), self.BATCH):
            batch = self.tiles[b0 : b0 + self.BATCH]
            base = batch[0][0]
            for u0, u1 in batch:
                t = u1 - u0
                G = np.take(W, self.cols[offset : offset + _UNIT * t], axis=0).reshape(_UNIT, t, k)
                offset += _UNIT * t
                pa, na, xa = self._run8(G, 0, [x[:t] for x in bufs_a])
                pb, nb, xb = self._run8(G, 8, [x[:t] for x in bufs_b])
                rows = slice(u0 - base, u1 - base)
                x = unit_x[rows]
                np.multiply(pb, na, out=x, dtype=np.uint16)  # <= 24 * 24
                np.add(x, xa, out=x)
                np.add(x, xb, out=x)
                np.add(pa, pb, out=unit_p[rows])  # unit totals, <= 48
                np.add(na, nb, out=unit_n[rows])
            units = batch[-1][1] - base
            tv = units // _UNIT
            pu3 = unit_p[:units].reshape(tv, _UNIT, k)
            cn3 = unit_n[:units].reshape(tv, _UNIT, k)
            x2 = unit_x[:units].reshape(tv, _UNIT, k).sum(axis=1, dtype=np.uint32)
            c2 = np.zeros((tv, k), dtype=np.uint16)
            p2 = np.zeros((tv, k), dtype=np.uint16)
            tmp16 = np.empty((tv, k), dtype=np.uint16)
            for i in range(_UNIT):
                pi = pu3[:, i, :]
                np.multiply(pi, c2, out=tmp16)  # <= 48 * 720: fits uint16
                np.add(x2, tmp16, out=x2)
                np.add(c2, cn3[:, i, :], out=c2)
                np.add(p2, pi, out=p2)
            v0 = base // _UNIT
            P2[v0 : v0 + tv] = p2
            N2[v0 : v0 + tv] = c2
            X2[v0 : v0 + tv] = x2
        before = np.cumsum(N2.T, axis=1).T - N2
        starts = self.super_starts
        num = np.add.reduceat(X2 + P2 * before, starts, axis=0) - before[starts] * np.add.reduceat(P2, starts, axis=0)
        P = np.add.reduceat(P2, starts, axis=0)
        N = np.add.reduceat(N2, starts, axis=0)
        twice = 2 * num
        if self.ties is not None:
            rows_t, tstarts, tgroup = self.ties
            Wt = np.take(W, rows_t, axis=0)
            pos_w = np.add.reduceat(np.right_shift(Wt, 4).astype(np.int64), tstarts, axis=0)
            neg_w = np.add.reduceat(np.bitwise_and(Wt, 15).astype(np.int64), tstarts, axis=0)
            corr = np.zeros_like(twice)
            np.add.at(corr, tgroup, pos_w * neg_w)
            twice -= corr
        den = 2 * P * N
        with np.errstate(invalid="ignore", divide="ignore"):
            out[self.model, self.group_ids] = np.where(den > 0, twice / np.where(den > 0, den, 1), np.nan)


class _SumPlan:
    """Sum-based metrics (log loss, Brier, accuracy, F1, ECE, RMSE, MAE, R², MAPE).

    Weighted sums of per-row feature columns, one matmul per (group, bin) block.
    """

    def __init__(
        self,
        metric: str,
        models: list[int],
        features: list[np.ndarray],
        bins: np.ndarray | None,
        grouping: _Grouping,
        group_ids: np.ndarray,
    ) -> None:
        self.metric, self.models, self.group_ids = metric, models, group_ids
        self.n_groups = len(grouping.labels)
        key = grouping.codes.astype(np.int64) * ECE_BINS + (0 if bins is None else bins)
        self.order = np.argsort(key, kind="stable")
        sorted_key = key[self.order]
        self.starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        self.ends = np.r_[self.starts[1:], len(sorted_key)]
        self.block_group = sorted_key[self.starts] // ECE_BINS
        self.block_bin = sorted_key[self.starts] % ECE_BINS
        self.F = np.hstack(features)[self.order]
        self.width = features[0].shape[1]
        self.n_bins = ECE_BINS if bins is not None else 1

    def evaluate(self, W: np.ndarray, out: np.ndarray) -> None:
        k = W.shape[1]
        S = np.zeros((self.n_groups, self.n_bins, self.F.shape[1], k))
        step = max(1024, (1 << 22) // k)
        for a, b, g, bin_ in zip(self.starts, self.ends, self.block_group, self.block_bin, strict=True):
            for lo in range(a, b, step):
                hi = min(b, lo + step)
                Wt = np.take(W, self.order[lo:hi], axis=0).astype(np.float64)
                S[g, bin_] += self.F[lo:hi].T @ Wt
        for j, model in enumerate(self.models):
            part = S[:, :, j * self.width : (j + 1) * self.width]
            for g in range(self.n_groups):
                out[model, self.group_ids[g]] = _finalize(self.metric, part[g])


class _OrderPlan:
    """PR AUC (average precision) for integer weights: per group, rows by descending score.

    Average precision needs the precision at every positive, a running ratio, so unlike ROC
    AUC it takes real cumulative sums; they run over blocks of rows that end on tie-group
    boundaries, carrying the totals from block to block.
    """

    BLOCK = 16384

    def __init__(self, model: int, y: np.ndarray, s: np.ndarray, grouping: _Grouping, group_ids: np.ndarray) -> None:
        self.model, self.group_ids = model, group_ids
        self.parts: list[list[tuple[Any, ...]]] = []
        for g in range(len(grouping.labels)):
            rows = np.flatnonzero(grouping.codes == g)
            rows = rows[np.argsort(-s[rows], kind="stable")]
            starts = _tie_starts(-s[rows])
            ends = np.r_[starts[1:], len(rows)]
            group_end = np.repeat(ends, ends - starts)  # where each row's tie group ends
            blocks = []
            lo = 0
            while lo < len(rows):
                # end the block on the first tie-group boundary at or after lo + BLOCK
                hi = len(rows)
                if lo + self.BLOCK < len(rows):
                    hi = int(ends[np.searchsorted(ends, lo + self.BLOCK)])
                is_pos = y[rows[lo:hi]].astype(bool)
                pos = np.flatnonzero(is_pos)
                end = group_end[lo:hi] - lo
                pos_rank = np.cumsum(is_pos) - 1  # index among the block's positives, at each row
                # precision of a positive: at the end of its tie group (sklearn's thresholds)
                blocks.append((rows[lo:hi], pos, end[pos] - 1, pos_rank[end - 1][pos]))
                lo = hi
            self.parts.append(blocks)

    def evaluate(self, W: np.ndarray, out: np.ndarray) -> None:
        k = W.shape[1]
        for g, blocks in enumerate(self.parts):
            carry_all = np.zeros(k, dtype=np.int64)
            carry_pos = np.zeros(k, dtype=np.int64)
            num = np.zeros(k)
            for rows, pos, end, last in blocks:
                Wb = np.take(W, rows, axis=0)
                A = _cumsum_rows(Wb, np.int64) + carry_all
                carry_all = A[-1]
                if len(pos) == 0:
                    continue
                Wp = Wb[pos]
                TP = _cumsum_rows(Wp, np.int64) + carry_pos
                at_end = A[end]
                precision = np.divide(TP[last], at_end, out=np.zeros(at_end.shape), where=at_end > 0)
                num += (Wp * precision).sum(axis=0)
                carry_pos = TP[-1]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[self.model, self.group_ids[g]] = np.where(carry_pos > 0, num / np.maximum(carry_pos, 1), np.nan)


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


def _score_order(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Rows by ascending score, negatives first among ties (one sort unless labels tie)."""
    order = np.argsort(s)
    s_sorted = s[order]
    tied = s_sorted[1:] == s_sorted[:-1]
    if tied.any() and (y[order][1:][tied] != y[order][:-1][tied]).any():
        order = np.lexsort((y, s))
    return order


def _build_plans(
    metric: str,
    y: np.ndarray,
    scores: list[np.ndarray],
    groupings: list[_Grouping],
    group_ids: list[np.ndarray],
    spaces: list[np.ndarray] | None,
    pmap: Callable[..., list[Any]],
) -> list[Any]:
    """The work per (model, grouping), built in parallel through ``pmap``.

    ROC AUC reads each model's rows in its own row space: ``spaces[m]`` lists the rows in
    model m's score order (see ``paired_bootstrap``).
    """
    pairs = [(m, gr, ids) for m in range(len(scores)) for gr, ids in zip(groupings, group_ids, strict=True)]
    kernel = get_metric(metric).kernel
    if kernel == "auc":
        assert spaces is not None

        def auc_plan(a: tuple[int, _Grouping, np.ndarray]) -> _AucPlan:
            m, gr, ids = a
            rows = spaces[m]
            moved = _Grouping(gr.name, gr.codes[rows], gr.labels)
            return _AucPlan(m, m, y[rows], scores[m][rows], moved, ids)

        return pmap(auc_plan, pairs)
    if kernel == "ap":
        return pmap(lambda a: _OrderPlan(a[0], y, scores[a[0]], a[1], a[2]), pairs)
    yf = y.astype(np.float64)
    feats = [_sum_features(metric, yf, sc) for sc in scores]
    plans: list[Any] = []
    for gr, ids in zip(groupings, group_ids, strict=True):
        if feats[0][1] is None:
            plans.append(_SumPlan(metric, list(range(len(scores))), [f for f, _ in feats], None, gr, ids))
        else:
            plans += [_SumPlan(metric, [m], [f], b, gr, ids) for m, (f, b) in enumerate(feats)]
    return plans


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
        task: ``binary`` or ``regression``.
        metric: The metric to compare (see ``refit.metrics.METRICS``).
        y: Labels or values.
        cand_score: Candidate scores (positive-class probabilities, or predictions).
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
    auc = get_metric(metric).kernel == "auc"
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    yv = _as_labels(task, y)
    n = len(yv)
    if n == 0:
        raise DataError("cannot evaluate on zero rows")
    scores = [_as_scores(task, cand_score, n, "cand_score"), _as_scores(task, champ_score, n, "champ_score")]
    groupings = _groupings(segments, n)
    group_ids, offset = [], 0
    for gr in groupings:
        group_ids.append(np.arange(offset, offset + len(gr.labels)))
        offset += len(gr.labels)
    n_groups = offset
    k = _chunk_size(n)
    chunks = [(c0, min(k, n_resamples - c0)) for c0 in range(0, n_resamples, k)]
    seeds = np.random.SeedSequence(seed).spawn(len(chunks))
    values = np.empty((2, n_groups, n_resamples))
    jobs = max(1, n_jobs or min(4, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(max_workers=jobs) if jobs > 1 else None

    def pmap(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        return list(pool.map(fn, items)) if pool is not None else [fn(x) for x in items]

    try:
        with one_blas_thread():
            spaces = None
            if auc:
                # Rows get iid weights, so which weight goes to which row is ours to choose: the
                # weights are drawn in the champion's score order (its rows read in place), and
                # copied once per chunk into the candidate's order (one gather, not one per segment).
                relabel, cand_order = pmap(lambda sc: _score_order(yv, sc), [scores[1], scores[0]])
                inverse = np.empty(n, dtype=np.intp)
                inverse[relabel] = np.arange(n)
                yv = yv[relabel]
                scores = [sc[relabel] for sc in scores]
                groupings = [_Grouping(gr.name, gr.codes[relabel], gr.labels) for gr in groupings]
                spaces = [inverse[cand_order], np.arange(n)]
            plans = _build_plans(metric, yv, scores, groupings, group_ids, spaces, pmap)
            local = threading.local()

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
                W = _draw_weights(seeds[i], n, -(-width // 8) * 8, yv if auc else None, getattr(local, "buffer", None))
                local.buffer = W
                views = weight_spaces(W)
                out = np.empty((2, n_groups, W.shape[1]))
                for plan in plans:
                    plan.evaluate(views[getattr(plan, "space", 0)], out)
                values[:, :, c0 : c0 + width] = out[:, :, :width]

            # Point estimates: the same plans on unit weights.
            ones = np.zeros((n + 1, 1), dtype=np.uint8)
            ones[:n] = 1
            if spaces is not None:
                ones[:n, 0] <<= 4 * yv
                ones_views = [np.zeros_like(ones), ones]
                ones_views[0][:n] = ones[spaces[0]]
            else:
                ones_views = [ones]
            point = np.empty((2, n_groups, 1))
            pmap(lambda plan: plan.evaluate(ones_views[getattr(plan, "space", 0)], point), plans)
            pmap(run, range(len(chunks)))
    finally:
        if pool is not None:
            pool.shutdown()

    rows: list[SegmentComparison] = []
    for gr, ids in zip(groupings, group_ids, strict=True):
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
    return PairedBootstrap(
        metric=metric, confidence=confidence, n_resamples=n_resamples, seed=seed, overall=rows[0], segments=rows[1:]
    )


# --------------------------------------------------------------------------------------------
# The gate


class Outcome(StrEnum):
    PROMOTE = "PROMOTE"
    REJECT = "REJECT"
    INCONCLUSIVE = "INCONCLUSIVE"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GateCheck(_Record):
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


class SegmentResult(_Record):
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


class GateDecision(_Record):
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

    @property
    def promote(self) -> bool:
        return self.outcome == Outcome.PROMOTE

    @property
    def failed_checks(self) -> list[GateCheck]:
        return [c for c in self.checks if c.passed is False]


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


def _fmt(x: float | None) -> str:
    """A signed number for sentences: 3 decimals for small values, 4 significant digits else."""
    if x is None:
        return "n/a"
    x = x + 0.0  # no "-0.000"
    return f"{x:+.3f}" if abs(x) < 10 else f"{x:+.4g}"


def _ci_text(lo: float | None, hi: float | None, confidence: float) -> str:
    if lo is None or hi is None:
        return "no CI"
    return f"{confidence:.0%} CI [{_fmt(lo)}, {_fmt(hi)}]"


def _value_checks(gate: GateConfig, cand: float) -> list[GateCheck]:
    checks = []
    if gate.floor is not None:
        checks.append(
            GateCheck(
                name="floor",
                scope=OVERALL,
                value=cand,
                threshold=gate.floor,
                margin=cand - gate.floor,
                passed=cand >= gate.floor,
                note=f"candidate {gate.primary_metric} must be at least the floor",
            )
        )
    if gate.ceiling is not None:
        checks.append(
            GateCheck(
                name="ceiling",
                scope=OVERALL,
                value=cand,
                threshold=gate.ceiling,
                margin=gate.ceiling - cand,
                passed=cand <= gate.ceiling,
                note=f"candidate {gate.primary_metric} must be at most the ceiling",
            )
        )
    return checks


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


def _finish(gate_outcome: Outcome, *, force: bool, force_reason: str | None, **fields: Any) -> GateDecision:
    outcome = Outcome.PROMOTE if force else gate_outcome
    draft = GateDecision(
        outcome=outcome,
        gate_outcome=gate_outcome,
        forced=force,
        force_reason=force_reason if force else None,
        headline="",
        **fields,
    )
    return draft.model_copy(update={"headline": describe_decision(draft)})


def _check_force(force: bool, force_reason: str | None) -> None:
    if force and not (force_reason and force_reason.strip()):
        raise ValueError("force=True needs a non-empty force_reason (it is recorded in the registry)")


def _holm_by_family(pending: Sequence[tuple[Any, bool, str, float | None]], gate: GateConfig) -> dict[int, float]:
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
    cand, champ = ov.candidate, ov.champion
    gain = sign * ov.difference
    glo, ghi = _gain_interval(sign, ov.ci_low, ov.ci_high)
    gains = sign * ov.replicates
    checks = _value_checks(gate, cand)

    if gate.max_improvement is not None:
        checks.append(
            GateCheck(
                name="leakage_guard",
                scope=OVERALL,
                value=gain,
                threshold=gate.max_improvement,
                ci_low=glo,
                ci_high=ghi,
                margin=gate.max_improvement - gain,
                passed=gain <= gate.max_improvement,
                note="a gain this large is more likely leakage or a broken champion than progress",
            )
        )
    p_overall = _harm_p(gains, gate.max_regression)
    checks.append(
        GateCheck(
            name="overall_regression",
            scope=OVERALL,
            value=gain,
            threshold=0.0 - gate.max_regression,
            ci_low=glo,
            ci_high=ghi,
            margin=None if ghi is None else ghi + gate.max_regression,
            passed=not (p_overall is not None and p_overall <= alpha),
            note=f"rejects when the loss is significantly beyond {gate.max_regression:g} (p={_p(p_overall)})",
        )
    )

    # Segments: gate the large enough ones, Holm across them.
    tol = gate.max_segment_regression
    min_valid = 0.9 * boot.n_resamples
    pending: list[tuple[SegmentComparison, bool, str, float | None]] = []
    for seg in boot.segments:
        if seg.n < gate.min_segment_size:
            pending.append((seg, False, f"n={seg.n} < min_segment_size {gate.min_segment_size}: not gated", None))
        elif seg.difference is None or seg.n_valid < min_valid:
            pending.append((seg, False, f"{metric} undefined in too many resamples: not gated", None))
        else:
            pending.append((seg, True, "", _harm_p(sign * seg.replicates, tol)))
    adjusted = _holm_by_family(pending, gate)
    segments: list[SegmentResult] = []
    for index, (seg, gated, note, p_harm) in enumerate(pending):
        g_lo, g_hi = _gain_interval(sign, seg.ci_low, seg.ci_high)
        seg_gain = None if seg.difference is None else sign * seg.difference
        p_adj = adjusted.get(index)
        passed: bool | None = None
        if gated:
            passed = not (p_adj is not None and p_adj <= alpha)
            note = f"significantly worse than tolerance {tol:g}" if not passed else "within tolerance"
            note += f" (p={_p(p_harm)}" + (f", Holm {_p(p_adj)})" if gate.holm else ")")
        segments.append(
            SegmentResult(
                segment=seg.segment,
                value=seg.value,
                n=seg.n,
                gated=gated,
                candidate=seg.candidate,
                champion=seg.champion,
                gain=seg_gain,
                ci_low=g_lo,
                ci_high=g_hi,
                p_value=seg.p_value,
                p_harm=p_harm,
                p_harm_adjusted=p_adj,
                passed=passed,
                note=note,
            )
        )
        checks.append(
            GateCheck(
                name="segment_regression",
                scope=f"{seg.segment}={seg.value}",
                value=seg_gain,
                threshold=0.0 - tol,
                ci_low=g_lo,
                ci_high=g_hi,
                margin=None if g_hi is None else g_hi + tol,
                passed=passed,
                note=note,
            )
        )

    required = max(gate.min_improvement, gate.min_relative_improvement * abs(champ))
    checks.append(
        GateCheck(
            name="improvement",
            scope=OVERALL,
            value=gain,
            threshold=required,
            ci_low=glo,
            ci_high=ghi,
            margin=None if glo is None else glo - required,
            passed=glo is not None and glo > required,
            rejects=False,
            note="promotion needs the gain's lower bound above the required improvement",
        )
    )

    reasons = _reasons(checks, metric, boot.confidence)
    if any(c.passed is False and c.rejects for c in checks):
        gate_outcome = Outcome.REJECT
    elif checks[-1].passed:
        gate_outcome = Outcome.PROMOTE
    else:
        gate_outcome = Outcome.INCONCLUSIVE
    return _finish(
        gate_outcome,
        force=force,
        force_reason=force_reason,
        metric=metric,
        higher_is_better=hib,
        confidence=boot.confidence,
        n_resamples=boot.n_resamples,
        seed=boot.seed,
        n_rows=ov.n,
        first_run=False,
        candidate_value=cand,
        champion_value=champ,
        gain=gain,
        ci_low=glo,
        ci_high=ghi,
        max_segment_regression=tol,
        holm=gate.holm,
        checks=checks,
        segments=segments,
        reasons=reasons,
    )


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3f}"


def _reasons(checks: list[GateCheck], metric: str, confidence: float) -> list[str]:
    out = []
    for c in checks:
        if c.passed is not False:
            continue
        where = "overall" if c.scope == OVERALL else f"for {c.scope}"
        label = get_metric(metric).label
        if c.name == "floor":
            out.append(f"{label} {c.value:.4g} is below the floor {c.threshold:g}")
        elif c.name == "ceiling":
            out.append(f"{label} {c.value:.4g} is above the ceiling {c.threshold:g}")
        elif c.name == "leakage_guard":
            out.append(f"gain {_fmt(c.value)} exceeds max_improvement {c.threshold:g} (leakage guard)")
        elif c.name in ("overall_regression", "segment_regression"):
            out.append(
                f"worse {where}: {_fmt(c.value)} ({_ci_text(c.ci_low, c.ci_high, confidence)}), "
                f"tolerance {abs(c.threshold or 0.0):g}"
            )
        elif c.name == "improvement":
            out.append(
                f"no clear gain overall: {_fmt(c.value)} ({_ci_text(c.ci_low, c.ci_high, confidence)}) "
                f"does not clear {c.threshold:g}"
            )
    return out


def describe_decision(d: GateDecision) -> str:
    """One sentence a person can act on, e.g. ``REJECTED: better overall (+0.012 ROC AUC, 95% CI
    [...]) but worse for region=south (-0.041, 95% CI [...], tolerance 0.02)``."""
    verdict = {Outcome.PROMOTE: "PROMOTED", Outcome.REJECT: "REJECTED", Outcome.INCONCLUSIVE: "INCONCLUSIVE"}
    label = get_metric(d.metric).label
    if d.first_run:
        value = "undefined" if d.candidate_value is None else f"{d.candidate_value:.4g}"
        body = "first model (no champion): " + ("; ".join(d.reasons) if d.reasons else f"{label} {value}")
        if not d.reasons and d.checks:
            body += " passes " + " and ".join(f"the {c.name} {c.threshold:g}" for c in d.checks)
    else:
        overall = _ci_text(d.ci_low, d.ci_high, d.confidence)
        if d.ci_low is not None and d.ci_low > 0:
            trend = "better"
        elif d.ci_high is not None and d.ci_high < 0:
            trend = "worse"
        else:
            trend = "no clear change"
        body = f"{trend} overall ({_fmt(d.gain)} {label}, {overall})"
        bad = [c for c in d.checks if c.passed is False and c.rejects]
        segs = [c for c in bad if c.name == "segment_regression"]
        others = [c for c in bad if c.name != "segment_regression"]
        if segs:
            # Plain segments before crossings (the cause before its echoes), worst first.
            worst = sorted(segs, key=lambda c: ("×" in c.scope.split("=")[0], c.value if c.value is not None else 0.0))
            parts = [
                f"{c.scope} ({_fmt(c.value)}, {_ci_text(c.ci_low, c.ci_high, d.confidence)}"
                + (f", tolerance {d.max_segment_regression:g})" if i == 0 else ")")
                for i, c in enumerate(worst[:3])
            ]
            if len(worst) > 3:
                listed = ", ".join(parts) + f" and {len(worst) - 3} more segment(s)"
            else:
                listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
            body += (" but worse for " if trend == "better" else "; worse for ") + listed
        for c in others:
            if c.name == "overall_regression":
                if c.threshold:
                    body += f"; beyond the overall tolerance {abs(c.threshold):g}"
            elif c.name == "leakage_guard":
                body += f"; gain above max_improvement {c.threshold:g}: suspected leakage"
            else:
                body += f"; {_reasons([c], d.metric, d.confidence)[0]}"
        if d.gate_outcome == Outcome.INCONCLUSIVE:
            body += "; the champion stays"
        elif d.gate_outcome == Outcome.PROMOTE:
            body += f"; no gated segment worse beyond tolerance {d.max_segment_regression:g}"
    text = f"{verdict[d.gate_outcome]}: {body}"
    if d.forced:
        text = f"FORCED PROMOTION (reason: {d.force_reason}); the gate said {text}"
    return text


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
        task: ``binary`` or ``regression``.
        y: Labels or values of the evaluation rows.
        cand_score: Candidate scores (positive-class probabilities, or predictions).
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
    if champ_score is not None:
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

    yv = _as_labels(task, y)
    s = _as_scores(task, cand_score, len(yv), "cand_score")
    cand = metric_value(metric, yv, s)
    if cand is None:
        raise DataError(f"{metric} is undefined on the evaluation data (a single class?)")
    segments = []
    with one_blas_thread():
        for gr in _groupings(labels, len(yv))[1:]:
            for j, value in enumerate(gr.labels):
                rows = gr.codes == j
                segments.append(
                    SegmentResult(
                        segment=gr.name,
                        value=value,
                        n=int(rows.sum()),
                        gated=False,
                        candidate=metric_value(metric, yv[rows], s[rows]),
                        note="first run: reported, not gated",
                    )
                )
    checks = _value_checks(gate, cand)
    gate_outcome = Outcome.REJECT if any(c.passed is False for c in checks) else Outcome.PROMOTE
    return _finish(
        gate_outcome,
        force=force,
        force_reason=force_reason,
        metric=metric,
        higher_is_better=get_metric(metric).higher_is_better,
        confidence=gate.confidence,
        n_resamples=0,
        seed=gate.seed,
        n_rows=len(yv),
        first_run=True,
        candidate_value=cand,
        max_segment_regression=gate.max_segment_regression,
        holm=gate.holm,
        checks=checks,
        segments=segments,
        reasons=_reasons(checks, metric, gate.confidence),
    )


__all__ = [
    "GateCheck",
    "GateDecision",
    "OVERALL",
    "Outcome",
    "PairedBootstrap",
    "SegmentComparison",
    "SegmentResult",
    "decide_gate",
    "describe_decision",
    "evaluate_gate",
    "holm_adjust",
    "paired_bootstrap",
    "segment_key",
    "segment_labels",
    "segment_masks",
]
