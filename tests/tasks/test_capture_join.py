"""Labelled production captures join into the training data, inside the window."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from refit.capture import load_labelled_captures
from refit.config import load_config
from refit.data import stage_validated
from refit.demo import write_base_data, write_production_data

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
