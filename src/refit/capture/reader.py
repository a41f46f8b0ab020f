"""The one capture reader, for training and for drift.

Training (labelled captures as extra rows) and drift (the production window, and the labelled
part of it for decay) read through :func:`read_captures`, so both see the same rows for the
same window: event time in ``[start, end]``, labels joined by request id, the latest label of
a request winning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from refit.capture.layout import (
    DEFAULT_LABEL_COLUMN,
    DEFAULT_REQUEST_ID_COLUMN,
    DEFAULT_TIMESTAMP_COLUMN,
    LABEL_TIME_COLUMN,
)
from refit.errors import DataError
from refit.io import Store
from refit.io.layout import LAYOUT
from refit.timestamps import utc_timestamp

#: Labels arrive after their request, so label partitions dated before the window's first day
#: cannot hold one of its labels; this margin keeps those of services whose clocks disagree.
LABEL_CLOCK_SKEW = timedelta(days=1)
#: Column of :func:`load_labelled_captures`: the capture file each row came from.
SOURCE_COLUMN = "_refit_source"
#: Column of :attr:`CaptureWindow.labels` (and :meth:`CaptureWindow.labelled`'s rows): the label
#: file each label came from, which a quarantined label names.
LABEL_SOURCE_COLUMN = "_refit_label_source"


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
        Each row also names its label's file (:data:`LABEL_SOURCE_COLUMN`) when labels were read.

        Args:
            requests: Rows of this window's ``frame`` (e.g. those that passed validation);
                None: all of them. A label column they carry is replaced by the joined one.
        """
        rows = self.frame if requests is None else requests
        if self.labels.empty:
            return rows.iloc[0:0]
        keep = [self.request_id_column, self.target]
        labels = self.labels[keep + [LABEL_SOURCE_COLUMN] if LABEL_SOURCE_COLUMN in self.labels.columns else keep]
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
    return None if at is None else utc_timestamp(at)


def _read_all(store: Store, keys: list[str]) -> tuple[pd.DataFrame, pd.Series]:
    from refit.io.frames import read_frames

    frame, lengths = read_frames(store, keys)
    origins = pd.Series(np.repeat([store.uri_for(k) for k in keys], lengths), dtype=object)
    return frame, origins


def _latest_labels(labels: pd.DataFrame, request_id_column: str) -> pd.DataFrame:
    """One label per request id: the latest arrival; equal arrival times, the last file read."""
    if LABEL_TIME_COLUMN in labels.columns:
        labels = labels.sort_values(LABEL_TIME_COLUMN, kind="stable")
    return labels.drop_duplicates(request_id_column, keep="last").reset_index(drop=True)


def _require(frame: pd.DataFrame, store: Store, prefix: str, columns: dict[str, str]) -> None:
    """The captures have the columns the config reads them by, or a one-line DataError: a writer
    made without them (``CaptureWriter(store, name)`` keeps its defaults ``event_time`` and
    ``label``) used to end the check in a KeyError traceback."""
    missing = [f"{name!r} ({key})" for name, key in columns.items() if name not in frame.columns]
    if missing:
        defaults = [
            c for c in (DEFAULT_TIMESTAMP_COLUMN, DEFAULT_REQUEST_ID_COLUMN, DEFAULT_LABEL_COLUMN) if c in frame.columns
        ]
        found = [c for c in frame.columns if c != LABEL_SOURCE_COLUMN]  # the files', not refit's
        have = (
            f"the writer's default {', '.join(defaults)}"
            if defaults
            else ", ".join(str(c) for c in found[:12]) + (", ..." if len(found) > 12 else "")
        )
        raise DataError(
            f"captures under {store.uri_for(prefix.rstrip('/'))} have no column {', '.join(missing)} "
            f"(they have {have}): log them with CaptureWriter.for_config(store, config), "
            "which names the config's columns"
        )


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
        _require(
            frame,
            store,
            LAYOUT.capture_requests(model),
            {timestamp_column: "dataset.timestamp_column", request_id_column: "dataset.request_id_column"},
        )
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
    labels = pd.DataFrame(columns=[request_id_column, target])
    if lab_keys:
        from refit.io.frames import read_frames

        labels, lengths = read_frames(store, lab_keys)
        files = pd.Categorical.from_codes(
            np.repeat(np.arange(len(lab_keys)), lengths), [store.uri_for(k) for k in lab_keys]
        )
        labels[LABEL_SOURCE_COLUMN] = files  # a code per label, each file's name once
        _require(
            labels,
            store,
            LAYOUT.capture_labels(model),
            {target: "dataset.target", request_id_column: "dataset.request_id_column"},
        )
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
