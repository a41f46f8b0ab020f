"""Drift scores on counts, and their null distribution drawn from the reference itself.

One scoring function, :func:`score_counts`, computes Evidently's stat-test scores (normed
Wasserstein, Jensen-Shannon, PSI, chi-square p-value) from value counts over a shared support:
a row of counts per sample, many rows at once. The observed window is one row (the union of the
reference's and the window's values); the null is many rows, each a pair of samples of sizes
(reference, window) drawn with replacement from the reference, so the score a window of ``n``
in-distribution rows reaches by chance is known for that ``n`` and that column.

The reference side of each null pair is drawn smaller than the reference
(:func:`reference_draw_size`), because every check compares its window with one *fixed* reference
sample, whose own sampling error is part of every score it gives. A two-sample null (both sides
drawn afresh) is right on average over references, not for the one a champion keeps: with a window
as large as the reference sample, half of each score's spread is the reference's error, so for
an unlucky reference (one column's shares off by chance) that column alarms on in-distribution
windows many times more often than ``alpha``, every window. The smaller reference draw makes the
null's spread the *sum* of the window's and the reference's, not their root-sum-square: by the
triangle inequality, a window from the reference's population then alarms with probability at
most the level for every reference whose own error is within its quantile at that level.
``tests/unit/test_drift_calibration.py`` checks the scores against Evidently's own stat tests.

A p-value is the share of null scores at least as extreme as the observed one, with +1 smoothing
(``(1 + k) / (draws + 1)``), so it is never 0 and is exact for a window drawn from the reference.

No Evidently import here: this module is numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from refit.compat.evidently import ColumnKind

#: The test of a column that is constant in the reference: the share of window values the
#: reference never had (bounded in [0, 1]; a normed distance over a zero spread is not).
NEW_VALUE = "new_value_share"
#: Methods :func:`score_counts` computes, by the column kinds Evidently allows them for.
SCORED: dict[str, tuple[ColumnKind, ...]] = {
    "wasserstein": ("numerical",),
    "jensenshannon": ("numerical", "categorical"),
    "psi": ("numerical", "categorical"),
    "chisquare": ("categorical",),
    NEW_VALUE: ("categorical",),
}
#: Evidently's stat tests whose score is a p-value: drift when it is small (the others are
#: distances: drift when large). Only ``chisquare`` among them is scored here.
P_VALUE_METHODS = frozenset(
    {
        "anderson",
        "chisquare",
        "cramer_von_mises",
        "empirical_mmd",
        "es",
        "fisher_exact",
        "g_test",
        "ks",
        "mannw",
        "TVD",
        "t_test",
        "z",
    }
)
#: Evidently bins a numeric column into Sturges bins only when the reference has more distinct
#: values than this (``get_binned_data``); below it, each value is its own bin.
_BINNED_ABOVE = 20
#: Bumped when the null's draw changes meaning (2: :func:`reference_draw_size`); it is in the
#: null's cache key, so a champion's stored nulls of an older scheme are drawn again, not reused.
NULL_SCHEME = 2
#: Null draws are scored this many at a time (bounds memory: rows x support cells).
_CELLS_PER_CHUNK = 4_000_000


def higher_is_drift(method: str) -> bool:
    return method not in P_VALUE_METHODS


def scored(method: str, kind: ColumnKind) -> bool:
    return kind in SCORED.get(method, ())


@dataclass(frozen=True)
class Counts:
    """Samples as counts over one sorted support: ``ref`` and ``cur`` are (rows, support)."""

    support: np.ndarray  # sorted float64 values (numerical) or category codes 0..U-1 (categorical)
    ref: np.ndarray
    cur: np.ndarray


def observed_counts(reference: pd.Series, current: pd.Series, kind: ColumnKind) -> Counts:
    """Both samples (missing values dropped) as one row of counts over the union of their values."""
    ref, cur = reference.dropna(), current.dropna()
    if kind == "numerical":
        values = np.concatenate([ref.to_numpy(dtype=np.float64), cur.to_numpy(dtype=np.float64)])
        support, inverse = np.unique(values, return_inverse=True)
    else:
        inverse, uniques = pd.factorize(pd.concat([ref, cur], ignore_index=True))
        support = np.arange(len(uniques), dtype=np.float64)
    u = len(support)
    ref_c = np.bincount(inverse[: len(ref)], minlength=u)[None, :]
    cur_c = np.bincount(inverse[len(ref) :], minlength=u)[None, :]
    return Counts(support=support, ref=ref_c, cur=cur_c)


# --------------------------------------------------------------------------------------------
# Scores


def score_counts(method: str, kind: ColumnKind, counts: Counts) -> np.ndarray:
    """Evidently's score of ``method`` for each row of counts (reference row vs current row).

    Raises:
        ValueError: a method this module does not compute for that kind of column.
    """
    if not scored(method, kind):
        raise ValueError(f"no calibrated score for method {method!r} on a {kind} column")
    ref = counts.ref.astype(np.float64)
    cur = counts.cur.astype(np.float64)
    nr, nc = ref.sum(axis=1), cur.sum(axis=1)
    if method == NEW_VALUE:
        return np.asarray((cur * (ref == 0)).sum(axis=1) / nc)
    if method == "wasserstein":
        return _wasserstein(counts.support, ref, cur, nr, nc)
    if kind == "numerical":
        return _binned_numeric(method, counts.support, ref, cur, nr, nc)
    present = (ref > 0) | (cur > 0)  # Evidently's keys: values seen in either sample
    p, q = ref / nr[:, None], cur / nc[:, None]
    if method == "jensenshannon":
        return _jensenshannon(p, q)
    if method == "psi":
        return _psi(p, q, present)
    return _chisquare(ref, cur, nr, nc, present)


def _wasserstein(support: np.ndarray, ref: np.ndarray, cur: np.ndarray, nr: np.ndarray, nc: np.ndarray) -> np.ndarray:
    """``wasserstein_distance(ref, cur) / max(std(ref), 0.001)`` (scipy's integral of |F - G|).

    F - G is one cumulative sum of the share differences; the integral and the moments are
    matrix-vector products (no second rows x support temporary)."""
    if len(support) < 2:
        return np.zeros(len(ref))
    dx = np.diff(support)
    diff = ref[:, :-1] / nr[:, None]
    diff -= cur[:, :-1] / nc[:, None]
    np.cumsum(diff, axis=1, out=diff)
    np.abs(diff, out=diff)
    distance = diff @ dx
    centred = support - support.mean()  # the variance is shift-free; centring keeps it exact
    mean = ref @ centred / nr
    var = np.maximum(ref @ (centred * centred) / nr - mean * mean, 0.0)
    return np.asarray(distance / np.maximum(np.sqrt(var), 0.001))


def _rel_entr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0) / np.where(b > 0, b, 1.0)), 0.0)


def _jensenshannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """scipy's ``distance.jensenshannon`` (natural log), row by row."""
    m = (p + q) / 2.0
    js = _rel_entr(p, m).sum(axis=1) + _rel_entr(q, m).sum(axis=1)
    return np.asarray(np.sqrt(np.maximum(js, 0.0) / 2.0))


def _fill_zeroes(p: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Evidently's ``feel_zeroes``: an empty bin gets min(non-empty)/1e6, or 1e-4 when that is larger."""
    nonzero = np.where((p > 0) & keep, p, np.inf).min(axis=1, keepdims=True)
    fill = np.where(nonzero <= 0.0001, nonzero / 10**6, 0.0001)
    return np.where((p == 0) & keep, fill, p)


def _psi(p: np.ndarray, q: np.ndarray, keep: np.ndarray) -> np.ndarray:
    p, q = _fill_zeroes(p, keep), _fill_zeroes(q, keep)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(keep, (p - q) * np.log(np.where(keep, p, 1.0) / np.where(keep, q, 1.0)), 0.0)
    return np.asarray(terms.sum(axis=1))


def _chisquare(ref: np.ndarray, cur: np.ndarray, nr: np.ndarray, nc: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """scipy's ``chisquare(f_obs=current, f_exp=reference * n_cur / n_ref)`` p-value."""
    from scipy import stats

    expected = ref * (nc / nr)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(keep, (cur - expected) ** 2 / np.where(keep, expected, 1.0), 0.0)
    dof = keep.sum(axis=1) - 1
    return np.asarray(stats.chi2.sf(terms.sum(axis=1), dof))


def _binned_numeric(
    method: str, support: np.ndarray, ref: np.ndarray, cur: np.ndarray, nr: np.ndarray, nc: np.ndarray
) -> np.ndarray:
    """Evidently's ``get_binned_data`` for a numeric column: Sturges bins over both samples when
    the reference has more than 20 distinct values, each value its own bin otherwise."""
    out = np.empty(len(ref))
    for i in range(len(ref)):
        r, c = ref[i], cur[i]
        present = (r > 0) | (c > 0)
        if int((r > 0).sum()) > _BINNED_ABOVE:
            values = support[present]
            edges = _sturges_edges(float(values[0]), float(values[-1]), int(nr[i] + nc[i]))
            p = np.histogram(values, edges, weights=r[present])[0] / nr[i]
            q = np.histogram(values, edges, weights=c[present])[0] / nc[i]
        else:
            p, q = r[present] / nr[i], c[present] / nc[i]
        pp, qq = p[None, :], q[None, :]
        keep = np.ones(pp.shape, dtype=bool)
        out[i] = (_jensenshannon(pp, qq) if method == "jensenshannon" else _psi(pp, qq, keep))[0]
    return out


def _sturges_edges(first: float, last: float, n: int) -> np.ndarray:
    """``np.histogram_bin_edges(values, bins="sturges")`` from the values' range and count."""
    width = (last - first) / (np.log2(n) + 1.0)
    if first == last:
        first, last = first - 0.5, last + 0.5
    bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, bins + 1, endpoint=True)


# --------------------------------------------------------------------------------------------
# The null distribution


def _draw_counts(rows_of: np.ndarray, size: int, draws: int, u: int, rng: np.random.Generator) -> np.ndarray:
    """(draws, u) counts of ``size`` reference rows drawn with replacement; ``rows_of[i]`` is the
    support index of reference row ``i``. Few distinct values: one multinomial per draw."""
    if u <= 64:
        p = np.bincount(rows_of, minlength=u) / len(rows_of)
        return rng.multinomial(size, p, size=draws)
    picks = rows_of[rng.integers(0, len(rows_of), size=(draws, size))]
    picks += (np.arange(draws, dtype=picks.dtype) * u)[:, None]
    return np.bincount(picks.ravel(), minlength=draws * u).reshape(draws, u)


def _chunks(draws: int, cells_per_draw: int) -> Iterator[int]:
    step = max(1, _CELLS_PER_CHUNK // max(cells_per_draw, 1))
    done = 0
    while done < draws:
        yield min(step, draws - done)
        done += step


def null_scores(
    method: str, kind: ColumnKind, reference: pd.Series, n_current: int, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Scores of ``draws`` in-distribution windows: both samples drawn from the reference.

    Each draw is a reference-side sample of :func:`reference_draw_size` rows and an
    ``n_current``-row window, both with replacement from the reference's values, scored by
    :func:`score_counts`.
    For :data:`NEW_VALUE` (a constant reference) the window draws an unseen value with the
    add-one rate ``1 / (n_reference + 1)``: never seen in n rows is not proof it cannot occur.
    """
    ref = reference.dropna()
    n_ref = len(ref)
    if kind == "numerical":
        _, rows_of = np.unique(ref.to_numpy(dtype=np.float64), return_inverse=True)
        support = np.unique(ref.to_numpy(dtype=np.float64))
    else:
        rows_of, uniques = pd.factorize(ref)
        support = np.arange(len(uniques), dtype=np.float64)
    rows_of = rows_of.astype(np.int64)
    u = len(support)
    out = []
    if method == NEW_VALUE:
        # support: the reference's values and one unseen value; the reference side keeps its own.
        counts = np.bincount(rows_of, minlength=u)
        support = np.arange(u + 1, dtype=np.float64)
        ref_row = np.concatenate((counts, [0]))
        cur_p = np.concatenate((counts / (n_ref + 1), [1 / (n_ref + 1)]))
        for rows in _chunks(draws, u + 1):
            cur = rng.multinomial(n_current, cur_p, size=rows)
            out.append(score_counts(method, kind, Counts(support, np.repeat(ref_row[None, :], rows, 0), cur)))
        return np.concatenate(out)
    ref_size = reference_draw_size(n_ref, n_current)
    per_draw = u if u <= 64 else max(u, ref_size + n_current)
    for rows in _chunks(draws, per_draw):
        ref_c = _draw_counts(rows_of, ref_size, rows, u, rng)
        cur_c = _draw_counts(rows_of, n_current, rows, u, rng)
        out.append(score_counts(method, kind, Counts(support, ref_c, cur_c)))
    return np.concatenate(out)


def reference_draw_size(n_reference: int, n_current: int) -> int:
    """Rows of the reference side of a null pair: ``m`` with ``1/m = 1/n_r + 2/sqrt(n_r n_c)``.

    A score is (near enough) a norm of the difference between the two samples' distributions,
    whose spread scales as ``sqrt(1/n_r + 1/n_c)`` for samples drawn afresh on both sides. But
    the reference is drawn once and kept: conditionally on it, a window's score is within
    ``d(window, population) + d(reference, population)`` (triangle inequality), whose quantile
    at a level is the sum of the two quantiles, of scales ``1/sqrt(n_c)`` and ``1/sqrt(n_r)``.
    Drawing ``m`` rows makes the null's scale that sum,
    ``sqrt(1/m + 1/n_c) = 1/sqrt(n_c) + 1/sqrt(n_r)``, so a threshold at level ``a`` keeps a
    column's false-alarm rate at most ``a`` for every reference whose own error is within its
    ``1 - a`` quantile, not only on average over references. It costs little for windows much
    smaller than the reference (7% on the threshold at 100 rows against 20,000) and most where
    the reference's error is half of every score (41% at equal sizes)."""
    nr, nc = max(n_reference, 1), max(n_current, 1)
    return max(1, int(round(1.0 / (1.0 / nr + 2.0 / math.sqrt(nr * nc)))))


def p_value(observed: float, null: np.ndarray, method: str) -> float:
    """Share of null scores at least as extreme as ``observed``, +1 smoothed (1.0 for a score
    that is not a number: e.g. a chi-square over one category, which says nothing)."""
    if not math.isfinite(observed) and not (higher_is_drift(method) and observed == math.inf):
        return 1.0
    if higher_is_drift(method):
        extreme = int(np.count_nonzero(null >= observed))
    else:
        extreme = int(np.count_nonzero(null <= observed))
    return (1 + extreme) / (len(null) + 1)


def threshold_at(null: np.ndarray, level: float, method: str) -> float:
    """The score beyond which the p-value is at most ``level`` (inf / 0 when no score is).

    Distances: drift when ``score >= threshold`` (Evidently's rule); p-value methods: drift
    when ``score < threshold``. Either way the verdict equals ``p_value(score) <= level``.
    """
    k = math.floor(level * (len(null) + 1) + 1e-9) - 1  # extreme null scores allowed
    if k < 0:
        return math.inf if higher_is_drift(method) else 0.0
    if higher_is_drift(method):
        desc = np.sort(null)[::-1]
        return float(np.nextafter(desc[k], math.inf)) if k < len(desc) else -math.inf
    asc = np.sort(null)
    return float(asc[k]) if k < len(asc) else math.inf


def size_bucket(n: int) -> int:
    """The window size a null is drawn for: ``n`` rounded down to a grid of steps of 2**(1/4)
    (about 19%). Rounding down draws a smaller window, whose null is wider: conservative."""
    if n <= 16:
        return max(n, 1)
    k = math.floor(4 * math.log2(n) + 1e-9)
    bucket = int(round(2 ** (k / 4)))
    return bucket if bucket <= n else int(round(2 ** ((k - 1) / 4)))


def draws_for(columns: int, alpha: float, configured: int) -> int:
    """Null draws: at least ``configured``, and enough that Holm over ``columns`` tests can reject
    at ``alpha`` at all (the smallest p-value, 1 / (draws + 1), must be below alpha / columns)."""
    return max(configured, math.ceil(2 * max(columns, 1) / alpha))
