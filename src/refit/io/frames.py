"""Parquet and CSV on top of the store. Parse errors become one-line DataErrors."""

from __future__ import annotations

import csv
import io
from collections.abc import Collection

import pandas as pd

from refit.errors import DataError, first_line
from refit.io.base import Store

FORMATS = (".parquet", ".csv")


def frame_format(key: str) -> str:
    for ext in FORMATS:
        if key.endswith(ext):
            return ext[1:]
    raise DataError(f"{key}: unsupported file type (expected one of {', '.join(FORMATS)})")


def parse_frame(data: bytes, name: str, text_columns: Collection[str] = ()) -> pd.DataFrame:
    """Parse parquet or CSV bytes; ``name`` (a key or URI) is used for the format and errors.

    A CSV's ``text_columns`` (those a schema declares as strings) are read as written, with no
    type guessing: ``02134`` stays ``02134``. An empty field, and pandas' other missing-value
    markers (``NA``, ``null``, ``N/A``, ...), are missing in every column.
    """
    fmt = frame_format(name)
    if not data:
        raise DataError(f"{name}: file is empty")
    try:
        if fmt == "parquet":
            return _parquet_frame(data)
        # engine="c" with strict quoting: a broken quote is an error, not a silently merged row.
        df = pd.read_csv(
            io.BytesIO(data),
            quoting=csv.QUOTE_MINIMAL,
            doublequote=True,
            on_bad_lines="error",
            dtype=dict.fromkeys(text_columns, str) or None,
        )
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


def read_frame(store: Store, key: str, text_columns: Collection[str] = ()) -> pd.DataFrame:
    return parse_frame(store.get_bytes(key), store.uri_for(key), text_columns)


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


def read_frames(store: Store, keys: list[str]) -> tuple[pd.DataFrame, list[int]]:
    """Many files as one frame (``pd.concat`` of :func:`read_frame` of each), and each file's
    row count. Parquet files are concatenated as Arrow tables and converted to pandas once: a
    frame per file costs more than reading it when files are small (a week of hourly capture
    partitions is 168 files). Files whose columns Arrow cannot unify go pandas' way."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not keys or not all(k.endswith(".parquet") for k in keys):
        frames = [read_frame(store, k) for k in keys]
        return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), [len(f) for f in frames]
    tables = []
    for key in keys:
        data = store.get_bytes(key)
        try:
            tables.append(pq.read_table(io.BytesIO(data), use_pandas_metadata=True))
        except Exception:  # noqa: BLE001 - parse_frame says what is wrong with it, in one line
            parse_frame(data, store.uri_for(key))
            raise
    lengths = [t.num_rows for t in tables]
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        frames = [t.to_pandas(split_blocks=True) for t in tables]
        del tables
        release_arrow_memory()
        return pd.concat(frames, ignore_index=True), lengths
    del tables
    try:
        return table.to_pandas(self_destruct=True, split_blocks=True), lengths
    finally:
        del table
        release_arrow_memory()


def write_partitions(store: Store, frame: pd.DataFrame, keys: pd.Series) -> list[str]:
    """``frame``'s rows into files by ``keys`` (one key per row; rows whose key is missing are
    not written), each file as :func:`write_frame` would write its rows; returns the URIs in
    key order. Parquet rows are converted to Arrow once, not once per file."""
    import numpy as np

    codes, uniques = pd.factorize(keys, sort=True)
    present = codes >= 0
    if not present.any():
        return []
    if not all(str(k).endswith(".parquet") for k in uniques):
        return [write_frame(store, k, frame[codes == i].reset_index(drop=True)) for i, k in enumerate(uniques)]
    import pyarrow as pa
    import pyarrow.parquet as pq

    order = np.argsort(codes, kind="stable")[np.count_nonzero(~present) :]
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    try:
        table = pa.Table.from_pandas(frame.iloc[order], preserve_index=False)
        uris = []
        for i, key in enumerate(uniques):
            buf = io.BytesIO()
            pq.write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]), buf, compression="snappy")
            store.put_bytes(key, buf.getvalue())
            uris.append(store.uri_for(key))
        return uris
    finally:
        release_arrow_memory()


def write_frame(store: Store, key: str, df: pd.DataFrame) -> str:
    """Write a frame atomically; returns the URI."""
    store.put_bytes(key, frame_bytes(df, key))
    return store.uri_for(key)
