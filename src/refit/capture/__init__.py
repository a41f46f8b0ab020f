"""Production captures: where they live in the store, writing them, and the one reader of them.

* :mod:`refit.capture.layout`: the partitions under the store layout's capture prefixes, and
  the partitioned writes.
* :mod:`refit.capture.reader`: :func:`read_captures`, the window and label join that training
  and drift share.
* :mod:`refit.capture.writer`: :class:`CaptureWriter`, the serving side (a bounded queue, a
  flusher thread, a local spill while the store fails: :mod:`~refit.capture.spill`).
"""

from refit.capture.layout import (
    LABEL_TIME_COLUMN,
    MODEL_VERSION_COLUMN,
    PREDICTION_COLUMN,
    write_labels,
    write_requests,
)
from refit.capture.reader import (
    LABEL_CLOCK_SKEW,
    SOURCE_COLUMN,
    CaptureWindow,
    load_labelled_captures,
    read_captures,
)
from refit.capture.settings import (
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_FLUSH_ROWS,
    DEFAULT_FLUSH_TIMEOUT_S,
    DEFAULT_MAX_QUEUE_ROWS,
    DEFAULT_MAX_RETRY_BACKOFF_S,
    DEFAULT_MAX_SPILL_BYTES,
    DEFAULT_RETRY_BACKOFF_S,
)
from refit.capture.stats import CaptureStats
from refit.capture.writer import CaptureWriter

__all__ = [
    "DEFAULT_FLUSH_INTERVAL_S",
    "DEFAULT_FLUSH_ROWS",
    "DEFAULT_FLUSH_TIMEOUT_S",
    "DEFAULT_MAX_QUEUE_ROWS",
    "DEFAULT_MAX_RETRY_BACKOFF_S",
    "DEFAULT_MAX_SPILL_BYTES",
    "DEFAULT_RETRY_BACKOFF_S",
    "LABEL_CLOCK_SKEW",
    "LABEL_TIME_COLUMN",
    "MODEL_VERSION_COLUMN",
    "PREDICTION_COLUMN",
    "SOURCE_COLUMN",
    "CaptureStats",
    "CaptureWindow",
    "CaptureWriter",
    "load_labelled_captures",
    "read_captures",
    "write_labels",
    "write_requests",
]
