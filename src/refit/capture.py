"""Where production captures live in the store, and writing them.

Layout (partitioned by the request's UTC date and hour, one file per write):
``captures/<model>/requests/date=YYYY-MM-DD/hour=HH/<part>.parquet`` and labels that arrive
later under ``captures/<model>/labels/date=YYYY-MM-DD/<part>.parquet``.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from refit.io import Store
from refit.io.frames import write_frame


def requests_prefix(model: str) -> str:
    return f"captures/{model}/requests/"


def labels_prefix(model: str) -> str:
    return f"captures/{model}/labels/"


def write_requests(
    store: Store, model: str, frame: pd.DataFrame, timestamp_column: str = "event_time", part: str | None = None
) -> list[str]:
    """Write captured requests, one parquet file per (date, hour) partition; returns URIs."""
    part = part or uuid.uuid4().hex[:12]
    ts = pd.to_datetime(frame[timestamp_column], utc=True)
    uris = []
    for (day, hour), group in frame.groupby([ts.dt.strftime("%Y-%m-%d"), ts.dt.hour], sort=True):
        key = f"{requests_prefix(model)}date={day}/hour={int(hour):02d}/{part}.parquet"
        uris.append(write_frame(store, key, group.reset_index(drop=True)))
    return uris


def write_labels(
    store: Store, model: str, labels: pd.DataFrame, time_column: str = "label_time", part: str | None = None
) -> list[str]:
    """Write ground truth that arrived later (request id, label, arrival time), by arrival date."""
    part = part or uuid.uuid4().hex[:12]
    ts = pd.to_datetime(labels[time_column], utc=True)
    uris = []
    for day, group in labels.groupby(ts.dt.strftime("%Y-%m-%d"), sort=True):
        key = f"{labels_prefix(model)}date={day}/{part}.parquet"
        uris.append(write_frame(store, key, group.reset_index(drop=True)))
    return uris


def _partition_date(key: str) -> str | None:
    for part in key.split("/"):
        if part.startswith("date="):
            return part[len("date=") :]
    return None


def _read_all(store: Store, keys: list[str]) -> tuple[pd.DataFrame, pd.Series]:
    from refit.io.frames import read_frame

    frames = [read_frame(store, k) for k in keys]
    origins = pd.Series(
        [store.uri_for(k) for k, f in zip(keys, frames, strict=True) for _ in range(len(f))], dtype=object
    )
    return pd.concat(frames, ignore_index=True), origins


def load_labelled_captures(
    store: Store,
    model: str,
    *,
    target: str,
    request_id_column: str,
    timestamp_column: str,
    columns: list[str],
    since: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Captured requests whose labels have arrived, joined by request id, as training rows.

    Only requests at or after ``since`` (by their timestamp) are kept; the result has
    ``columns`` plus ``_refit_source`` (the capture file each row came from), so validation
    can name the file a bad row came from.
    """
    req_keys = [k for k in store.list(requests_prefix(model)) if k.endswith(".parquet")]
    lab_keys = [k for k in store.list(labels_prefix(model)) if k.endswith(".parquet")]
    if since is not None:
        day = since.strftime("%Y-%m-%d")
        req_keys = [k for k in req_keys if (_partition_date(k) or day) >= day]
    if not req_keys or not lab_keys:
        return pd.DataFrame(columns=[*columns, "_refit_source"])
    requests, origins = _read_all(store, req_keys)
    labels, _ = _read_all(store, lab_keys)
    requests["_refit_source"] = origins.to_numpy()
    if since is not None:
        requests = requests[pd.to_datetime(requests[timestamp_column], utc=True) >= since]
    # a label may be corrected later: the latest arrival wins
    if "label_time" in labels.columns:
        labels = labels.sort_values("label_time", kind="stable")
    labels = labels.drop_duplicates(request_id_column, keep="last")
    joined = requests.drop(columns=[target], errors="ignore").merge(
        labels[[request_id_column, target]], on=request_id_column, how="inner"
    )
    return joined[[*columns, "_refit_source"]].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Serving side: CaptureWriter
# --------------------------------------------------------------------------------------------

PREDICTION_COLUMN = "prediction"
MODEL_VERSION_COLUMN = "model_version"
LABEL_TIME_COLUMN = "label_time"
_REQUESTS = "requests"
_LABELS = "labels"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SPILL_NAME = re.compile(r"(\d{12})-(requests|labels)-([A-Za-z0-9._-]+)\.parquet")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureStats:
    """A snapshot of a :class:`CaptureWriter`'s counters since it was made.

    ``rows_*`` count requests, ``labels_*`` count labels. Every logged row that was sampled in
    ends up in exactly one of: written, still in the spill, dropped, or still buffered.

    Attributes:
        rows_logged: Requests passed to ``log`` (before sampling).
        rows_sampled_out: Requests left out by sampling.
        rows_written: Requests written to the store (including spilled ones, once retried).
        rows_spilled: Requests that went to the local spill because the store failed.
        rows_dropped: Requests lost: the spill was full (oldest first) or could not be written.
        labels_logged, labels_sampled_out, labels_written, labels_spilled, labels_dropped:
            The same for labels.
        retries: Attempts to write a spilled batch to the store.
        spilled_batches: Batches in the spill now.
        spill_bytes: Bytes in the spill now.
        last_error: The last store (or spill) error, one line; None if there was none.
    """

    rows_logged: int = 0
    rows_sampled_out: int = 0
    rows_written: int = 0
    rows_spilled: int = 0
    rows_dropped: int = 0
    labels_logged: int = 0
    labels_sampled_out: int = 0
    labels_written: int = 0
    labels_spilled: int = 0
    labels_dropped: int = 0
    retries: int = 0
    spilled_batches: int = 0
    spill_bytes: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class _Spilled:
    """One batch waiting in the spill folder."""

    seq: int
    kind: str
    part: str
    path: Path
    rows: int
    size: int


class _Buffer:
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


def _column_values(values: Any) -> Any:
    """A private copy of one column (the caller may reuse its frame after ``log`` returns)."""
    if isinstance(values, pd.Series):
        if isinstance(values.dtype, np.dtype):
            return values.to_numpy(copy=True)
        return values.array.copy()
    return np.array(values, copy=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class CaptureWriter:
    """Capture what a model served (and, later, the truth) into the store, from the serving path.

    ``log`` buffers rows and writes them with :func:`write_requests` (one parquet file per
    UTC date and hour; each put is atomic in the store) when the buffer holds ``flush_rows``
    rows or ``flush_interval_s`` has passed since the last flush; ``log_labels`` does the same
    for labels with :func:`write_labels`.

    Serving must not fail because the capture store does. A batch the store refuses (any
    exception from the store) goes to a local spill folder of parquet files, bounded by
    ``max_spill_bytes``, and is retried, oldest first, at the start of every later flush.
    One warning is logged per outage, and an info line when the store is back. When the spill
    would outgrow its bound the oldest spilled batches are dropped, counted in
    ``stats.rows_dropped`` / ``stats.labels_dropped`` and logged as errors. A batch keeps its
    part name from its first attempt, so a retry overwrites whatever of it reached the store
    before a failure: every row lands exactly once. Bad input (wrong lengths, missing ids) is
    the caller's bug and raises ValueError.

    Sampling is a keyed hash of the request id against ``sample_rate``: a request is always in
    or always out, in every process with the same ``seed``, and its label follows it (labels
    of sampled-out requests are not written either).

    There is no background thread: flushes happen inside ``log``/``log_labels`` calls, in
    ``flush()`` and in ``close()``. A server that goes quiet keeps its last rows buffered until
    the next call, so call ``close()`` (or use the writer as a context manager) at shutdown.
    A flush writes to the store on the calling thread, outside the buffer lock, so other
    threads keep logging meanwhile; a ``log`` that finds another flush under way leaves the
    rows for the next one.

    Thread-safe: one writer can be shared by all of a server's threads.

    Args:
        store: Where captures go.
        model_name: The model; captures go under ``captures/<model_name>/``.
        sample_rate: Fraction of requests kept, 0 to 1.
        seed: Keys the sampling hash; None is a fixed key (so every writer agrees).
        flush_rows: Flush when this many rows (requests plus labels) are buffered.
        flush_interval_s: Flush on the first call this long after the last flush.
        spill_dir: Folder for the spill (a ``<model_name>`` subfolder is used). Batches left
            there by an earlier writer (say, before a restart) are retried by this one. Give
            each process its own. None: a temporary folder, removed by ``close()`` when empty.
        max_spill_bytes: Bound on the spill's size on disk.
        clock: Seconds since the epoch; stamps rows and times flushes (inject one in tests).
        timestamp_column: Name of the request time column (partitions the requests).
        request_id_column: Name of the request id column (joins requests with labels).
        label_column: Name of the label column (the model's target).
        part_prefix: Name parts ``<part_prefix>-<n>`` (n counts this writer's flushes) instead
            of random ids, so a deterministic producer that runs again overwrites its own
            files. Two writers with the same prefix overwrite each other: serving should
            leave this None.
    """

    def __init__(
        self,
        store: Store,
        model_name: str,
        *,
        sample_rate: float = 1.0,
        seed: int | None = None,
        flush_rows: int = 10_000,
        flush_interval_s: float = 60.0,
        spill_dir: str | os.PathLike[str] | None = None,
        max_spill_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        timestamp_column: str = "event_time",
        request_id_column: str = "request_id",
        label_column: str = "label",
        part_prefix: str | None = None,
    ) -> None:
        if not isinstance(model_name, str) or not _SAFE_NAME.fullmatch(model_name):
            raise ValueError(f"model_name must be a simple name (letters, digits, . _ -), got {model_name!r}")
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, got {sample_rate}")
        if flush_rows < 1:
            raise ValueError(f"flush_rows must be >= 1, got {flush_rows}")
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        if max_spill_bytes < 0:
            raise ValueError(f"max_spill_bytes must be >= 0, got {max_spill_bytes}")
        if part_prefix is not None and not _SAFE_NAME.fullmatch(part_prefix):
            raise ValueError(f"part_prefix must be letters, digits, . _ -, got {part_prefix!r}")
        reserved = {timestamp_column, request_id_column, PREDICTION_COLUMN, MODEL_VERSION_COLUMN}
        if len(reserved) < 4 or len({request_id_column, label_column, LABEL_TIME_COLUMN}) < 3:
            raise ValueError("timestamp, request id, label, prediction and model version columns must differ")
        self.store = store
        self.model_name = model_name
        self.sample_rate = float(sample_rate)
        self.flush_rows = flush_rows
        self.flush_interval_s = float(flush_interval_s)
        self.max_spill_bytes = max_spill_bytes
        self.timestamp_column = timestamp_column
        self.request_id_column = request_id_column
        self.label_column = label_column
        self.part_prefix = part_prefix
        self._clock = clock
        self._hash_key = hashlib.sha256(f"refit-capture-sample:{seed or 0}".encode()).digest()
        self._reserved = reserved

        # _lock guards the buffers, counters and the closed flag; _flush_lock serialises
        # flushes (store and spill I/O), so a flush never holds _lock while it waits on I/O.
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._requests = _Buffer()
        self._labels = _Buffer()
        self._last_flush = clock()
        self._closed = False
        self._counts = {f.name: 0 for f in dataclasses.fields(CaptureStats) if f.name != "last_error"}
        self._last_error: str | None = None
        # spill state: touched only under _flush_lock
        self._owns_spill_dir = spill_dir is None
        self._spill_root: Path | None = None if spill_dir is None else Path(spill_dir) / model_name
        self._spill: collections.deque[_Spilled] = collections.deque()
        self._flushes = 0
        self._next_seq = 0
        self._outage = False
        if self._spill_root is not None:
            self._adopt_spill(self._spill_root)

    # -- the serving-side API ---------------------------------------------------------------

    def log(
        self,
        features: pd.DataFrame,
        predictions: Any,
        *,
        model_version: str | None,
        request_ids: Sequence[Any] | None = None,
        timestamps: Any = None,
    ) -> None:
        """Capture requests and what the model answered.

        Args:
            features: The model's inputs, one row per request (any index).
            predictions: One prediction per row.
            model_version: The version that answered (None: unknown, written as missing).
            request_ids: One id per row (turned into strings); None: a fresh uuid4 each.
            timestamps: When the requests came: one per row, or one for all (naive = UTC);
                None: now, by the writer's clock.

        Raises:
            ValueError: The arguments do not line up (a caller bug); never for store trouble.
        """
        if not isinstance(features, pd.DataFrame):
            raise ValueError(f"features must be a pandas DataFrame, got {type(features).__name__}")
        clash = sorted(self._reserved & {str(c) for c in features.columns})
        if clash:
            raise ValueError(f"features must not have the columns the writer adds: {clash}")
        if model_version is not None and not isinstance(model_version, str):
            raise ValueError(f"model_version must be a string or None, got {type(model_version).__name__}")
        n = len(features)
        preds = predictions.reset_index(drop=True) if isinstance(predictions, pd.Series) else np.asarray(predictions)
        if preds.ndim != 1 or len(preds) != n:
            raise ValueError(f"predictions must have one value per row ({n}), got shape {np.shape(preds)}")
        ids = (
            self._ids(request_ids, n, "request_ids")
            if request_ids is not None
            else np.array([uuid.uuid4().hex for _ in range(n)], dtype=object)
        )
        stamps = self._times(timestamps, n, "timestamps")
        keep = self._sampled(ids)
        kept = n if keep is None else int(keep.sum())
        chunk: dict[str, Any] = {}
        if kept:
            chunk = {str(name): _column_values(values) for name, values in features.items()}
            chunk[self.request_id_column] = ids
            chunk[self.timestamp_column] = stamps
            chunk[PREDICTION_COLUMN] = _column_values(preds)
            chunk[MODEL_VERSION_COLUMN] = np.full(n, model_version, dtype=object)
            if keep is not None:
                chunk = {k: v[keep] for k, v in chunk.items()}
        self._add(self._requests, chunk, kept, logged=("rows_logged", n), sampled_out=("rows_sampled_out", n - kept))

    def log_labels(self, request_ids: Sequence[Any], labels: Any, *, label_time: Any = None) -> None:
        """Capture ground truth that arrived for earlier requests.

        Args:
            request_ids: The requests the labels belong to.
            labels: One label per request id.
            label_time: When the labels arrived: one per row or one for all; None: now.

        Raises:
            ValueError: The arguments do not line up (a caller bug).
        """
        ids = self._ids(request_ids, None, "request_ids")
        n = len(ids)
        values = labels.reset_index(drop=True) if isinstance(labels, pd.Series) else np.asarray(labels)
        if values.ndim != 1 or len(values) != n:
            raise ValueError(f"labels must have one value per request id ({n}), got shape {np.shape(values)}")
        stamps = self._times(label_time, n, "label_time")
        keep = self._sampled(ids)
        kept = n if keep is None else int(keep.sum())
        chunk: dict[str, Any] = {}
        if kept:
            chunk = {self.request_id_column: ids, self.label_column: _column_values(values), LABEL_TIME_COLUMN: stamps}
            if keep is not None:
                chunk = {k: v[keep] for k, v in chunk.items()}
        self._add(self._labels, chunk, kept, logged=("labels_logged", n), sampled_out=("labels_sampled_out", n - kept))

    def flush(self) -> CaptureStats:
        """Retry the spill, then write what is buffered; returns the counters. Never raises for the store."""
        self._flush(blocking=True)
        return self.stats

    def close(self) -> CaptureStats:
        """Flush, and refuse further ``log`` calls. Spilled rows the store still refuses stay on disk."""
        with self._lock:
            already = self._closed
            self._closed = True
        if not already:
            self._flush(blocking=True)
            with self._flush_lock:
                if self._spill:
                    rows = sum(s.rows for s in self._spill)
                    log.error(
                        "capture writer for %s closed with %d rows still spilled in %s (the store "
                        "still fails: %s); a writer with spill_dir=%s retries them",
                        self.model_name,
                        rows,
                        self._spill_root,
                        self._last_error,
                        self._spill_root.parent if self._spill_root else None,
                    )
                elif self._owns_spill_dir and self._spill_root is not None:
                    shutil.rmtree(self._spill_root.parent, ignore_errors=True)
                    self._spill_root = None
        return self.stats

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> CaptureStats:
        """The counters now (a frozen snapshot)."""
        with self._lock:
            return CaptureStats(**self._counts, last_error=self._last_error)

    @property
    def spill_path(self) -> Path | None:
        """The spill folder (None until something was spilled, for a temporary one)."""
        return self._spill_root

    # -- input ------------------------------------------------------------------------------

    @staticmethod
    def _ids(values: Any, n: int | None, name: str) -> np.ndarray:
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

    def _times(self, values: Any, n: int, name: str) -> np.ndarray:
        """Naive-UTC datetime64[ns] values (the zone goes back on at flush)."""
        if values is None:
            now = pd.Timestamp(self._clock(), unit="s", tz="UTC")
            return np.full(n, now.tz_localize(None).as_unit("ns").to_datetime64())
        scalar = pd.api.types.is_scalar(values)
        if not scalar and not isinstance(values, (pd.Series, pd.Index, np.ndarray)):
            values = pd.Series(list(values))
        if isinstance(values, (int, float, np.number)) if scalar else pd.api.types.is_numeric_dtype(values.dtype):
            raise ValueError(f"{name} must be datetimes, not numbers")
        try:
            if scalar:
                stamp = pd.Timestamp(values)
                stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
                parsed = pd.DatetimeIndex([stamp] * n)
            else:
                parsed = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}: cannot read as datetimes ({_one_line(exc)})") from None
        if len(parsed) != n:
            raise ValueError(f"{name} must have one value per row ({n}), got {len(parsed)}")
        if parsed.isna().any():
            raise ValueError(f"{name} must not contain missing values")
        return parsed.tz_convert("UTC").tz_localize(None).as_unit("ns").to_numpy()

    def _sampled(self, ids: np.ndarray) -> np.ndarray | None:
        """Which ids are kept (None: all). The same id gets the same answer in every writer."""
        if self.sample_rate >= 1.0:
            return None
        threshold = self.sample_rate * 2.0**64
        return np.fromiter(
            (
                int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8, key=self._hash_key).digest(), "big")
                < threshold
                for i in ids
            ),
            dtype=bool,
            count=len(ids),
        )

    def _add(
        self,
        buffer: _Buffer,
        chunk: dict[str, Any],
        rows: int,
        *,
        logged: tuple[str, int],
        sampled_out: tuple[str, int],
    ) -> None:
        with self._lock:
            if self._closed:
                raise ValueError(f"capture writer for {self.model_name} is closed")
            self._counts[logged[0]] += logged[1]
            self._counts[sampled_out[0]] += sampled_out[1]
            if rows:
                buffer.append(chunk, rows)
            due = self._requests.rows + self._labels.rows >= self.flush_rows or (
                self._clock() - self._last_flush >= self.flush_interval_s
                and (self._requests.rows or self._labels.rows or self._counts["spilled_batches"])
            )
        if due:
            self._flush(blocking=False)  # another thread flushing: it or the next call takes these

    # -- flushing ---------------------------------------------------------------------------

    def _flush(self, *, blocking: bool) -> None:
        if not self._flush_lock.acquire(blocking=blocking):
            return
        try:
            with self._lock:
                requests, labels = self._requests, self._labels
                self._requests, self._labels = _Buffer(), _Buffer()
                self._last_flush = self._clock()
            batches = []
            if requests.rows or labels.rows:
                self._flushes += 1
                part = f"{self.part_prefix}-{self._flushes - 1:05d}" if self.part_prefix else uuid.uuid4().hex[:16]
                if requests.rows:
                    batches.append((_REQUESTS, part, requests.frame((self.timestamp_column,))))
                if labels.rows:
                    batches.append((_LABELS, part, labels.frame((LABEL_TIME_COLUMN,))))
            store_ok = self._retry_spill()
            for kind, part, frame in batches:
                # once the store failed in this flush, spill the rest without waiting on it again
                store_ok = store_ok and self._write(kind, part, frame)
                if not store_ok:
                    self._spill_batch(kind, part, frame)
        finally:
            self._flush_lock.release()

    def _write(self, kind: str, part: str, frame: pd.DataFrame) -> bool:
        try:
            if kind == _REQUESTS:
                write_requests(self.store, self.model_name, frame, self.timestamp_column, part=part)
            else:
                write_labels(self.store, self.model_name, frame, LABEL_TIME_COLUMN, part=part)
        except Exception as exc:  # any store failure: spill, never raise into serving
            error = _one_line(exc)
            with self._lock:
                self._last_error = error
            if not self._outage:
                self._outage = True
                log.warning(
                    "capture store %s is failing (%s): spilling %s captures to %s and retrying on every flush",
                    self.store.uri,
                    error,
                    self.model_name,
                    self._spill_root or "a temporary folder",
                )
            return False
        with self._lock:
            self._counts["rows_written" if kind == _REQUESTS else "labels_written"] += len(frame)
        if self._outage:
            self._outage = False
            log.info("capture store %s is back: writing %s captures again", self.store.uri, self.model_name)
        return True

    def _retry_spill(self) -> bool:
        """Write spilled batches, oldest first; False as soon as the store fails."""
        while self._spill:
            item = self._spill[0]
            try:
                frame = pd.read_parquet(item.path)
            except Exception as exc:  # an unreadable spill file cannot be retried: drop it, loudly
                self._spill.popleft()
                self._drop([item], f"cannot read {item.path} ({_one_line(exc)})")
                continue
            time_column = self.timestamp_column if item.kind == _REQUESTS else LABEL_TIME_COLUMN
            if time_column not in frame.columns:  # left by a writer with other column names
                self._spill.popleft()
                item.path.unlink(missing_ok=True)
                self._drop([item], f"{item.path} has no {time_column!r} column")
                continue
            with self._lock:
                self._counts["retries"] += 1
            if not self._write(item.kind, item.part, frame):
                return False
            self._spill.popleft()
            item.path.unlink(missing_ok=True)
            self._update_spill_counts()
        return True

    def _spill_batch(self, kind: str, part: str, frame: pd.DataFrame) -> None:
        rows_key = "rows" if kind == _REQUESTS else "labels"
        buf = io.BytesIO()
        try:
            frame.to_parquet(buf, index=False)
        except Exception as exc:
            self._count_dropped(kind, len(frame), f"cannot serialise the batch ({_one_line(exc)})")
            return
        data = buf.getvalue()
        evicted = []
        while self._spill and self._spill_bytes() + len(data) > self.max_spill_bytes:
            evicted.append(self._spill.popleft())
        if evicted:
            for item in evicted:
                item.path.unlink(missing_ok=True)
            self._drop(evicted, f"the spill is over its bound of {self.max_spill_bytes} bytes")
        if len(data) > self.max_spill_bytes:
            self._count_dropped(
                kind,
                len(frame),
                f"one batch ({len(data)} bytes) is over the spill bound of {self.max_spill_bytes} bytes",
            )
            return
        seq = self._next_seq
        self._next_seq += 1
        try:
            root = self._ensure_spill_root()
            path = root / f"{seq:012d}-{kind}-{part}.parquet"
            tmp = root / f".{path.name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            self._count_dropped(kind, len(frame), f"cannot write the spill ({_one_line(exc)})")
            return
        self._spill.append(_Spilled(seq, kind, part, path, len(frame), len(data)))
        with self._lock:
            self._counts[f"{rows_key}_spilled"] += len(frame)
        self._update_spill_counts()

    def _spill_bytes(self) -> int:
        return sum(s.size for s in self._spill)

    def _update_spill_counts(self) -> None:
        with self._lock:
            self._counts["spilled_batches"] = len(self._spill)
            self._counts["spill_bytes"] = self._spill_bytes()

    def _drop(self, items: list[_Spilled], why: str) -> None:
        rows = sum(s.rows for s in items if s.kind == _REQUESTS)
        labels = sum(s.rows for s in items if s.kind == _LABELS)
        with self._lock:
            self._counts["rows_dropped"] += rows
            self._counts["labels_dropped"] += labels
            total = self._counts["rows_dropped"], self._counts["labels_dropped"]
        self._update_spill_counts()
        log.error(
            "capture spill for %s: dropped the oldest %d requests and %d labels: %s (%d requests and "
            "%d labels dropped so far)",
            self.model_name,
            rows,
            labels,
            why,
            *total,
        )

    def _count_dropped(self, kind: str, rows: int, why: str) -> None:
        key = "rows_dropped" if kind == _REQUESTS else "labels_dropped"
        with self._lock:
            self._counts[key] += rows
            self._last_error = why
            total = self._counts["rows_dropped"], self._counts["labels_dropped"]
        log.error(
            "capture spill for %s: dropped %d %s: %s (%d requests and %d labels dropped so far)",
            self.model_name,
            rows,
            kind,
            why,
            *total,
        )

    def _ensure_spill_root(self) -> Path:
        if self._spill_root is None:
            self._spill_root = Path(tempfile.mkdtemp(prefix="refit-capture-spill-")) / self.model_name
        self._spill_root.mkdir(parents=True, exist_ok=True)
        return self._spill_root

    def _adopt_spill(self, root: Path) -> None:
        """Pick up batches an earlier writer left in ``root`` (oldest first)."""
        import pyarrow.parquet as pq

        if not root.is_dir():
            return
        found = []
        for path in sorted(root.iterdir()):
            match = _SPILL_NAME.fullmatch(path.name)
            if not match:
                continue
            try:
                rows = pq.read_metadata(path).num_rows
            except Exception as exc:
                log.error("capture spill for %s: ignoring unreadable %s (%s)", self.model_name, path, _one_line(exc))
                continue
            found.append(_Spilled(int(match[1]), match[2], match[3], path, rows, path.stat().st_size))
        if found:
            self._spill.extend(found)
            self._next_seq = found[-1].seq + 1
            self._update_spill_counts()
            log.info(
                "capture spill for %s: %d batches (%d rows) left in %s are retried on the next flush",
                self.model_name,
                len(found),
                sum(s.rows for s in found),
                root,
            )
