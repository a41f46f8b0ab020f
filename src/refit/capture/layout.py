"""Where captures live in the store, and writing them there.

Layout (partitioned by the request's UTC date and hour, one file per write):
``captures/<model>/requests/date=YYYY-MM-DD/hour=HH/<part>.parquet`` and labels that arrive
later under ``captures/<model>/labels/date=YYYY-MM-DD/<part>.parquet``. The two prefixes are
the store layout's (:data:`refit.io.layout.LAYOUT`); the partitions below them are this module's.
"""

from __future__ import annotations

import uuid

import pandas as pd

from refit.io import Store
from refit.io.frames import write_frame
from refit.io.layout import LAYOUT

PREDICTION_COLUMN = "prediction"
MODEL_VERSION_COLUMN = "model_version"
LABEL_TIME_COLUMN = "label_time"


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
