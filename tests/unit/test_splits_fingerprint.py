"""Splits are stable as data grows; fingerprints change exactly when the data does."""

from __future__ import annotations

import numpy as np
import pandas as pd

from refit.fingerprint import fingerprint_frame
from refit.splits import TEST, TRAIN, VALIDATION, assign_splits, hash_split, split_frame, time_split
from tests.factories import churn_rows


def test_hash_split_fractions_and_determinism() -> None:
    ids = pd.Series(np.arange(100_000, dtype=np.int64))
    codes = hash_split(ids, 0.15, 0.15, salt="s")
    shares = np.bincount(codes, minlength=3) / len(codes)
    assert abs(shares[TRAIN] - 0.70) < 0.01
    assert abs(shares[VALIDATION] - 0.15) < 0.01
    assert abs(shares[TEST] - 0.15) < 0.01
    assert np.array_equal(codes, hash_split(ids, 0.15, 0.15, salt="s"))


def test_row_keeps_its_split_when_rows_are_appended_or_reordered() -> None:
    old = pd.Series(np.arange(5_000, dtype=np.int64))
    grown = pd.Series(np.concatenate([np.arange(5_000, 8_000), np.arange(5_000)]).astype(np.int64))
    before = hash_split(old, 0.2, 0.2)
    after = hash_split(grown, 0.2, 0.2)
    assert np.array_equal(after[3_000:], before)


def test_salt_reshuffles_and_string_ids_work() -> None:
    ids = pd.Series([f"cust-{i}" for i in range(10_000)])
    a, b = hash_split(ids, 0.2, 0.2, salt="a"), hash_split(ids, 0.2, 0.2, salt="b")
    assert (a != b).mean() > 0.3
    int_ids = pd.Series(np.arange(10_000, dtype=np.int64))
    assert (hash_split(int_ids, 0.2, 0.2, salt="a") != hash_split(int_ids, 0.2, 0.2, salt="b")).mean() > 0.3


def test_time_split_puts_newest_rows_in_test() -> None:
    ts = pd.Series(pd.date_range("2026-01-01", periods=1000, freq="h", tz="UTC"))
    codes = time_split(ts, 0.1, 0.2)
    assert (codes[-200:] == TEST).all() and (codes[-300:-200] == VALIDATION).all() and (codes[:700] == TRAIN).all()


def test_split_frame_partitions_rows() -> None:
    df = churn_rows(500)
    codes = assign_splits(
        df,
        method="hash",
        id_column="customer_id",
        timestamp_column="event_time",
        validation_fraction=0.2,
        test_fraction=0.2,
        salt="x",
    )
    parts = split_frame(df, codes)
    assert sum(len(p) for p in parts.values()) == 500
    ids = [set(p["customer_id"]) for p in parts.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])


def test_fingerprint_sensitivity() -> None:
    df = churn_rows(300)
    fp = fingerprint_frame(df)
    assert fp.rows == 300 and fp.columns == df.shape[1] and len(fp.sha256) == 64
    assert fingerprint_frame(df[list(reversed(df.columns))]) == fp  # column order is not content
    assert fingerprint_frame(df.copy()) == fp
    changed = df.copy()
    changed.loc[17, "monthly_charges"] += 0.01
    assert fingerprint_frame(changed).sha256 != fp.sha256
    assert fingerprint_frame(df.iloc[::-1]).sha256 != fp.sha256  # row order is part of the data read
    assert fingerprint_frame(df.astype({"tenure_months": "float64"})).sha256 != fp.sha256
    assert fingerprint_frame(df.iloc[:299]).rows == 299


def test_row_hashes_equal_pandas_whole_frame_hash() -> None:
    """The column-at-a-time hash (no copy of the frame) gives exactly pandas' frame hash."""
    from refit.datasets import generate_base
    from refit.fingerprint import row_hashes

    df = generate_base(2000, seed=3)
    df.loc[::7, "age"] = np.nan
    df["segment"] = pd.Categorical(df["region"])
    df["note"] = pd.array([None if i % 5 == 0 else f"n{i}" for i in range(len(df))], dtype="string")
    cols = sorted(df.columns)
    expected = pd.util.hash_pandas_object(df[cols], index=False).to_numpy(dtype=np.uint64)
    np.testing.assert_array_equal(row_hashes(df, cols), expected)
    np.testing.assert_array_equal(row_hashes(df, ["age"]), pd.util.hash_pandas_object(df[["age"]], index=False))
