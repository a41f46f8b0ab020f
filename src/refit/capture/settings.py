"""A capture writer's settings: the defaults, and the checks that refuse settings that cannot work."""

from __future__ import annotations

import math
import re

from refit.capture.layout import LABEL_TIME_COLUMN, MODEL_VERSION_COLUMN, PREDICTION_COLUMN

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

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


def check_settings(
    model_name: str,
    sample_rate: float,
    flushing: tuple[int, float, float, int],
    spilling: tuple[float, float, int],
    part_prefix: str | None,
    columns: tuple[str, str, str],
) -> set[str]:
    """Refuse a writer's settings that cannot work (ValueError); returns the columns it adds to requests."""
    flush_rows, flush_interval_s, flush_timeout_s, max_queue_rows = flushing
    retry_backoff_s, max_retry_backoff_s, max_spill_bytes = spilling
    timestamp_column, request_id_column, label_column = columns
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
    return reserved
