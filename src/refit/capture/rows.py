"""The capture writer's rows: checking what a caller passes, and queueing it column by column."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from refit.timestamps import NOT_NUMBERS, read_times, text_refusal, utc_timestamp

_UTC = "datetime64[ns, UTC]"


class Buffer:
    """Rows buffered column by column.

    A frame per ``log`` call and one ``pd.concat`` at flush costs ~0.3 ms per call, all of it
    on the request that triggers the flush (seconds for 10k single-row calls); concatenating
    numpy columns costs microseconds. Columns that are not plain numpy (extension dtypes), or
    calls whose columns differ, fall back to pandas' concat.
    """

    def __init__(self) -> None:
        self.chunks: list[dict[str, Any]] = []
        self.rows = 0

    def append(self, chunk: dict[str, Any], rows: int) -> None:
        self.chunks.append(chunk)
        self.rows += rows

    def frame(self, utc_columns: tuple[str, ...]) -> pd.DataFrame:
        names = list(self.chunks[0])
        if any(list(chunk) != names for chunk in self.chunks):
            frames = [pd.DataFrame(_columns(chunk, utc_columns)) for chunk in self.chunks]
            return pd.concat(frames, ignore_index=True)
        merged: dict[str, Any] = {}
        for name in names:
            parts = [chunk[name] for chunk in self.chunks]
            if all(isinstance(p, np.ndarray) for p in parts):
                merged[name] = np.concatenate(parts)
            else:
                merged[name] = pd.concat([pd.Series(p, copy=False) for p in parts], ignore_index=True)
        return pd.DataFrame(_columns(merged, utc_columns))


def _columns(chunk: dict[str, Any], utc_columns: tuple[str, ...]) -> dict[str, Any]:
    """Timestamps are buffered as naive UTC datetime64[ns]; give them back their zone."""
    return {k: pd.DatetimeIndex(v).tz_localize("UTC") if k in utc_columns else v for k, v in chunk.items()}


def column_values(values: Any) -> Any:
    """A private copy of one column (the caller may reuse its frame after ``log`` returns)."""
    if isinstance(values, pd.Series):
        if isinstance(values.dtype, np.dtype):
            return values.to_numpy(copy=True)
        return values.array.copy()
    return np.array(values, copy=True)


#: What ``pd.api.types.infer_dtype`` calls an object column Arrow cannot store as one type.
_MIXED = frozenset({"mixed", "mixed-integer"})


def arrow_safe(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` with each object column whose values mix types (an ``age`` of ints and one
    ``"38"``, a flag of booleans and ``"maybe"``) written as text, and those columns' names.

    Parquet holds one type per column: such a column failed the whole batch, every caller's rows
    in it dropped for one value. As text every value is kept as it came; reading the captures
    back, validation coerces each losslessly or quarantines its row with the rule, as it does
    any capture. Missing values stay missing.
    """
    mixed = [
        name
        for name in frame.columns
        if frame[name].dtype == object
        and pd.api.types.infer_dtype(frame[name], skipna=True) in _MIXED
        and not _arrow_takes(frame[name])  # lists, dicts and arrays are "mixed" too, and Arrow nests them
    ]
    if not mixed:
        return frame, []
    out = frame.copy(deep=False)
    for name in mixed:
        out[name] = frame[name].map(lambda v: None if pd.api.types.is_scalar(v) and pd.isna(v) else str(v))
    return out, [str(name) for name in mixed]


def _arrow_takes(column: pd.Series) -> bool:
    """Whether Arrow writes ``column`` as one type (it refuses ints beside strings, say)."""
    import pyarrow as pa

    try:
        pa.array(column, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False
    return True


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def checked_ids(values: Any, n: int | None, name: str) -> np.ndarray:
    """Ids as strings (plain Python: pandas costs ~0.4 ms per call here, on the serving path)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ValueError(f"{name} must be a sequence of ids, got {type(values).__name__}")
    items = values.tolist() if isinstance(values, (pd.Series, pd.Index, np.ndarray)) else list(values)
    if n is not None and len(items) != n:
        raise ValueError(f"{name} must have one id per row ({n}), got {len(items)}")
    ids = np.empty(len(items), dtype=object)
    for i, value in enumerate(items):
        if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
            raise ValueError(f"{name} must not contain missing ids")
        ids[i] = value if isinstance(value, str) else str(value)
        if not ids[i]:
            raise ValueError(f"{name} must not contain empty ids")
    return ids


def utc_times(values: Any, n: int, name: str, clock: Callable[[], float]) -> np.ndarray:
    """Naive-UTC datetime64[ns] values (the zone goes back on at flush)."""
    if values is None:
        now = pd.Timestamp(clock(), unit="s", tz="UTC")
        return np.full(n, now.tz_localize(None).as_unit("ns").to_datetime64())
    scalar = pd.api.types.is_scalar(values)
    if not scalar and not isinstance(values, (pd.Series, pd.Index, np.ndarray)):
        values = pd.Series(list(values))
    if isinstance(values, (int, float, np.number)) if scalar else pd.api.types.is_numeric_dtype(values.dtype):
        raise ValueError(f"{name} must be {NOT_NUMBERS}")
    # text as validation reads it (refit.timestamps): ISO 8601 only; pandas would guess
    # 01/02/2026 month-first, and read a naive time in the offset of the first zoned one
    if scalar and isinstance(values, str):
        refused = text_refusal(values, _UTC)
        if refused is not None:
            raise ValueError(f"{name}: {values!r} is refused ({refused.split(': ', 1)[1]})")
    elif (
        not scalar
        and pd.api.types.is_string_dtype(values.dtype)
        and pd.api.types.infer_dtype(values, skipna=True) == "string"
    ):
        texts = pd.Series(values)
        read, refusals = read_times(texts, pd.DatetimeTZDtype("ns", "UTC"), _UTC)
        for mask, reason in refusals:
            raise ValueError(f"{name}: {texts[mask].iloc[0]!r} is refused ({reason.split(': ', 1)[1]})")
        values = read.reset_index(drop=True)
    try:
        if scalar:
            stamp = utc_timestamp(values)
            parsed = pd.DatetimeIndex([stamp] * n)
        else:
            parsed = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: cannot read as datetimes ({one_line(exc)})") from None
    if len(parsed) != n:
        raise ValueError(f"{name} must have one value per row ({n}), got {len(parsed)}")
    if parsed.isna().any():
        raise ValueError(f"{name} must not contain missing values")
    return np.asarray(parsed.tz_convert("UTC").tz_localize(None).as_unit("ns").to_numpy())


def sampled(ids: np.ndarray, rate: float, key: bytes) -> np.ndarray | None:
    """Which ids are kept (None: all). The same id gets the same answer in every writer."""
    if rate >= 1.0:
        return None
    threshold = rate * 2.0**64
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8, key=key).digest(), "big") < threshold for i in ids),
        dtype=bool,
        count=len(ids),
    )
