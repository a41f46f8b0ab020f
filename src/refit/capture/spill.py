"""The capture writer's local spill: batches the store did not take, kept on disk until it does.

The spill is a folder of parquet files named ``<seq>-<kind>-<part>.parquet``, oldest first, bounded
in bytes (the oldest batches go first). Its methods run on the flusher thread (or before it starts),
and update the writer's counters under the writer's lock.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from refit.capture.layout import LABEL_TIME_COLUMN
from refit.capture.rows import one_line
from refit.capture.stats import COUNTER_PREFIX, LABELS, REQUESTS

#: The package's one logger (operators and tests filter on ``refit.capture``).
log = logging.getLogger("refit.capture")

_SPILL_NAME = re.compile(r"(\d{12})-(requests|labels)-([A-Za-z0-9._-]+)\.parquet")


@dataclass(frozen=True)
class Spilled:
    """One batch waiting in the spill folder."""

    seq: int
    kind: str
    part: str
    path: Path
    rows: int
    size: int


class SpillingWriter:
    """The spill half of :class:`~refit.capture.writer.CaptureWriter` (state set by its ``__init__``)."""

    model_name: str
    timestamp_column: str
    max_spill_bytes: int
    _lock: threading.Lock
    _counts: dict[str, int]
    _last_error: str | None
    _spill: collections.deque[Spilled]
    _spill_root: Path | None
    _next_seq: int

    if TYPE_CHECKING:  # provided by CaptureWriter, the class this half belongs to

        def _write(self, kind: str, part: str, frame: pd.DataFrame, deadline: float) -> bool: ...

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
                self._drop([item], f"cannot read {item.path} ({one_line(exc)})")
                continue
            time_column = self.timestamp_column if item.kind == REQUESTS else LABEL_TIME_COLUMN
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
                self._counts[f"{COUNTER_PREFIX[item.kind]}_in_spill"] -= item.rows
                self._counts[f"{COUNTER_PREFIX[item.kind]}_written"] += item.rows
                self._spill_gauges_locked()
        return True

    def _spill_batch(self, kind: str, part: str, frame: pd.DataFrame) -> None:
        """Put a queued batch the store did not take into the spill (or count it dropped)."""
        buf = io.BytesIO()
        try:
            frame.to_parquet(buf, index=False)
        except Exception as exc:
            self._count_dropped(kind, len(frame), "queued", f"cannot serialise the batch ({one_line(exc)})")
            return
        data = buf.getvalue()
        if len(data) > self.max_spill_bytes:  # before evicting anything: it would not fit anyway
            self._count_dropped(
                kind,
                len(frame),
                "queued",
                f"one batch ({len(data)} bytes) is over the spill bound of {self.max_spill_bytes} bytes",
            )
            return
        evicted = []
        while self._spill and self._spill_bytes() + len(data) > self.max_spill_bytes:
            evicted.append(self._spill.popleft())
        if evicted:
            for item in evicted:
                item.path.unlink(missing_ok=True)
            self._drop(evicted, f"the spill is over its bound of {self.max_spill_bytes} bytes")
        seq = self._next_seq
        self._next_seq += 1
        try:
            root = self._ensure_spill_root()
            path = root / f"{seq:012d}-{kind}-{part}.parquet"
            tmp = root / f".{path.name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            self._count_dropped(kind, len(frame), "queued", f"cannot write the spill ({one_line(exc)})")
            return
        self._spill.append(Spilled(seq, kind, part, path, len(frame), len(data)))
        prefix = COUNTER_PREFIX[kind]
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

    def _drop(self, items: list[Spilled], why: str) -> None:
        """Count spilled batches that are gone (already out of the spill) as dropped, loudly."""
        rows = sum(s.rows for s in items if s.kind == REQUESTS)
        labels = sum(s.rows for s in items if s.kind == LABELS)
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
        prefix = COUNTER_PREFIX[kind]
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
                log.error("capture spill for %s: ignoring unreadable %s (%s)", self.model_name, path, one_line(exc))
                continue
            found.append(Spilled(int(match[1]), match[2], match[3], path, rows, path.stat().st_size))
        if found:
            self._spill.extend(found)
            self._next_seq = found[-1].seq + 1
            with self._lock:
                for item in found:
                    self._counts[f"{COUNTER_PREFIX[item.kind]}_in_spill"] += item.rows
                self._spill_gauges_locked()
            log.info(
                "capture spill for %s: %d batches (%d rows) left in %s are retried on the next flush",
                self.model_name,
                len(found),
                sum(s.rows for s in found),
                root,
            )
