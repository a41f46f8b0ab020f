"""Where production captures live in the store, writing them, and the one reader of them.

Layout (partitioned by the request's UTC date and hour, one file per write):
``captures/<model>/requests/date=YYYY-MM-DD/hour=HH/<part>.parquet`` and labels that arrive
later under ``captures/<model>/labels/date=YYYY-MM-DD/<part>.parquet``. The two prefixes are
the store layout's (:data:`refit.io.layout.LAYOUT`); the partitions below them are this module's.

Training (labelled captures as extra rows) and drift (the production window, and the labelled
part of it for decay) read through :func:`read_captures`, so both see the same rows for the
same window: event time in ``[start, end]``, labels joined by request id, the latest label of
a request winning.
"""

from __future__ import annotations

import atexit
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
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from refit.io import Store
from refit.io.frames import write_frame
from refit.io.layout import LAYOUT
from refit.retry import doubling


def write_requests(
    store: Store, model: str, frame: pd.DataFrame, timestamp_column: str = "event_time", part: str | None = None
) -> list[str]:
    """Write captured requests, one parquet file per (date, hour) partition; returns URIs."""
    part = part or uuid.uuid4().hex[:12]
    ts = pd.to_datetime(frame[timestamp_column], utc=True)
    uris = []
    for (day, hour), group in frame.groupby([ts.dt.strftime("%Y-%m-%d"), ts.dt.hour], sort=True):
        key = f"{LAYOUT.capture_requests(model)}date={day}/hour={int(hour):02d}/{part}.parquet"
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
        key = f"{LAYOUT.capture_labels(model)}date={day}/{part}.parquet"
        uris.append(write_frame(store, key, group.reset_index(drop=True)))
    return uris


# --------------------------------------------------------------------------------------------
# Reading: the one capture reader, for training and for drift
# --------------------------------------------------------------------------------------------

#: Labels arrive after their request, so label partitions dated before the window's first day
#: cannot hold one of its labels; this margin keeps those of services whose clocks disagree.
LABEL_CLOCK_SKEW = timedelta(days=1)
#: Column of :func:`load_labelled_captures`: the capture file each row came from.
SOURCE_COLUMN = "_refit_source"


@dataclass(frozen=True)
class CaptureWindow:
    """Captured requests whose event time is in ``[start, end]``, and the labels for them.

    ``origins`` names each request row's file (validation quotes it). ``labels`` holds one row
    per request id: the latest arrival (``label_time``) wins, so a corrected label replaces
    the first. A bound of None is open: with neither, every request is in the window, those
    without an event time included (validation judges them).
    """

    start: datetime | None
    end: datetime | None
    frame: pd.DataFrame
    origins: pd.Series
    labels: pd.DataFrame
    request_id_column: str
    target: str

    @property
    def rows(self) -> int:
        """How many requests the window holds (0: nothing was captured in it)."""
        return len(self.frame)

    def labelled(self, requests: pd.DataFrame | None = None) -> pd.DataFrame:
        """Requests joined with their label by request id; unlabelled requests are left out.

        Args:
            requests: Rows of this window's ``frame`` (e.g. those that passed validation);
                None: all of them. A label column they carry is replaced by the joined one.
        """
        rows = self.frame if requests is None else requests
        if self.labels.empty:
            return rows.iloc[0:0]
        labels = self.labels[[self.request_id_column, self.target]]
        joined = rows.drop(columns=[self.target], errors="ignore").merge(labels, on=self.request_id_column, how="inner")
        return joined.reset_index(drop=True)


def _partition_date(key: str) -> str | None:
    for part in key.split("/"):
        if part.startswith("date="):
            return part[len("date=") :]
    return None


def _may_hold(key: str, first: pd.Timestamp | None, last: pd.Timestamp | None) -> bool:
    """Whether a key's date partition can hold rows between ``first`` and ``last``.

    Partitions only prune: a key without one is always read, and the rows' own times decide.
    """
    if not key.endswith(".parquet"):
        return False
    day = _partition_date(key)
    if day is None:
        return True
    return (first is None or day >= first.strftime("%Y-%m-%d")) and (last is None or day <= last.strftime("%Y-%m-%d"))


def _utc(at: datetime | pd.Timestamp | None) -> pd.Timestamp | None:
    """A bound as a UTC timestamp; a naive one is UTC, as naive captured times are."""
    if at is None:
        return None
    stamp = pd.Timestamp(at)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _read_all(store: Store, keys: list[str]) -> tuple[pd.DataFrame, pd.Series]:
    from refit.io.frames import read_frame

    frames = [read_frame(store, k) for k in keys]
    origins = pd.Series(np.repeat([store.uri_for(k) for k in keys], [len(f) for f in frames]), dtype=object)
    return pd.concat(frames, ignore_index=True), origins


def _latest_labels(labels: pd.DataFrame, request_id_column: str) -> pd.DataFrame:
    """One label per request id: the latest arrival; equal arrival times, the last file read."""
    if LABEL_TIME_COLUMN in labels.columns:
        labels = labels.sort_values(LABEL_TIME_COLUMN, kind="stable")
    return labels.drop_duplicates(request_id_column, keep="last").reset_index(drop=True)


def read_captures(
    store: Store,
    model: str,
    *,
    timestamp_column: str,
    request_id_column: str,
    target: str,
    start: datetime | pd.Timestamp | None = None,
    end: datetime | pd.Timestamp | None = None,
    last_rows: int | None = None,
    known_at: datetime | pd.Timestamp | None = None,
) -> CaptureWindow:
    """The captured requests of a window and their labels: training and drift read through this.

    Args:
        store: Where the captures are.
        model: Whose captures.
        timestamp_column: The requests' event time; it alone places a request in the window
            (date partitions only skip files that cannot hold a row of it).
        request_id_column: Joins labels to requests.
        target: The label column.
        start: Earliest event time kept (inclusive); None: no lower bound.
        end: Latest event time kept (inclusive); None: no upper bound.
        last_rows: Then keep only the latest N requests by event time (in time order).
        known_at: Only labels that had arrived by then (``label_time``) count: what a check or
            a retrain as of that time would have known. None: every label.
    """
    first, last = _utc(start), _utc(end)
    req_keys = [k for k in store.list(LAYOUT.capture_requests(model)) if _may_hold(k, first, last)]
    label_from = None if first is None else first - LABEL_CLOCK_SKEW
    lab_keys = [k for k in store.list(LAYOUT.capture_labels(model)) if _may_hold(k, label_from, None)]
    if req_keys:
        frame, origins = _read_all(store, req_keys)
    else:
        frame, origins = pd.DataFrame(columns=[request_id_column, timestamp_column]), pd.Series([], dtype=object)
    if first is not None or last is not None:
        when = pd.to_datetime(frame[timestamp_column], utc=True)
        keep = np.ones(len(frame), dtype=bool)
        if first is not None:
            keep &= (when >= first).to_numpy()
        if last is not None:
            keep &= (when <= last).to_numpy()
        frame, origins = frame[keep].reset_index(drop=True), origins[keep].reset_index(drop=True)
    if last_rows is not None and len(frame) > last_rows:
        order = np.argsort(pd.to_datetime(frame[timestamp_column], utc=True).to_numpy(), kind="stable")[-last_rows:]
        frame, origins = frame.iloc[order].reset_index(drop=True), origins.iloc[order].reset_index(drop=True)
    labels = _read_all(store, lab_keys)[0] if lab_keys else pd.DataFrame(columns=[request_id_column, target])
    known = _utc(known_at)
    if known is not None and LABEL_TIME_COLUMN in labels.columns:
        labels = labels[(pd.to_datetime(labels[LABEL_TIME_COLUMN], utc=True) <= known).to_numpy()]
    return CaptureWindow(
        start=None if first is None else first.to_pydatetime(),
        end=None if last is None else last.to_pydatetime(),
        frame=frame,
        origins=origins,
        labels=_latest_labels(labels, request_id_column),
        request_id_column=request_id_column,
        target=target,
    )


def load_labelled_captures(
    store: Store,
    model: str,
    *,
    target: str,
    request_id_column: str,
    timestamp_column: str,
    columns: list[str],
    since: datetime | pd.Timestamp | None = None,
    until: datetime | pd.Timestamp | None = None,
    known_at: datetime | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Captured requests whose labels have arrived, as training rows (:func:`read_captures`).

    Only requests with an event time in ``[since, until]`` are kept, and labels that had
    arrived by ``known_at``; the result has
    ``columns`` plus ``_refit_source`` (the capture file each row came from), so validation
    can name the file a bad row came from.
    """
    window = read_captures(
        store,
        model,
        timestamp_column=timestamp_column,
        request_id_column=request_id_column,
        target=target,
        start=since,
        end=until,
        known_at=known_at,
    )
    if window.frame.empty or window.labels.empty:
        return pd.DataFrame(columns=[*columns, SOURCE_COLUMN])
    joined = window.labelled(window.frame.assign(**{SOURCE_COLUMN: window.origins.to_numpy()}))
    return joined[[*columns, SOURCE_COLUMN]]


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

_PREFIX = {_REQUESTS: "rows", _LABELS: "labels"}  # counter names
_MIN_SLEEP_S = 0.01
_MAX_SLEEP_S = 3600.0

DEFAULT_FLUSH_ROWS = 10_000
"""Rows (requests plus labels) that make a batch."""
DEFAULT_FLUSH_INTERVAL_S = 60.0
"""Longest a row waits in the queue before its batch is written."""
DEFAULT_FLUSH_TIMEOUT_S = 5.0
"""Longest one flush waits on the store before it spills instead (also bounds ``flush()``)."""
DEFAULT_MAX_QUEUE_ROWS = 100_000
"""Rows waiting for the flusher beyond which ``log`` drops (and counts) instead of queueing."""
DEFAULT_RETRY_BACKOFF_S = 1.0
"""Wait before the first retry once the store fails; doubled on each further failure ..."""
DEFAULT_MAX_RETRY_BACKOFF_S = 60.0
"""... up to this."""
DEFAULT_MAX_SPILL_BYTES = 64 * 1024 * 1024
"""Bound on the local spill's size on disk."""

log = logging.getLogger(__name__)

#: Writers whose flusher runs: closed (drained or spilled, bounded) when the interpreter exits,
#: so rows still queued when a server stops without calling ``close()`` are not lost.
_RUNNING: weakref.WeakSet[CaptureWriter] = weakref.WeakSet()
_exit_hook = threading.Lock()
_exit_hook_registered = False


def _close_running_writers() -> None:
    for writer in list(_RUNNING):
        try:
            writer.close()
        except Exception:  # one writer's failure must not stop the others
            log.exception("closing capture writer for %s at exit failed", writer.model_name)


def _watch_at_exit(writer: CaptureWriter) -> None:
    global _exit_hook_registered
    _RUNNING.add(writer)
    with _exit_hook:
        if not _exit_hook_registered:
            atexit.register(_close_running_writers)
            _exit_hook_registered = True


@dataclass(frozen=True)
class CaptureStats:
    """A snapshot of a :class:`CaptureWriter`'s counters since it was made.

    ``rows_*`` count requests, ``labels_*`` count labels. Every logged row is, at any moment,
    in exactly one place, so (for a writer that adopted no earlier spill)
    ``rows_logged == rows_sampled_out + rows_queued + rows_written + rows_in_spill + rows_dropped``,
    and the same for labels. After ``close()`` nothing is queued.

    Attributes:
        rows_logged: Requests passed to ``log`` (before sampling).
        rows_sampled_out: Requests left out by sampling.
        rows_queued: Requests waiting for the flusher, or being written by it, now.
        rows_written: Requests written to the store (including spilled ones, once retried).
        rows_spilled: Requests that went to the local spill because the store failed, was
            too slow, or was backing off (cumulative: a row retried later counts here too).
        rows_in_spill: Requests in the spill now.
        rows_dropped: Requests lost, each logged as an error: the queue was full, the spill
            was full (oldest first), or the spill could not be written or read.
        labels_logged, labels_sampled_out, labels_queued, labels_written, labels_spilled,
            labels_in_spill, labels_dropped: The same for labels.
        retries: Attempts to write a spilled batch to the store.
        spilled_batches: Batches in the spill now.
        spill_bytes: Bytes in the spill now.
        last_error: The last store (or spill, or queue) error, one line; None if there was none.
    """

    rows_logged: int = 0
    rows_sampled_out: int = 0
    rows_queued: int = 0
    rows_written: int = 0
    rows_spilled: int = 0
    rows_in_spill: int = 0
    rows_dropped: int = 0
    labels_logged: int = 0
    labels_sampled_out: int = 0
    labels_queued: int = 0
    labels_written: int = 0
    labels_spilled: int = 0
    labels_in_spill: int = 0
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

    ``log`` never waits on the store. It checks its arguments, copies the rows into a bounded
    in-memory queue and returns (microseconds); a background thread, the flusher, writes them
    with :func:`write_requests` (one parquet file per UTC date and hour; each put is atomic in
    the store) when ``flush_rows`` rows are queued or a row has waited ``flush_interval_s``;
    ``log_labels`` does the same for labels with :func:`write_labels`.

    Serving must not fail, nor slow down, because the capture store does. A flush gives the
    store at most ``flush_timeout_s`` (a store call still running then is left to finish on
    its own thread, and no other call is made while it runs). A batch the store refuses or does
    not take in time goes to a local spill folder of parquet files, bounded by
    ``max_spill_bytes``. While the store fails, the flusher waits ``retry_backoff_s``, doubling
    up to ``max_retry_backoff_s``, before it tries the store again (oldest spilled batch first);
    batches that fall due meanwhile are spilled without waiting on the store. One warning is
    logged per outage, and an info line when the store is back. Rows are dropped, counted in
    ``stats`` and logged as errors only when the queue already holds ``max_queue_rows`` rows
    (the call's rows are dropped), or when the spill would outgrow its bound (the oldest
    spilled batches go). A batch keeps its part name from its first attempt, so a retry
    overwrites whatever of it reached the store before a failure: every row lands exactly once.
    Bad input (wrong lengths, missing ids) is the caller's bug and raises ValueError.

    On S3, give the store a client made with ``make_s3_client(timeouts=SERVING_TIMEOUTS)``
    (:mod:`refit.io.s3`): with short timeouts a hung endpoint also frees the flusher's store
    thread in seconds, not minutes.

    Sampling is a keyed hash of the request id against ``sample_rate``: a request is always in
    or always out, in every process with the same ``seed``, and its label follows it (labels
    of sampled-out requests are not written either).

    ``flush()`` asks the flusher to write what is queued and waits for it (at most about
    twice ``flush_timeout_s``); ``close()`` (or leaving the ``with`` block) refuses further
    rows and drains the queue: what the store does not take in time is spilled, never lost
    silently. The flusher starts with the first row, ``flush()`` or ``close()``.

    Thread-safe: one writer can be shared by all of a server's threads.

    Args:
        store: Where captures go.
        model_name: The model; captures go under ``captures/<model_name>/``.
        sample_rate: Fraction of requests kept, 0 to 1.
        seed: Keys the sampling hash; None is a fixed key (so every writer agrees).
        flush_rows: Write a batch when this many rows (requests plus labels) are queued.
        flush_interval_s: Write a batch when its oldest row has waited this long.
        flush_timeout_s: Longest one flush waits on the store before it spills instead.
        max_queue_rows: Rows waiting for the flusher beyond which ``log`` drops instead.
        retry_backoff_s: Wait before the first retry once the store fails (then doubled).
        max_retry_backoff_s: Longest wait between retries while the store fails.
        spill_dir: Folder for the spill (a ``<model_name>`` subfolder is used). Batches left
            there by an earlier writer (say, before a restart) are retried by this one. Give
            each process its own. None: a temporary folder, removed by ``close()`` when empty.
        max_spill_bytes: Bound on the spill's size on disk.
        clock: Seconds since the epoch; stamps rows and times ``flush_interval_s`` (inject one
            in tests). Timeouts and backoff use the monotonic clock.
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
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        flush_timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S,
        max_queue_rows: int = DEFAULT_MAX_QUEUE_ROWS,
        retry_backoff_s: float = DEFAULT_RETRY_BACKOFF_S,
        max_retry_backoff_s: float = DEFAULT_MAX_RETRY_BACKOFF_S,
        spill_dir: str | os.PathLike[str] | None = None,
        max_spill_bytes: int = DEFAULT_MAX_SPILL_BYTES,
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
        if not 0 < flush_timeout_s < math.inf:
            raise ValueError(f"flush_timeout_s must be > 0 and finite, got {flush_timeout_s}")
        if max_queue_rows < 1:
            raise ValueError(f"max_queue_rows must be >= 1, got {max_queue_rows}")
        if not 0 < retry_backoff_s <= max_retry_backoff_s < math.inf:
            raise ValueError(
                f"need 0 < retry_backoff_s <= max_retry_backoff_s < inf, got {retry_backoff_s}, {max_retry_backoff_s}"
            )
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
        self.flush_timeout_s = float(flush_timeout_s)
        self.max_queue_rows = max_queue_rows
        self.retry_backoff_s = float(retry_backoff_s)
        self.max_retry_backoff_s = float(max_retry_backoff_s)
        self.max_spill_bytes = max_spill_bytes
        self.timestamp_column = timestamp_column
        self.request_id_column = request_id_column
        self.label_column = label_column
        self.part_prefix = part_prefix
        self._clock = clock
        self._hash_key = hashlib.sha256(f"refit-capture-sample:{seed or 0}".encode()).digest()
        self._reserved = reserved
        self._due_rows = min(flush_rows, max_queue_rows)

        # _lock guards the queue (two buffers), the counters and the flusher's orders; it is
        # never held during I/O. _work wakes the flusher, _idle wakes flush()/close() callers.
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._requests = _Buffer()
        self._labels = _Buffer()
        self._last_flush = clock()
        self._closed = False
        self._stopped = False  # the flusher has drained the queue after close() and exited
        self._flusher: threading.Thread | None = None
        self._asked = 0  # flush() calls so far; the flusher serves them in order
        self._served = 0
        self._cutoff = math.inf  # monotonic time by which a waiting flush()/close() wants the store done
        self._overflowing = False
        self._counts = {f.name: 0 for f in dataclasses.fields(CaptureStats) if f.name != "last_error"}
        self._last_error: str | None = None
        # flusher state: touched only by the flusher thread (or before it starts / after it stops)
        self._owns_spill_dir = spill_dir is None
        self._spill_root: Path | None = None if spill_dir is None else Path(spill_dir) / model_name
        self._spill: collections.deque[_Spilled] = collections.deque()
        self._flushes = 0
        self._next_seq = 0
        self._outage = False
        self._failures = 0  # store failures in a row
        self._next_attempt = 0.0  # monotonic time before which background flushes spill without trying the store
        self._store_call: threading.Thread | None = None  # a store call that outlived its flush
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
        """Capture requests and what the model answered: queue them for the flusher and return.

        Never waits on the store (nor on the spill's disk): when the queue is full the rows
        are dropped and counted instead.

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
        self._add(_REQUESTS, chunk, logged=n, kept=kept)

    def log_labels(self, request_ids: Sequence[Any], labels: Any, *, label_time: Any = None) -> None:
        """Capture ground truth that arrived for earlier requests (queued, like ``log``).

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
        self._add(_LABELS, chunk, logged=n, kept=kept)

    def flush(self) -> CaptureStats:
        """Have the flusher retry the spill and write what is queued; returns the counters.

        Waits for the flusher at most about twice ``flush_timeout_s`` (the store gets at most
        ``flush_timeout_s``; what it did not take by then is spilled). Never raises for the store.
        """
        with self._lock:
            if self._stopped:
                return self._snapshot_locked()
            self._asked += 1
            ticket = self._asked
            now = time.monotonic()
            self._cutoff = min(self._cutoff, now + self.flush_timeout_s)
            self._start_flusher_locked()
            self._work.notify()
            end = now + 2 * self.flush_timeout_s
            while self._served < ticket and (left := end - time.monotonic()) > 0:
                self._idle.wait(left)
            return self._snapshot_locked()

    def close(self) -> CaptureStats:
        """Refuse further rows and drain the queue; returns the counters.

        The store gets at most ``flush_timeout_s`` for what is queued (and the spill); the
        rest is spilled, where a writer with the same ``spill_dir`` retries it. Waits at most
        about twice ``flush_timeout_s``.
        """
        with self._lock:
            if self._closed:
                return self._snapshot_locked()
            self._closed = True
            if self._flusher is None and not (self._requests.rows or self._labels.rows or self._spill):
                self._stopped = True  # nothing was ever queued: no flusher to start
            else:
                self._cutoff = min(self._cutoff, time.monotonic() + self.flush_timeout_s)
                self._start_flusher_locked()
                self._work.notify()
            flusher = self._flusher
        if flusher is not None:
            flusher.join(2 * self.flush_timeout_s)
            if flusher.is_alive():
                stats = self.stats
                log.error(
                    "capture writer for %s closed before its flusher finished (%d requests and %d labels "
                    "not yet written or spilled; it keeps at it while the process lives)",
                    self.model_name,
                    stats.rows_queued,
                    stats.labels_queued,
                )
                return stats
        if self._spill:
            log.error(
                "capture writer for %s closed with %d rows still spilled in %s (the store still fails: "
                "%s); a writer with spill_dir=%s retries them",
                self.model_name,
                sum(s.rows for s in self._spill),
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
            return self._snapshot_locked()

    @property
    def spill_path(self) -> Path | None:
        """The spill folder (None until something was spilled, for a temporary one)."""
        return self._spill_root

    def _snapshot_locked(self) -> CaptureStats:
        return CaptureStats(**self._counts, last_error=self._last_error)

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

    # -- the queue -------------------------------------------------------------------------

    def _add(self, kind: str, chunk: dict[str, Any], *, logged: int, kept: int) -> None:
        """Queue one call's rows (never waits on I/O: a lock held for microseconds)."""
        prefix = _PREFIX[kind]
        overflow = 0
        with self._lock:
            if self._closed:
                raise ValueError(f"capture writer for {self.model_name} is closed")
            self._counts[f"{prefix}_logged"] += logged
            self._counts[f"{prefix}_sampled_out"] += logged - kept
            queued = self._requests.rows + self._labels.rows
            if kept and queued >= self.max_queue_rows:
                self._counts[f"{prefix}_dropped"] += kept
                self._last_error = f"the capture queue is full ({queued} rows waiting for the flusher)"
                if not self._overflowing:
                    self._overflowing = True
                    overflow = queued
            elif kept:
                (self._requests if kind == _REQUESTS else self._labels).append(chunk, kept)
                self._counts[f"{prefix}_queued"] += kept
                now_queued = queued + kept
                # wake the flusher only when it has something new to do: start the interval
                # timer, or write a batch that is due
                if (
                    queued == 0
                    or now_queued >= self._due_rows
                    or self._clock() - self._last_flush >= self.flush_interval_s
                ):
                    self._start_flusher_locked()
                    self._work.notify()
        if overflow:  # once per overflow, outside the lock
            log.error(
                "capture queue for %s is full (%d rows waiting for the flusher): dropping new rows, "
                "counted in stats, until it takes them",
                self.model_name,
                overflow,
            )

    # -- the flusher ------------------------------------------------------------------------

    def _start_flusher_locked(self) -> None:
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._run, name=f"refit-capture-{self.model_name}", daemon=True)
            self._flusher.start()
            _watch_at_exit(self)

    def _due_locked(self) -> bool:
        """Whether the flusher has work now (called by the flusher, under ``_lock``)."""
        if self._closed or self._asked > self._served:
            return True
        queued = self._requests.rows + self._labels.rows
        if queued >= self._due_rows or (queued and self._clock() - self._last_flush >= self.flush_interval_s):
            return True
        return bool(self._spill) and time.monotonic() >= self._next_attempt

    def _sleep_locked(self) -> float:
        """How long the flusher may sleep before something falls due without a wake-up call."""
        waits = [_MAX_SLEEP_S]
        if self._requests.rows or self._labels.rows:
            waits.append(self.flush_interval_s - (self._clock() - self._last_flush))
        if self._spill:
            waits.append(self._next_attempt - time.monotonic())
        return max(min(waits), _MIN_SLEEP_S)

    def _run(self) -> None:
        """The flusher: take the queue when a batch is due, write it (or spill it), repeat."""
        while True:
            with self._lock:
                while not self._due_locked():
                    self._work.wait(self._sleep_locked())
                closing = self._closed
                ticket = self._asked
                forced = closing or ticket > self._served  # flush()/close(): try the store even in backoff
                deadline = min(time.monotonic() + self.flush_timeout_s, self._cutoff)
                requests, labels = self._requests, self._labels
                self._requests, self._labels = _Buffer(), _Buffer()
                self._last_flush = self._clock()
                self._overflowing = False
            try:
                self._flush(
                    requests, labels, try_store=forced or time.monotonic() >= self._next_attempt, deadline=deadline
                )
            except Exception:  # a bug here must not kill the flusher (what it held stays counted as queued)
                log.exception("capture flusher for %s: unexpected error", self.model_name)
            with self._lock:
                self._served = self._asked if closing else max(self._served, ticket)
                if self._served >= self._asked:
                    self._cutoff = math.inf
                self._stopped = closing
                self._idle.notify_all()
            if closing:
                return

    def _flush(self, requests: _Buffer, labels: _Buffer, *, try_store: bool, deadline: float) -> None:
        batches = []
        if requests.rows or labels.rows:
            self._flushes += 1
            part = f"{self.part_prefix}-{self._flushes - 1:05d}" if self.part_prefix else uuid.uuid4().hex[:16]
            for kind, buffer, time_column in (
                (_REQUESTS, requests, self.timestamp_column),
                (_LABELS, labels, LABEL_TIME_COLUMN),
            ):
                if not buffer.rows:
                    continue
                try:
                    batches.append((kind, part, buffer.frame((time_column,))))
                except Exception as exc:
                    self._count_dropped(kind, buffer.rows, "queued", f"cannot build the batch ({_one_line(exc)})")
        store_ok = try_store and self._retry_spill(deadline)
        for kind, part, frame in batches:
            # once the store failed (or this flush's time is up), spill the rest without waiting on it
            store_ok = store_ok and time.monotonic() < deadline and self._write(kind, part, frame, deadline)
            if store_ok:
                with self._lock:
                    self._counts[f"{_PREFIX[kind]}_queued"] -= len(frame)
                    self._counts[f"{_PREFIX[kind]}_written"] += len(frame)
            else:
                self._spill_batch(kind, part, frame)

    def _write(self, kind: str, part: str, frame: pd.DataFrame, deadline: float) -> bool:
        """One batch to the store, within ``deadline``; False (and backoff) when the store fails."""

        def put() -> None:
            if kind == _REQUESTS:
                write_requests(self.store, self.model_name, frame, self.timestamp_column, part=part)
            else:
                write_labels(self.store, self.model_name, frame, LABEL_TIME_COLUMN, part=part)

        try:
            self._call_store(put, deadline)
        except Exception as exc:  # any store failure: spill, never raise into serving
            self._store_failed(exc)
            return False
        self._failures = 0
        self._next_attempt = 0.0
        if self._outage:
            self._outage = False
            log.info("capture store %s is back: writing %s captures again", self.store.uri, self.model_name)
        return True

    def _call_store(self, call: Callable[[], None], deadline: float) -> None:
        """Run ``call`` on its own thread and wait for it until ``deadline`` at most.

        A call still running at the deadline is left to finish (it may yet land: the batch,
        spilled meanwhile, keeps its part name, so its retry overwrites the same files), and
        no other call is made until it has returned, so a hung store holds one thread, not one
        per flush.
        """
        if self._store_call is not None:
            if self._store_call.is_alive():
                raise TimeoutError("an earlier call to the store has not returned yet")
            self._store_call = None
        outcome: list[BaseException | None] = []

        def run() -> None:
            try:
                call()
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run, name=f"refit-capture-store-{self.model_name}", daemon=True)
        thread.start()
        thread.join(max(deadline - time.monotonic(), 0.0))
        if thread.is_alive():
            self._store_call = thread
            raise TimeoutError(f"the store did not answer within {self.flush_timeout_s:g} s")
        if not outcome:
            raise RuntimeError("the store call ended without an answer")
        if outcome[0] is not None:
            raise outcome[0]

    def _store_failed(self, exc: BaseException) -> None:
        error = _one_line(exc)
        self._failures += 1
        backoff = doubling(self._failures, self.retry_backoff_s, self.max_retry_backoff_s)
        self._next_attempt = time.monotonic() + backoff
        with self._lock:
            self._last_error = error
        if not self._outage:
            self._outage = True
            log.warning(
                "capture store %s is failing (%s): spilling %s captures to %s and retrying in %g s "
                "(backing off up to %g s)",
                self.store.uri,
                error,
                self.model_name,
                self._spill_root or "a temporary folder",
                backoff,
                self.max_retry_backoff_s,
            )

    def _retry_spill(self, deadline: float) -> bool:
        """Write spilled batches, oldest first; False as soon as the store fails or time is up."""
        while self._spill:
            if time.monotonic() >= deadline:
                return False  # the rest waits for the next flush
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
            if not self._write(item.kind, item.part, frame, deadline):
                return False
            self._spill.popleft()
            item.path.unlink(missing_ok=True)
            with self._lock:
                self._counts[f"{_PREFIX[item.kind]}_in_spill"] -= item.rows
                self._counts[f"{_PREFIX[item.kind]}_written"] += item.rows
                self._spill_gauges_locked()
        return True

    def _spill_batch(self, kind: str, part: str, frame: pd.DataFrame) -> None:
        """Put a queued batch the store did not take into the spill (or count it dropped)."""
        buf = io.BytesIO()
        try:
            frame.to_parquet(buf, index=False)
        except Exception as exc:
            self._count_dropped(kind, len(frame), "queued", f"cannot serialise the batch ({_one_line(exc)})")
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
                "queued",
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
            self._count_dropped(kind, len(frame), "queued", f"cannot write the spill ({_one_line(exc)})")
            return
        self._spill.append(_Spilled(seq, kind, part, path, len(frame), len(data)))
        prefix = _PREFIX[kind]
        with self._lock:
            self._counts[f"{prefix}_queued"] -= len(frame)
            self._counts[f"{prefix}_spilled"] += len(frame)
            self._counts[f"{prefix}_in_spill"] += len(frame)
            self._spill_gauges_locked()

    def _spill_bytes(self) -> int:
        return sum(s.size for s in self._spill)

    def _spill_gauges_locked(self) -> None:
        self._counts["spilled_batches"] = len(self._spill)
        self._counts["spill_bytes"] = self._spill_bytes()

    def _drop(self, items: list[_Spilled], why: str) -> None:
        """Count spilled batches that are gone (already out of the spill) as dropped, loudly."""
        rows = sum(s.rows for s in items if s.kind == _REQUESTS)
        labels = sum(s.rows for s in items if s.kind == _LABELS)
        with self._lock:
            self._counts["rows_in_spill"] -= rows
            self._counts["labels_in_spill"] -= labels
            self._counts["rows_dropped"] += rows
            self._counts["labels_dropped"] += labels
            self._spill_gauges_locked()
            total = self._counts["rows_dropped"], self._counts["labels_dropped"]
        log.error(
            "capture spill for %s: dropped the oldest %d requests and %d labels: %s (%d requests and "
            "%d labels dropped so far)",
            self.model_name,
            rows,
            labels,
            why,
            *total,
        )

    def _count_dropped(self, kind: str, rows: int, source: str, why: str) -> None:
        """Count ``rows`` that leave ``source`` (a counter, say ``queued``) as dropped, loudly."""
        prefix = _PREFIX[kind]
        with self._lock:
            self._counts[f"{prefix}_{source}"] -= rows
            self._counts[f"{prefix}_dropped"] += rows
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
            with self._lock:
                for item in found:
                    self._counts[f"{_PREFIX[item.kind]}_in_spill"] += item.rows
                self._spill_gauges_locked()
            log.info(
                "capture spill for %s: %d batches (%d rows) left in %s are retried on the next flush",
                self.model_name,
                len(found),
                sum(s.rows for s in found),
                root,
            )
