"""The bootstrap's kernels: bit-packed resample weights, and the metric plans that read them.

A resample is a column of per-row weights, so one pass evaluates a metric on many resamples at
once. Weights are uint8, one per (row, resample), and every plan reads the same matrix.

Weight encoding. Each resample gives every row an independent weight ``w = a + 2*b*c`` from
three fair random bits: P(0)=P(1)=3/8, P(2)=P(3)=1/8. Like the Poisson(1) bootstrap it has mean
1 and variance 1 (skewness 0.75 against Poisson's 1), which is what a weighted bootstrap needs,
and it is drawn at about a byte per weight: 1,000 resamples of a million rows cost about a
second of random numbers, not a minute. For ROC AUC the label rides in the same byte: a
positive row's weight is shifted to bits 4-5, a negative row's stays in bits 0-1, so
``w >> 4`` is the positive weight and ``w & 15`` the negative one (``_AucPlan`` reads that).
The last row of the matrix is all zeros: the padding row that groups are padded with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from refit.evaluation.segments import Grouping
from refit.metrics import ECE_BINS, _cumsum_rows, _finalize, _sum_features, _tie_starts, get_metric, macro_mean

_LOW_BITS = np.uint64(0x0101010101010101)
_SECOND_BITS = np.uint64(0x0202020202020202)


def _draw_weights(
    seed: np.random.SeedSequence, n: int, k: int, y: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """(n + 1, k) uint8 weights ``a + 2*b*c`` (the encoding is in the module docstring); row n is 0 (the
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
        self, model: int, space: int, y: np.ndarray, s: np.ndarray, grouping: Grouping, group_ids: np.ndarray
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


class _OvrAucPlan:
    """Macro one-vs-rest ROC AUC of one model on every group of one grouping: one ``_AucPlan``
    per class, averaged over the classes each group and resample leaves defined
    (``refit.metrics.macro_mean``).

    ``_AucPlan`` reads each row's label from its weight byte and its rows in score order. A
    multiclass row is a positive of one class and a negative of every other, and each class has
    its own score order, so one shared matrix cannot serve them all: the weights are drawn
    plain (no label bits) and, per class, gathered once into that class's score order with the
    class's rows shifted into the positive bits. One (rows, resamples) uint8 gather and shift
    per class; the pair counting is the bit-packed kernel's, unchanged.
    """

    def __init__(self, model: int, y: np.ndarray, S: np.ndarray, grouping: Grouping, group_ids: np.ndarray) -> None:
        self.model, self.group_ids = model, group_ids
        self.n = n = len(y)
        self.n_groups = len(grouping.labels)
        every_group = np.arange(self.n_groups)
        self.parts: list[tuple[np.ndarray, np.ndarray, _AucPlan]] = []
        for k in range(S.shape[1]):
            yk = (y == k).astype(np.uint8)
            order = _score_order(yk, S[:, k])
            moved = Grouping(grouping.name, grouping.codes[order], grouping.labels)
            plan = _AucPlan(k, 0, yk[order], S[order, k], moved, every_group)
            shift = (yk[order] * np.uint8(4))[:, None]
            self.parts.append((np.r_[order, n], shift, plan))  # row n: the zero padding row

    def evaluate(self, W: np.ndarray, out: np.ndarray) -> None:
        per_class = np.empty((len(self.parts), self.n_groups, W.shape[1]))
        space = np.empty_like(W)
        for rows, shift, plan in self.parts:
            np.take(W, rows, axis=0, out=space)
            np.left_shift(space[: self.n], shift, out=space[: self.n])
            plan.evaluate(space, per_class)
        out[self.model, self.group_ids] = macro_mean(per_class)


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
        grouping: Grouping,
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

    def __init__(self, model: int, y: np.ndarray, s: np.ndarray, grouping: Grouping, group_ids: np.ndarray) -> None:
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
    groupings: list[Grouping],
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

        def auc_plan(a: tuple[int, Grouping, np.ndarray]) -> _AucPlan:
            m, gr, ids = a
            rows = spaces[m]
            moved = Grouping(gr.name, gr.codes[rows], gr.labels)
            return _AucPlan(m, m, y[rows], scores[m][rows], moved, ids)

        return pmap(auc_plan, pairs)
    if kernel == "ovr_auc":
        return pmap(lambda a: _OvrAucPlan(a[0], y, scores[a[0]], a[1], a[2]), pairs)
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
