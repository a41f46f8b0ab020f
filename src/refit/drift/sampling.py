"""Bounded, seeded samples of a frame, stratified by time buckets, quantile bins or values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from refit.config import DriftConfig
from refit.errors import DataError

#: Strata of a datetime ``stratify_by`` column: equal-width buckets over the frame's span.
TIME_BUCKETS = 24
#: Strata of a numeric, non-datetime ``stratify_by`` column: quantile bins.
NUMERIC_STRATA = 10
#: Mixed into the sampling seed. Without it ``default_rng([seed, 0])`` would replay the
#: stream of a data generator seeded ``[seed, 0, 0]`` (numpy pads entropy with zeros), and a
#: sample of rows with the smallest keys would pick rows by the value that stream drew.
_SAMPLING_TAG = 0x64726966


def _strata_codes(values: pd.Series) -> np.ndarray:
    """Integer stratum per row: time buckets, quantile bins, or the values themselves."""
    if pd.api.types.is_datetime64_any_dtype(values):
        ns = values.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        missing = values.isna().to_numpy()
        if missing.all():
            return np.zeros(len(values), dtype=np.int64)
        lo, hi = ns[~missing].min(), ns[~missing].max()
        width = max((hi - lo) / TIME_BUCKETS, 1.0)
        codes = np.minimum(((ns - lo) / width).astype(np.int64), TIME_BUCKETS - 1)
        return np.where(missing, TIME_BUCKETS, codes)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique(dropna=True) > NUMERIC_STRATA:
        binned = pd.qcut(values, NUMERIC_STRATA, labels=False, duplicates="drop")
        return np.asarray(binned.fillna(-1), dtype=np.int64) + 1
    codes, _ = pd.factorize(values, use_na_sentinel=False)
    return np.asarray(codes, dtype=np.int64)


def stratified_sample_positions(
    n_rows: int, size: int, rng: np.random.Generator, strata: np.ndarray | None = None
) -> np.ndarray:
    """Sorted row positions of a sample of ``size`` rows (all rows when there are fewer).

    Each stratum gets its proportional share (largest remainders round it to exactly
    ``size``); rows inside a stratum are drawn uniformly without replacement.
    """
    if size >= n_rows:
        return np.arange(n_rows)
    if strata is None:  # one stratum: Floyd's draw of ``size`` rows, no sort of every row's key
        return np.sort(rng.choice(n_rows, size=size, replace=False, shuffle=False))
    codes = strata
    _, codes = np.unique(codes, return_inverse=True)
    counts = np.bincount(codes)
    quota = counts * (size / n_rows)
    take = np.floor(quota).astype(np.int64)
    short = size - int(take.sum())
    if short > 0:
        # Stable order: the largest fractional parts first, ties by stratum.
        take[np.argsort(-(quota - take), kind="stable")[:short]] += 1
    # Random keys in [code, code + 1): one argsort groups by stratum and shuffles inside.
    order = np.argsort(codes + rng.random(n_rows), kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    sorted_codes = codes[order]
    rank = np.arange(n_rows) - starts[sorted_codes]
    return np.sort(order[rank < take[sorted_codes]])


def _rng(seed: int, role: int) -> np.random.Generator:
    return np.random.default_rng([_SAMPLING_TAG, seed, role])


def _sample(frame: pd.DataFrame, columns: Sequence[str], cfg: DriftConfig, rng: np.random.Generator) -> pd.DataFrame:
    """The sampled rows of ``columns`` only (the rest of a wide frame is never copied)."""
    strata = None
    if cfg.stratify_by is not None and len(frame) > cfg.sample_size:
        if cfg.stratify_by not in frame.columns:
            raise DataError(f"stratify_by column {cfg.stratify_by!r} is not in the frame")
        strata = _strata_codes(frame[cfg.stratify_by])
    positions = stratified_sample_positions(len(frame), cfg.sample_size, rng, strata)
    if len(positions) == len(frame):
        return pd.DataFrame({c: frame[c] for c in columns})
    return pd.DataFrame({c: frame[c].take(positions) for c in columns})
