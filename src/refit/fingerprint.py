"""Fingerprints of datasets: sha256 over a canonical serialisation, with row counts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class DatasetFingerprint:
    sha256: str
    rows: int
    columns: int

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)

    @property
    def short(self) -> str:
        return self.sha256[:12]


def fingerprint_frame(df: pd.DataFrame) -> DatasetFingerprint:
    """sha256 of (sorted column names and dtypes, then a 64-bit hash of every row, in row order).

    Column order does not matter; values, dtypes and row order do. Vectorised: 1M rows in
    well under a second.
    """
    cols = sorted(map(str, df.columns))
    digest = hashlib.sha256()
    digest.update(json.dumps([[c, str(df[c].dtype)] for c in cols]).encode())
    digest.update(len(df).to_bytes(8, "little"))
    if len(df) and cols:
        rows = pd.util.hash_pandas_object(df[cols], index=False).to_numpy(dtype=np.uint64)
        digest.update(rows.tobytes())
    return DatasetFingerprint(sha256=digest.hexdigest(), rows=len(df), columns=len(cols))


def fingerprint_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
