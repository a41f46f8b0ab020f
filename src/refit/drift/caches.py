"""What checks keep between them: null distributions (per champion and window size) and the
reference side of checks against one reference frame."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd

from refit.io.base import Store
from refit.io.layout import LAYOUT


class NullCache(Protocol):
    """Where null distributions are kept between checks (per champion, by window size bucket)."""

    def get(self, bucket: int, key: str) -> np.ndarray | None: ...

    def put(self, bucket: int, key: str, null: np.ndarray) -> None: ...

    def flush(self) -> None: ...


class MemoryNullCache:
    """Nulls kept in this process only (tests, benchmarks, notebooks)."""

    def __init__(self) -> None:
        self._nulls: dict[tuple[int, str], np.ndarray] = {}

    def get(self, bucket: int, key: str) -> np.ndarray | None:
        return self._nulls.get((bucket, key))

    def put(self, bucket: int, key: str, null: np.ndarray) -> None:
        self._nulls[(bucket, key)] = null

    def flush(self) -> None:
        return None


class StoreNullCache:
    """Nulls of one champion version in the store (``LAYOUT.drift_calibration``), one file per size
    bucket: computed on the first check that needs them, read by every later one."""

    def __init__(self, store: Store, model: str, version: int) -> None:
        self.store, self.model, self.version = store, model, version
        self._loaded: dict[int, dict[str, np.ndarray]] = {}
        self._dirty: set[int] = set()

    def _bucket(self, bucket: int) -> dict[str, np.ndarray]:
        if bucket not in self._loaded:
            key = LAYOUT.drift_calibration(self.model, self.version, bucket)
            nulls: dict[str, np.ndarray] = {}
            if self.store.exists(key):
                with np.load(io.BytesIO(self.store.get_bytes(key)), allow_pickle=False) as data:
                    names = json.loads(bytes(data["__keys__"]).decode())
                    nulls = {name: np.asarray(data[f"n{i}"]) for i, name in enumerate(names)}
            self._loaded[bucket] = nulls
        return self._loaded[bucket]

    def get(self, bucket: int, key: str) -> np.ndarray | None:
        return self._bucket(bucket).get(key)

    def put(self, bucket: int, key: str, null: np.ndarray) -> None:
        self._bucket(bucket)[key] = null
        self._dirty.add(bucket)

    def flush(self) -> None:
        for bucket in sorted(self._dirty):
            nulls = self._loaded[bucket]
            names = sorted(nulls)
            buf = io.BytesIO()
            arrays = {f"n{i}": nulls[name] for i, name in enumerate(names)}
            arrays["__keys__"] = np.frombuffer(json.dumps(names).encode(), dtype=np.uint8)
            np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
            self.store.put_bytes(LAYOUT.drift_calibration(self.model, self.version, bucket), buf.getvalue())
        self._dirty.clear()


_T = TypeVar("_T")


class ReferenceCache:
    """The reference side of checks against one reference frame, kept for every later check in
    this process (a replay, a benchmark: many windows against one champion): its seeded sample,
    each column's cleaned values and counts, and the digests the nulls are keyed by. Bound to one
    frame object (another frame starts it over); the frame must not change in place meanwhile.
    A check with it gives the result a check without it gives."""

    def __init__(self) -> None:
        self._frame: pd.DataFrame | None = None
        self._entries: dict[tuple[Any, ...], Any] = {}

    def get(self, frame: pd.DataFrame, key: tuple[Any, ...], make: Callable[[], _T]) -> _T:
        if self._frame is not frame:
            self._frame, self._entries = frame, {}
        if key not in self._entries:
            self._entries[key] = make()
        found: _T = self._entries[key]
        return found
