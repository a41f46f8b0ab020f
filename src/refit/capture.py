"""Where production captures live in the store, and writing them.

Layout (partitioned by the request's UTC date and hour, one file per write):
``captures/<model>/requests/date=YYYY-MM-DD/hour=HH/<part>.parquet`` and labels that arrive
later under ``captures/<model>/labels/date=YYYY-MM-DD/<part>.parquet``.
"""

from __future__ import annotations

import uuid

import pandas as pd

from refit.io import Store
from refit.io.frames import write_frame


def requests_prefix(model: str) -> str:
    return f"captures/{model}/requests/"


def labels_prefix(model: str) -> str:
    return f"captures/{model}/labels/"


def write_requests(store: Store, model: str, frame: pd.DataFrame, timestamp_column: str = "event_time",
                   part: str | None = None) -> list[str]:
    """Write captured requests, one parquet file per (date, hour) partition; returns URIs."""
    part = part or uuid.uuid4().hex[:12]
    ts = pd.to_datetime(frame[timestamp_column], utc=True)
    uris = []
    for (day, hour), group in frame.groupby([ts.dt.strftime("%Y-%m-%d"), ts.dt.hour], sort=True):
        key = f"{requests_prefix(model)}date={day}/hour={int(hour):02d}/{part}.parquet"
        uris.append(write_frame(store, key, group.reset_index(drop=True)))
    return uris


def write_labels(store: Store, model: str, labels: pd.DataFrame, time_column: str = "label_time",
                 part: str | None = None) -> list[str]:
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
    origins = pd.Series([store.uri_for(k) for k, f in zip(keys, frames, strict=True) for _ in range(len(f))],
                        dtype=object)
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
