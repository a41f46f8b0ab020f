"""Deterministic train/validation/test splits.

The default split hashes the id column: a row's split depends only on its id and the salt,
so it keeps its split when new rows are appended (no leakage of old test rows into training
on the next retrain). A time-based split is the alternative for forecasting-like problems.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
import pandas as pd

TRAIN, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VALIDATION: "validation", TEST: "test"}

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads any bit change across all 64 bits."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return np.asarray(x ^ (x >> np.uint64(31)))


def unit_hash(ids: pd.Series, salt: str) -> np.ndarray:
    """A uniform value in [0, 1) per id, stable across runs, machines and row order."""
    salt_int = np.uint64(int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "little"))
    hashed = pd.util.hash_pandas_object(ids, index=False).to_numpy(dtype=np.uint64)
    mixed = _mix64(hashed ^ salt_int)
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def hash_split(ids: pd.Series, validation_fraction: float, test_fraction: float, salt: str = "refit") -> np.ndarray:
    """Split code per row (0 train, 1 validation, 2 test) from a hash of the id."""
    u = unit_hash(ids, salt)
    out = np.full(len(u), TRAIN, dtype=np.uint8)
    out[u < test_fraction + validation_fraction] = VALIDATION
    out[u < test_fraction] = TEST
    return out


def time_split(timestamps: pd.Series, validation_fraction: float, test_fraction: float) -> np.ndarray:
    """Oldest rows train, then validation, newest rows test (cut at time quantiles)."""
    ts = pd.to_datetime(timestamps, utc=True).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    test_cut = np.quantile(ts, 1.0 - test_fraction)
    val_cut = np.quantile(ts, 1.0 - test_fraction - validation_fraction)
    out = np.full(len(ts), TRAIN, dtype=np.uint8)
    out[ts >= val_cut] = VALIDATION
    out[ts >= test_cut] = TEST
    return out


def assign_splits(
    df: pd.DataFrame,
    *,
    method: Literal["hash", "time"],
    id_column: str,
    timestamp_column: str,
    validation_fraction: float,
    test_fraction: float,
    salt: str = "refit",
) -> np.ndarray:
    if method == "hash":
        return hash_split(df[id_column], validation_fraction, test_fraction, salt)
    return time_split(df[timestamp_column], validation_fraction, test_fraction)


def split_part(df: pd.DataFrame, codes: np.ndarray, code: int) -> pd.DataFrame:
    """The rows of one split, in their original order, with a fresh index."""
    part = df.take(np.flatnonzero(codes == code))
    part.index = pd.RangeIndex(len(part))  # (``reset_index`` would copy every column once more)
    return part


def split_frame(df: pd.DataFrame, codes: np.ndarray) -> dict[str, pd.DataFrame]:
    """``{"train": ..., "validation": ..., "test": ...}`` with fresh indexes."""
    return {name: split_part(df, codes, code) for code, name in SPLIT_NAMES.items()}
