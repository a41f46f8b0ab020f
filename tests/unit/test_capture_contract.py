"""Requests are captured before their label exists: the capture contract lets the target be absent."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.typing.pandas import Series

from refit import monitoring
from refit.capture import write_labels, write_requests
from refit.config_loader import load_config
from refit.errors import ValidationFailedError
from refit.validation import check_frame_shape, validate_frame

ROOT = Path(__file__).resolve().parents[2]


class Captured(pa.DataFrameModel):
    request_id: Series[str]
    x: Series[float] = pa.Field(ge=0)
    y: Series[float] | None = pa.Field(isin=[0.0, 1.0], nullable=True)

    class Config:
        strict = True
        coerce = True


def test_an_optional_column_may_be_absent_and_is_checked_when_present() -> None:
    requests = pd.DataFrame({"request_id": ["a", "b", "c"], "x": [1.0, -1.0, 2.0]})
    result = validate_frame(requests, Captured, source="requests.parquet", max_invalid_fraction=0.9)
    assert result.valid["request_id"].tolist() == ["a", "c"]
    assert [(f.column, f.rule) for f in result.summary.failures] == [("x", ">=(0)")]

    labelled = requests.assign(y=[1.0, None, 3.0])
    result = validate_frame(labelled, Captured, source="requests.parquet", max_invalid_fraction=0.9)
    assert result.valid["request_id"].tolist() == ["a"]
    assert sorted(result.quarantine["_refit_errors"]) == ["x: >=(0) (got -1.0)", "y: isin([0.0, 1.0]) (got 3.0)"]


def test_a_required_column_that_is_absent_still_stops_the_file() -> None:
    with pytest.raises(ValidationFailedError, match=r"^requests.parquet: missing required column\(s\) x "):
        check_frame_shape(pd.DataFrame({"request_id": ["a"]}), Captured, "requests.parquet")


def test_the_drift_check_reads_requests_logged_without_the_target(local_store) -> None:  # type: ignore[no-untyped-def]
    cfg = load_config(ROOT / "refit.yaml")
    now = pd.Timestamp.now(tz="UTC").floor("h")
    features = {
        "region": ["north", "south"],
        "plan": ["basic", "premium"],
        "channel": ["organic", "paid_search"],
        "age": [30.0, None],
        "tenure_months": [3, 40],
        "monthly_charges": [20.0, 80.0],
        "total_charges": [60.0, 3200.0],
        "support_tickets": [0, 2],
        "days_since_last_login": [1, 9],
        "sessions_per_week": [3.0, 1.0],
        "num_devices": [1, 2],
        "payment_failures": [0, 1],
        "discount_pct": [0.0, 0.1],
        "autopay": [True, False],
    }
    requests = pd.DataFrame(
        features
        | {
            "customer_id": [1, 2],
            "request_id": ["r1", "r2"],
            "event_time": [now - pd.Timedelta(hours=2), now - pd.Timedelta(hours=1)],
            "prediction": [0.2, 0.7],
            "model_version": ["1", "1"],
        }
    )
    assert "churned" not in requests  # as serving logs them: the label does not exist yet
    write_requests(local_store, "churn", requests)
    write_labels(
        local_store,
        "churn",
        pd.DataFrame({"request_id": ["r2"], "churned": [1.0], "label_time": [now - pd.Timedelta(minutes=5)]}),
    )
    window = monitoring.load_capture_window(local_store, cfg, as_of=now.to_pydatetime(), window_hours=24)
    valid = monitoring.validate_captures(local_store, cfg, window).valid
    assert valid["request_id"].tolist() == ["r1", "r2"]
    labelled = window.labelled(valid)
    assert labelled["request_id"].tolist() == ["r2"] and labelled["churned"].tolist() == [1.0]

    # a few bad requests (1 of 3 here, 33%: over training's 1%) are quarantined and the check goes on
    # with the rest; it stopped every check of the window before, until the rows aged out
    write_requests(local_store, "churn", requests.iloc[:1].assign(request_id="r3", autopay="maybe"))
    window = monitoring.load_capture_window(local_store, cfg, as_of=now.to_pydatetime(), window_hours=24)
    result = monitoring.validate_captures(local_store, cfg, window)
    assert result.valid["request_id"].tolist() == ["r1", "r2"] and result.summary.invalid_rows == 1
    assert "1 of 3 rows invalid (33.33% <= max 50.00%): autopay" in result.summary.one_line()
    # past validation.max_invalid_capture_fraction (most of them bad: a serving fault) the check stops
    write_requests(local_store, "churn", requests.iloc[:1].assign(request_id="r4", autopay="maybe"))
    window = monitoring.load_capture_window(local_store, cfg, as_of=now.to_pydatetime(), window_hours=24)
    with pytest.raises(ValidationFailedError, match=r"2 of 4 rows invalid \(50.00% > max 40.00%\)"):
        monitoring.validate_captures(
            local_store,
            cfg.model_copy(
                update={"validation": cfg.validation.model_copy(update={"max_invalid_capture_fraction": 0.4})}
            ),
            window,
        )
