"""Parquet and CSV on top of the store. Parse errors become one-line DataErrors."""

from __future__ import annotations

import csv
import io

import pandas as pd

from refit.errors import DataError, first_line
from refit.io.base import Store

FORMATS = (".parquet", ".csv")


def frame_format(key: str) -> str:
    for ext in FORMATS:
        if key.endswith(ext):
            return ext[1:]
    raise DataError(f"{key}: unsupported file type (expected one of {', '.join(FORMATS)})")


def parse_frame(data: bytes, name: str) -> pd.DataFrame:
    """Parse parquet or CSV bytes; ``name`` (a key or URI) is used for the format and errors."""
    fmt = frame_format(name)
    if not data:
        raise DataError(f"{name}: file is empty")
    try:
        if fmt == "parquet":
            return _parquet_frame(data)
        # engine="c" with strict quoting: a broken quote is an error, not a silently merged row.
        df = pd.read_csv(io.BytesIO(data), quoting=csv.QUOTE_MINIMAL, doublequote=True, on_bad_lines="error")
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: file is empty (no columns)") from None
    except Exception as exc:  # pyarrow / parser errors carry long messages: keep the first line
        raise DataError(f"{name}: cannot parse {fmt}: {first_line(exc)}") from None
    if not isinstance(df.index, pd.RangeIndex):
        # pandas turns the first column into the index when every row has one field more than
        # the header: the columns would silently shift by one.
        raise DataError(f"{name}: cannot parse csv: rows have more fields than the header")
    return df


def _parquet_frame(data: bytes) -> pd.DataFrame:
    """``pd.read_parquet``'s frame, built with at most one column in two copies at a time.

    pandas' own path keeps the whole Arrow table alive until the frame is built, and Arrow's
    allocator keeps the freed pages: 2x the frame's size for good. Here each Arrow column is
    released as it is converted, and the pool returns what it no longer uses.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data), use_pandas_metadata=True)
    try:
        return table.to_pandas(self_destruct=True, split_blocks=True)
    finally:
        del table
        release_arrow_memory()


def release_arrow_memory() -> None:
    """Give Arrow's freed pages back to the system. Its allocator keeps them otherwise: after
    writing a 10M-row frame, a gigabyte that nothing uses stays in the process. Frames read
    from parquet keep their numeric columns in Arrow's memory (no copy), so a step that drops
    such frames calls this too."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def read_frame(store: Store, key: str) -> pd.DataFrame:
    return parse_frame(store.get_bytes(key), store.uri_for(key))


def frame_bytes(df: pd.DataFrame, key: str) -> bytes:
    fmt = frame_format(key)
    buf = io.BytesIO()
    if fmt == "parquet":
        try:
            df.to_parquet(buf, index=False)
        finally:
            release_arrow_memory()
    else:
        df.to_csv(buf, index=False)
    return buf.getvalue()


def write_frame(store: Store, key: str, df: pd.DataFrame) -> str:
    """Write a frame atomically; returns the URI."""
    store.put_bytes(key, frame_bytes(df, key))
    return store.uri_for(key)
