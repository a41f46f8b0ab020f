"""What a capture writer counts: every logged row is in exactly one place at any moment."""

from __future__ import annotations

from dataclasses import dataclass

REQUESTS = "requests"
LABELS = "labels"
#: The counters' name prefix of each kind of row.
COUNTER_PREFIX = {REQUESTS: "rows", LABELS: "labels"}


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
