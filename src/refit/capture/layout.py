"""Where captures live in the store, and writing them there.

Layout (partitioned by the request's UTC date and hour, one file per write):
``captures/<model>/requests/date=YYYY-MM-DD/hour=HH/<part>.parquet`` and labels that arrive
later under ``captures/<model>/labels/date=YYYY-MM-DD/<part>.parquet``. The two prefixes are
the store layout's (:data:`refit.io.layout.LAYOUT`); the partitions below them are this module's.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

from refit.io import Store
from refit.io.frames import write_partitions
from refit.io.layout import LAYOUT

PREDICTION_COLUMN = "prediction"
MODEL_VERSION_COLUMN = "model_version"
LABEL_TIME_COLUMN = "label_time"


#: The column names of a ``CaptureWriter`` made without its config (``CaptureWriter.for_config``
#: names the config's own): the request time, the request id and the label.
DEFAULT_TIMESTAMP_COLUMN = "event_time"
DEFAULT_REQUEST_ID_COLUMN = "request_id"
DEFAULT_LABEL_COLUMN = "label"


def write_requests(
    store: Store,
    model: str,
    frame: pd.DataFrame,
    timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN,
    part: str | None = None,
) -> list[str]:
    """Write captured requests, one parquet file per (date, hour) partition; returns URIs."""
    part = part or uuid.uuid4().hex[:12]
    hours = pd.to_datetime(frame[timestamp_column], utc=True).dt.floor("h")
    return write_partitions(store, frame, _keys(LAYOUT.capture_requests(model), hours, "date=%Y-%m-%d/hour=%H/", part))


def write_labels(
    store: Store, model: str, labels: pd.DataFrame, time_column: str = "label_time", part: str | None = None
) -> list[str]:
    """Write ground truth that arrived later (request id, label, arrival time), by arrival date."""
    part = part or uuid.uuid4().hex[:12]
    days = pd.to_datetime(labels[time_column], utc=True).dt.floor("D")
    return write_partitions(store, labels, _keys(LAYOUT.capture_labels(model), days, "date=%Y-%m-%d/", part))


def _keys(prefix: str, times: pd.Series, partition: str, part: str) -> pd.Series:
    """Each row's file: ``prefix``, its time's partition (a strftime format), ``part``; None
    where the time is missing (such rows are not written)."""
    codes, uniques = pd.factorize(times)
    names = np.array([f"{prefix}{p}{part}.parquet" for p in pd.DatetimeIndex(uniques).strftime(partition)] + [None])
    return pd.Series(names[codes], index=times.index)
