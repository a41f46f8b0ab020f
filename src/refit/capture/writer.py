"""The serving side of capture: :class:`CaptureWriter` queues rows and a flusher thread writes them."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import math
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from refit.capture.at_exit import watch_at_exit
from refit.capture.layout import (
    DEFAULT_LABEL_COLUMN,
    DEFAULT_REQUEST_ID_COLUMN,
    DEFAULT_TIMESTAMP_COLUMN,
    LABEL_TIME_COLUMN,
    MODEL_VERSION_COLUMN,
    PREDICTION_COLUMN,
    write_labels,
    write_requests,
)
from refit.capture.rows import Buffer, arrow_safe, checked_ids, column_values, one_line, sampled, utc_times
from refit.capture.settings import (
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_FLUSH_ROWS,
    DEFAULT_FLUSH_TIMEOUT_S,
    DEFAULT_MAX_QUEUE_ROWS,
    DEFAULT_MAX_RETRY_BACKOFF_S,
    DEFAULT_MAX_SPILL_BYTES,
    DEFAULT_RETRY_BACKOFF_S,
    check_settings,
)
from refit.capture.spill import Spilled, SpillingWriter
from refit.capture.stats import COUNTER_PREFIX, LABELS, REQUESTS, CaptureStats
from refit.io import Store
from refit.retry import doubling

if TYPE_CHECKING:
    from refit.config import PipelineConfig

_MIN_SLEEP_S = 0.01
_MAX_SLEEP_S = 3600.0

#: The package's one logger (operators and tests filter on ``refit.capture``).
log = logging.getLogger("refit.capture")


class CaptureWriter(SpillingWriter):
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
        timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN,
        request_id_column: str = DEFAULT_REQUEST_ID_COLUMN,
        label_column: str = DEFAULT_LABEL_COLUMN,
        part_prefix: str | None = None,
    ) -> None:
        reserved = check_settings(
            model_name,
            sample_rate,
            (flush_rows, flush_interval_s, flush_timeout_s, max_queue_rows),
            (retry_backoff_s, max_retry_backoff_s, max_spill_bytes),
            part_prefix,
            (timestamp_column, request_id_column, label_column),
        )
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
        self._requests = Buffer()
        self._labels = Buffer()
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
        self._spill: collections.deque[Spilled] = collections.deque()
        self._flushes = 0
        self._mixed_warned: set[tuple[str, str]] = set()  # (kind, column) whose mixed types were said
        self._next_seq = 0
        self._outage = False
        self._failures = 0  # store failures in a row
        self._next_attempt = 0.0  # monotonic time before which background flushes spill without trying the store
        self._store_call: threading.Thread | None = None  # a store call that outlived its flush
        if self._spill_root is not None:
            self._adopt_spill(self._spill_root)

    # -- the serving-side API ---------------------------------------------------------------

    @classmethod
    def for_config(cls, store: Store, config: PipelineConfig, **kwargs: Any) -> CaptureWriter:
        """A writer for ``config``'s dataset: its name, and the timestamp, request id and label
        columns the drift check and retrains read the captures by (``kwargs``: the rest)."""
        dataset = config.dataset
        return cls(
            store,
            dataset.name,
            timestamp_column=dataset.timestamp_column,
            request_id_column=dataset.request_id_column,
            label_column=dataset.target,
            **kwargs,
        )

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
            checked_ids(request_ids, n, "request_ids")
            if request_ids is not None
            else np.array([uuid.uuid4().hex for _ in range(n)], dtype=object)
        )
        stamps = utc_times(timestamps, n, "timestamps", self._clock)
        keep = sampled(ids, self.sample_rate, self._hash_key)
        kept = n if keep is None else int(keep.sum())
        chunk: dict[str, Any] = {}
        if kept:
            chunk = {str(name): column_values(values) for name, values in features.items()}
            chunk[self.request_id_column] = ids
            chunk[self.timestamp_column] = stamps
            chunk[PREDICTION_COLUMN] = column_values(preds)
            chunk[MODEL_VERSION_COLUMN] = np.full(n, model_version, dtype=object)
            if keep is not None:
                chunk = {k: v[keep] for k, v in chunk.items()}
        self._add(REQUESTS, chunk, logged=n, kept=kept)

    def log_labels(self, request_ids: Sequence[Any], labels: Any, *, label_time: Any = None) -> None:
        """Capture ground truth that arrived for earlier requests (queued, like ``log``).

        Args:
            request_ids: The requests the labels belong to.
            labels: One label per request id.
            label_time: When the labels arrived: one per row or one for all; None: now.

        Raises:
            ValueError: The arguments do not line up (a caller bug).
        """
        ids = checked_ids(request_ids, None, "request_ids")
        n = len(ids)
        values = labels.reset_index(drop=True) if isinstance(labels, pd.Series) else np.asarray(labels)
        if values.ndim != 1 or len(values) != n:
            raise ValueError(f"labels must have one value per request id ({n}), got shape {np.shape(values)}")
        stamps = utc_times(label_time, n, "label_time", self._clock)
        keep = sampled(ids, self.sample_rate, self._hash_key)
        kept = n if keep is None else int(keep.sum())
        chunk: dict[str, Any] = {}
        if kept:
            chunk = {self.request_id_column: ids, self.label_column: column_values(values), LABEL_TIME_COLUMN: stamps}
            if keep is not None:
                chunk = {k: v[keep] for k, v in chunk.items()}
        self._add(LABELS, chunk, logged=n, kept=kept)

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

    # -- the queue -------------------------------------------------------------------------

    def _add(self, kind: str, chunk: dict[str, Any], *, logged: int, kept: int) -> None:
        """Queue one call's rows (never waits on I/O: a lock held for microseconds)."""
        prefix = COUNTER_PREFIX[kind]
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
                (self._requests if kind == REQUESTS else self._labels).append(chunk, kept)
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
            watch_at_exit(self)

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
                self._requests, self._labels = Buffer(), Buffer()
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

    def _flush(self, requests: Buffer, labels: Buffer, *, try_store: bool, deadline: float) -> None:
        batches = []
        if requests.rows or labels.rows:
            self._flushes += 1
            part = f"{self.part_prefix}-{self._flushes - 1:05d}" if self.part_prefix else uuid.uuid4().hex[:16]
            for kind, buffer, time_column in (
                (REQUESTS, requests, self.timestamp_column),
                (LABELS, labels, LABEL_TIME_COLUMN),
            ):
                if not buffer.rows:
                    continue
                try:
                    frame, texted = arrow_safe(buffer.frame((time_column,)))
                except Exception as exc:
                    self._count_dropped(kind, buffer.rows, "queued", f"cannot build the batch ({one_line(exc)})")
                    continue
                self._warn_mixed(kind, texted)
                batches.append((kind, part, frame))
        store_ok = try_store and self._retry_spill(deadline)
        for kind, part, frame in batches:
            # once the store failed (or this flush's time is up), spill the rest without waiting on it
            store_ok = store_ok and time.monotonic() < deadline and self._write(kind, part, frame, deadline)
            if store_ok:
                with self._lock:
                    self._counts[f"{COUNTER_PREFIX[kind]}_queued"] -= len(frame)
                    self._counts[f"{COUNTER_PREFIX[kind]}_written"] += len(frame)
            else:
                self._spill_batch(kind, part, frame)

    def _warn_mixed(self, kind: str, columns: list[str]) -> None:
        """Say once per column that its values came in mixed types (see :func:`arrow_safe`)."""
        new = [c for c in columns if (kind, c) not in self._mixed_warned]
        if new:
            self._mixed_warned.update((kind, c) for c in new)
            log.warning(
                "capture %s of %s: column(s) %s came with values of mixed types (e.g. numbers and text); "
                "written as text so that no row is lost: the drift check reads them back, and quarantines "
                "any value its schema cannot take",
                kind,
                self.model_name,
                ", ".join(new),
            )

    def _write(self, kind: str, part: str, frame: pd.DataFrame, deadline: float) -> bool:
        """One batch to the store, within ``deadline``; False (and backoff) when the store fails."""

        def put() -> None:
            if kind == REQUESTS:
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
        error = one_line(exc)
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
