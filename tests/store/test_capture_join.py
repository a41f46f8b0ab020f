"""Labelled production captures join into the training data, inside the window, as drift reads them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from refit import monitoring
from refit.capture import (
    load_labelled_captures,
    read_captures,
    write_labels,
    write_requests,
)
from refit.config_loader import load_config
from refit.data import stage_validated
from refit.demo import write_base_data, write_production_data
from refit.io.frames import read_frame, write_frame
from refit.io.layout import LAYOUT

ROOT = Path(__file__).resolve().parents[2]


def test_labelled_captures_join_and_validate(store) -> None:  # type: ignore[no-untyped-def]
    cfg = load_config(ROOT / "refit.yaml")
    write_base_data(store, cfg, rows=2000, seed=3)
    start = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta(days=40)
    produced = write_production_data(store, cfg, batches=3, rows_per_batch=400, seed=5, start=str(start))
    assert produced["labels"] > 1000  # 40 days back: nearly every label has arrived
    columns = list(cfg.feature_columns) + ["customer_id", "event_time", "churned"]
    joined = load_labelled_captures(
        store, "churn", target="churned", request_id_column="request_id", timestamp_column="event_time", columns=columns
    )
    assert len(joined) == produced["labels"]
    assert joined["churned"].isin([0, 1]).all()
    assert joined["_refit_source"].str.contains("captures/churn/requests/date=").all()
    # the window drops older requests: only the last batch's hour survives
    since = start + pd.Timedelta(hours=2)
    recent = load_labelled_captures(
        store,
        "churn",
        target="churned",
        request_id_column="request_id",
        timestamp_column="event_time",
        columns=columns,
        since=since,
    )
    assert 0 < len(recent) < len(joined)
    assert (pd.to_datetime(recent["event_time"], utc=True) >= since).all()

    handle, result = stage_validated(store, cfg, run_id="join", extra=joined)
    assert handle.rows == 2000 + len(joined) and handle.invalid_rows == 0

    # as of a day inside the base data's period: only what was known then. Base rows dated after
    # it were trained on too (only the captures were cut), so --as-of did not replay the past.
    times = pd.to_datetime(result.valid["event_time"], utc=True)
    as_of = times.sort_values().iloc[len(times) // 3].floor("s")
    then, _ = stage_validated(store, cfg, run_id="then", extra=joined, as_of=as_of.to_pydatetime())
    staged = read_frame(store, then.key)
    assert then.rows == int((times <= as_of).sum()) == len(staged) and then.later_rows == len(times) - then.rows
    assert pd.to_datetime(staged["event_time"], utc=True).max() <= as_of
    naive, _ = stage_validated(store, cfg, run_id="naive", extra=joined, as_of=as_of.tz_localize(None).to_pydatetime())
    assert naive.rows == then.rows  # a naive as_of is UTC, as everywhere


# The window of the two tests below: a day that starts at midnight UTC, so a label stamped a
# few minutes before its request (two services whose clocks disagree) lands in the partition
# of the day before the window starts.
END = pd.Timestamp("2026-03-02 12:00", tz="UTC")
START = END - pd.Timedelta(hours=36)  # 2026-03-01 00:00
COLUMNS = ["request_id", "event_time", "churned"]


def _captures(store) -> None:  # type: ignore[no-untyped-def]
    """Requests inside, before and after the window; labels corrected, skewed, and missing."""
    requests = pd.DataFrame(
        {
            "request_id": ["in-corrected", "in-unlabelled", "in-skewed", "before", "after"],
            "event_time": pd.to_datetime(
                ["2026-03-01 09:00", "2026-03-01 10:00", "2026-03-01 00:05", "2026-02-28 23:00", "2026-03-02 12:30"],
                utc=True,
            ),
            "churned": [None] * 5,  # a label column the requests carry is replaced by the joined one
        }
    )
    write_requests(store, "churn", requests)
    # a file outside the date partitions (a backfill): its rows' event times place them
    backfill = pd.DataFrame(
        {"request_id": ["in-backfill"], "event_time": pd.to_datetime(["2026-03-02 08:00"], utc=True)}
    )
    write_frame(store, f"{LAYOUT.capture_requests('churn')}backfill.parquet", backfill)
    labels = pd.DataFrame(
        {
            "request_id": ["in-corrected", "in-corrected", "in-skewed", "before", "after", "in-backfill"],
            "churned": [0, 1, 1, 1, 0, 0],
            "label_time": pd.to_datetime(
                [
                    "2026-03-02 10:00",  # corrected later the same day: the latest label wins
                    "2026-03-02 11:00",
                    "2026-02-28 23:58",  # 7 minutes before its request: yesterday's partition
                    "2026-03-01 01:00",
                    "2026-03-02 13:00",
                    "2026-03-02 09:00",
                ],
                utc=True,
            ),
        }
    )
    write_labels(store, "churn", labels.iloc[[1, 2, 3, 4, 5]])
    write_labels(store, "churn", labels.iloc[[0]])  # an older arrival, read last: time decides, not order


def test_training_and_drift_read_the_same_labelled_rows_for_a_window(store) -> None:  # type: ignore[no-untyped-def]
    """One reader: the rows training joins for a window are the rows drift judges decay on."""
    cfg = load_config(ROOT / "refit.yaml")
    _captures(store)
    training = load_labelled_captures(
        store,
        "churn",
        target="churned",
        request_id_column="request_id",
        timestamp_column="event_time",
        columns=COLUMNS,
        since=START,
        until=END,
    )
    window = monitoring.load_capture_window(store, cfg, as_of=END.to_pydatetime(), window_hours=36)
    drift = window.labelled()[COLUMNS]
    expected = {"in-corrected": 1, "in-skewed": 1, "in-backfill": 0}
    assert dict(zip(training["request_id"], training["churned"], strict=True)) == expected
    assert dict(zip(drift["request_id"], drift["churned"], strict=True)) == expected
    by_id = training.drop(columns="_refit_source").sort_values("request_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(by_id, drift.sort_values("request_id").reset_index(drop=True))
    assert sorted(window.frame["request_id"]) == ["in-backfill", "in-corrected", "in-skewed", "in-unlabelled"]


def test_drift_window_sees_the_captures_training_sees(store) -> None:  # type: ignore[no-untyped-def]
    """The copies disagreed: drift skipped files outside the date partitions, and labels whose
    partition is dated before the window's first day; training read both."""
    cfg = load_config(ROOT / "refit.yaml")
    _captures(store)
    training = load_labelled_captures(
        store,
        "churn",
        target="churned",
        request_id_column="request_id",
        timestamp_column="event_time",
        columns=COLUMNS,
        since=START,
    )
    assert {"in-skewed", "in-backfill"} <= set(training["request_id"])
    window = monitoring.load_capture_window(store, cfg, as_of=END.to_pydatetime(), window_hours=36)
    assert {"in-skewed", "in-backfill"} <= set(window.labels["request_id"])
    assert "in-backfill" in set(window.frame["request_id"])


def test_window_rows_keeps_the_latest_requests_in_time_order(local_store) -> None:  # type: ignore[no-untyped-def]
    _captures(local_store)
    window = read_captures(
        local_store,
        "churn",
        timestamp_column="event_time",
        request_id_column="request_id",
        target="churned",
        start=START,
        end=END,
        last_rows=2,
    )
    assert list(window.frame["request_id"]) == ["in-unlabelled", "in-backfill"]
    assert window.origins.str.endswith(".parquet").all() and len(window.origins) == 2
    assert window.labels["request_id"].is_unique


def test_no_captures_is_an_empty_frame_for_training_and_an_empty_window_for_drift(local_store) -> None:  # type: ignore[no-untyped-def]
    cfg = load_config(ROOT / "refit.yaml")
    empty = load_labelled_captures(
        local_store,
        "churn",
        target="churned",
        request_id_column="request_id",
        timestamp_column="event_time",
        columns=COLUMNS,
    )
    assert list(empty.columns) == [*COLUMNS, "_refit_source"] and empty.empty
    window = monitoring.load_capture_window(local_store, cfg, as_of=END.to_pydatetime(), window_hours=36)
    assert window.rows == 0 and (window.start, window.end) == (START.to_pydatetime(), END.to_pydatetime())
    assert monitoring.no_data_detail(local_store.uri, cfg, window) == (
        "no captured requests for churn between 2026-03-01 00:00 and 2026-03-02 12:00 UTC "
        f"under {local_store.uri}/captures/churn/requests"
    )


def test_labels_count_once_they_have_arrived_by_as_of(store) -> None:  # type: ignore[no-untyped-def]
    """A check as of 10:30 on 2 March sees the first label of 'in-corrected' (10:00), not its
    correction (11:00), and not the backfill's label if it arrived later: what it would have seen."""
    cfg = load_config(ROOT / "refit.yaml")
    _captures(store)
    as_of = pd.Timestamp("2026-03-02 10:30", tz="UTC")
    window = monitoring.load_capture_window(store, cfg, as_of=as_of.to_pydatetime(), window_hours=36)
    assert dict(zip(window.labelled()["request_id"], window.labelled()["churned"], strict=True)) == {
        "before": 1,  # 36 h before 10:30 reaches back to 28 February 22:30
        "in-corrected": 0,  # the 11:00 correction to 1 has not arrived yet
        "in-skewed": 1,
        "in-backfill": 0,  # arrived 09:00
    }
    later = monitoring.load_capture_window(store, cfg, as_of=END.to_pydatetime(), window_hours=36)
    assert dict(zip(later.labelled()["request_id"], later.labelled()["churned"], strict=True))["in-corrected"] == 1
    # training as of the same moment joins the same labels
    training = load_labelled_captures(
        store,
        "churn",
        target="churned",
        request_id_column="request_id",
        timestamp_column="event_time",
        columns=COLUMNS,
        since=START,
        until=as_of,
        known_at=as_of,
    )
    assert dict(zip(training["request_id"], training["churned"], strict=True)) == {
        "in-corrected": 0,
        "in-skewed": 1,
        "in-backfill": 0,
    }


def test_a_row_window_replaces_the_hours_instead_of_intersecting_them(local_store) -> None:  # type: ignore[no-untyped-def]
    """--window-rows 3 means the last three requests up to as_of, however old: with the YAML's 24 h
    still applied on top, a quiet day left nothing to check."""
    from flows.drift_check import DriftCheckParameters
    from refit.config_loader import resolve_run_parameters

    cfg = load_config(ROOT / "refit.yaml")
    assert cfg.drift.window_hours == 24
    _captures(local_store)
    as_of = pd.Timestamp("2026-03-04 12:00", tz="UTC")  # two days after the last request
    window = monitoring.load_capture_window(local_store, cfg, as_of=as_of.to_pydatetime(), window_rows=3)
    assert sorted(window.frame["request_id"]) == ["after", "in-backfill", "in-unlabelled"]
    assert window.start == pd.Timestamp("2026-03-01 10:00", tz="UTC") and window.end == as_of
    # the flow's parameters: a row count given, the YAML's hours are not added to it
    params = resolve_run_parameters(DriftCheckParameters(window_rows=3), cfg)
    assert (params.window_rows, params.window_hours) == (3, None)
    hours = resolve_run_parameters(DriftCheckParameters(window_hours=12), cfg)
    assert (hours.window_hours, hours.window_rows) == (12, None)
    assert resolve_run_parameters(DriftCheckParameters(), cfg).window_hours == 24
