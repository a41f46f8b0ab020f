"""Many small parquet files written and read in one pass: the same files and frames as one
:func:`write_frame` / :func:`read_frame` per file (a week of hourly capture partitions is 168)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refit.errors import DataError
from refit.io import LocalStore
from refit.io.frames import read_frame, read_frames, write_frame, write_partitions


def _rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(7)],
            "at": pd.to_datetime(
                [
                    "2026-03-01 23:10",
                    "2026-03-02 00:10",
                    None,
                    "2026-03-01 23:50",
                    "2026-03-02 05:00",
                    "2026-03-01 23:00",
                    "2026-03-02 05:30",
                ],
                utc=True,
            ),  # fmt: skip
            "x": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0],
            "s": ["a", None, "c", "d", None, "f", None],  # all missing in one file: a null column there
            "n": [1, 2, 3, 4, 5, 6, 7],
            "b": [True, False, True, False, True, True, False],
        },
        index=[10, 11, 12, 13, 14, 15, 16],  # not a RangeIndex: never written
    )


def test_write_partitions_writes_each_group_as_write_frame_would(tmp_path: Path) -> None:
    store, rows = LocalStore(tmp_path), _rows()
    names = ["b.parquet", "c.parquet", None, "b.parquet", "a.parquet", "b.parquet", "a.parquet"]
    keys = pd.Series(names, index=rows.index)
    uris = write_partitions(store, rows, keys)
    assert uris == [store.uri_for(k) for k in ("a.parquet", "b.parquet", "c.parquet")]  # the missing key: not written
    for key in ("a", "b", "c"):
        write_frame(store, f"one/{key}.parquet", rows[keys == f"{key}.parquet"].reset_index(drop=True))
        pd.testing.assert_frame_equal(read_frame(store, f"{key}.parquet"), read_frame(store, f"one/{key}.parquet"))
    assert read_frame(store, "b.parquet")["request_id"].tolist() == ["r0", "r3", "r5"]  # in the frame's order


def test_read_frames_is_the_concat_of_each_file(tmp_path: Path) -> None:
    store, rows = LocalStore(tmp_path), _rows()
    keys = pd.Series([f"p{i % 3}.parquet" for i in range(len(rows))], index=rows.index)
    write_partitions(store, rows, keys)
    write_frame(store, "p3.parquet", rows.reset_index(drop=True).assign(n=0.5))  # float where the others hold ints
    names = ["p0.parquet", "p3.parquet", "p1.parquet", "p2.parquet"]
    frame, lengths = read_frames(store, names)
    expected = [read_frame(store, k) for k in names]
    pd.testing.assert_frame_equal(frame, pd.concat(expected, ignore_index=True))
    assert lengths == [len(f) for f in expected] == [3, 7, 2, 2]


def test_a_corrupt_file_among_many_is_named(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    write_frame(store, "good.parquet", _rows().reset_index(drop=True))
    store.put_bytes("bad.parquet", b"not parquet at all")
    with pytest.raises(DataError, match=r"bad.parquet: cannot parse parquet"):
        read_frames(store, ["good.parquet", "bad.parquet"])
