"""Rows/s of ``validate_frame`` (the schema check with quarantine) against hand-written pandas
checks of the same rules, on the same demo rows.

The baseline is what one writes without pandera: coerce each column to its dtype, then one
boolean mask per rule (``isin``, ranges, nulls, uniqueness, "not in the future", strings are
strings), OR-ed into the rows to quarantine, each quarantined row with its reasons.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

REPEATS = 5
#: Share of rows spoiled for the "with faults" measurement (each breaks one rule).
FAULT_SHARE = 0.001


def _best_of(fn: Any, repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def pandas_checks(df: pd.DataFrame, source: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The churn training contract by hand: (valid rows coerced, quarantined rows with reasons).

    Long on purpose: the baseline is the contract written out check by check, as one would by
    hand in pandas; split up, it would no longer show what refit's validation is measured against.
    """
    from schemas.base import FUTURE_TOLERANCE
    from schemas.churn import CHANNELS, PLANS, REGIONS

    out: dict[str, pd.Series] = {}
    bad: dict[str, Any] = {}

    def number(col: str, dtype: str, lo: float | None, hi: float | None, nullable: bool = False) -> None:
        raw = df[col]
        values = raw if raw.dtype == dtype else pd.to_numeric(raw, errors="coerce")
        nulls = values.isna()
        if values is not raw:
            bad[f"{col}: coerce_dtype('{dtype}')"] = failed = nulls & raw.notna()
            nulls = nulls & ~failed
        if not nullable:
            bad[f"{col}: not_nullable"] = nulls
        if lo is not None:
            bad[f"{col}: >=({lo})"] = values < lo
        if hi is not None:
            bad[f"{col}: <=({hi})"] = values > hi
        out[col] = values

    def category(col: str, allowed: list[str]) -> None:
        values = df[col]
        if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string":
            is_str = pd.Series(True, index=values.index)
        else:
            is_str = values.map(lambda v: isinstance(v, str)).astype(bool)
        bad[f"{col}: dtype('str')"] = ~is_str
        bad[f"{col}: isin"] = ~values.isin(allowed) & is_str
        out[col] = values

    number("customer_id", "int64", 0, None)
    bad["customer_id: field_uniqueness"] = df["customer_id"].duplicated(keep="first")
    ts = df["event_time"]
    if str(ts.dtype) != "datetime64[ns, UTC]":
        ts = pd.to_datetime(ts, utc=True, errors="coerce").astype("datetime64[ns, UTC]")
    bad["event_time: not_nullable"] = ts.isna()
    bad["event_time: not_in_future"] = ts > pd.Timestamp.now(tz="UTC") + FUTURE_TOLERANCE
    out["event_time"] = ts
    category("region", REGIONS)
    category("plan", PLANS)
    category("channel", CHANNELS)
    number("age", "float64", 18, 100, nullable=True)
    number("tenure_months", "int64", 0, 240)
    number("monthly_charges", "float64", 0, 2000)
    number("total_charges", "float64", 0, 500_000, nullable=True)
    number("support_tickets", "int64", 0, 100)
    number("days_since_last_login", "int64", 0, 3650)
    number("sessions_per_week", "float64", 0, 500, nullable=True)
    number("num_devices", "int64", 1, 20)
    number("payment_failures", "int64", 0, 50)
    number("discount_pct", "float64", 0, 1)
    bad["autopay: dtype('bool')"] = ~df["autopay"].isin([True, False])
    out["autopay"] = df["autopay"]
    number("churned", "int64", None, None)
    bad["churned: isin"] = ~df["churned"].isin([0, 1])

    masks = {rule: np.asarray(mask, dtype=bool) for rule, mask in bad.items()}
    any_bad = np.logical_or.reduce(list(masks.values()))
    valid = pd.DataFrame(out, copy=False)[list(df.columns)]
    if not any_bad.any():
        return valid, df.iloc[0:0]
    rows = np.flatnonzero(any_bad)
    reasons: dict[int, list[str]] = {int(r): [] for r in rows}
    for rule, mask in masks.items():
        for r in np.flatnonzero(mask):
            reasons[int(r)].append(rule)
    quarantine = df.iloc[rows].assign(
        _refit_source=source.iloc[rows].to_numpy(), _refit_errors=["; ".join(reasons[int(r)]) for r in rows]
    )
    valid = valid.iloc[np.flatnonzero(~any_bad)].reset_index(drop=True)
    ints = [
        c
        for c in (
            "customer_id",
            "tenure_months",
            "support_tickets",
            "days_since_last_login",
            "num_devices",
            "payment_failures",
            "churned",
        )
        if valid[c].dtype != "int64"
    ]
    return valid.astype(dict.fromkeys(ints, "int64")) if ints else valid, quarantine


def spoil(df: pd.DataFrame, share: float, seed: int = 3) -> tuple[pd.DataFrame, int]:
    """A copy with ``share`` of the rows each breaking one rule (range, isin, null, future)."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    rows = rng.choice(len(df), size=max(4, int(len(df) * share)), replace=False)
    quarter = np.array_split(rows, 4)
    out.loc[quarter[0], "monthly_charges"] = -1.0
    out["region"] = out["region"].astype(object)
    out.loc[quarter[1], "region"] = "atlantis"
    out.loc[quarter[2], "discount_pct"] = np.nan
    out.loc[quarter[3], "event_time"] = pd.Timestamp("2099-01-01", tz="UTC")
    return out, len(rows)


def run(rows: int = 1_000_000, repeats: int = REPEATS) -> dict[str, Any]:
    from refit.datasets import generate_base
    from refit.validation import validate_frame
    from schemas.churn import ChurnTrainingSchema

    df = generate_base(rows, seed=0)
    source = pd.Series(["file:///bench/datasets/churn/base/part-00000.parquet"] * rows)

    def refit_check(frame: pd.DataFrame) -> Any:
        return validate_frame(frame, ChurnTrainingSchema, source=source, max_invalid_fraction=0.01)

    def hand_check(frame: pd.DataFrame) -> Any:
        return pandas_checks(frame, source)

    refit_s, result = _best_of(lambda: refit_check(df), repeats)
    pandas_s, (valid, quarantine) = _best_of(lambda: hand_check(df), repeats)
    agree_clean = result.summary.invalid_rows == len(quarantine) == 0 and len(valid) == len(result.valid)
    pd.testing.assert_frame_equal(valid, result.valid)  # same rows, same dtypes, same values

    dirty, n_bad = spoil(df, FAULT_SHARE)
    dirty_refit_s, dirty_result = _best_of(lambda: refit_check(dirty), 1)
    dirty_pandas_s, (_, dirty_quarantine) = _best_of(lambda: hand_check(dirty), 1)
    agree_dirty = dirty_result.summary.invalid_rows == len(dirty_quarantine) == n_bad

    schema = ChurnTrainingSchema.to_schema()
    pandera_s, _ = _best_of(lambda: schema.validate(df, lazy=True), 2)
    return {
        "rows": rows,
        "repeats": repeats,
        "validate_frame_s": round(refit_s, 4),
        "pandas_checks_s": round(pandas_s, 4),
        "validate_frame_rows_per_s": rows / refit_s,
        "pandas_checks_rows_per_s": rows / pandas_s,
        "pandera_validate_only_s": round(pandera_s, 4),
        "same_verdict_clean": bool(agree_clean),
        "with_faults": {
            "bad_rows": n_bad,
            "validate_frame_s": round(dirty_refit_s, 4),
            "pandas_checks_s": round(dirty_pandas_s, 4),
            "validate_frame_rows_per_s": rows / dirty_refit_s,
            "same_quarantine_count": bool(agree_dirty),
            "quarantined": dirty_result.summary.invalid_rows,
        },
    }
