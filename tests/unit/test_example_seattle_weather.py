"""The worked example on real data (examples/seattle_weather): Seattle's daily weather from the
vega_datasets package, replayed month by month through refit as the README's "Bring your own
data" section does, with the decisions asserted."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from refit.config_loader import load_config
from refit.io import LocalStore
from refit.replay import replay

pytestmark = pytest.mark.slow  # trains models and smoke-tests them in a child process

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seattle_weather"


def _prepare() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seattle_weather_prepare", EXAMPLE / "prepare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_data_becomes_base_data_a_history_and_captures(tmp_path: Path) -> None:
    prepare = _prepare()
    frame = prepare.forecasts()
    assert len(frame) == 1460  # 1,461 days, the last has no tomorrow
    # issued when the day ends in Seattle (local midnight: 08:00 UTC in winter, 07:00 in summer);
    # the label is tomorrow's high, known when tomorrow ends
    row, summer = frame.iloc[0], frame.iloc[180]
    assert row["forecast_id"] == "F2012-01-01" and row["next_temp_max"] == 10.6
    assert row["issued_at"] == pd.Timestamp("2012-01-02 08:00", tz="UTC")
    assert row["label_time"] == pd.Timestamp("2012-01-03 08:00", tz="UTC")
    assert summer["forecast_id"] == "F2012-06-29" and summer["issued_at"] == pd.Timestamp("2012-06-30 07:00", tz="UTC")
    store = LocalStore(tmp_path / "store")
    out = prepare.write(store, tmp_path / "history.csv", captures_until="2012-07-12")
    assert out["base_rows"] == 182 and out["history_rows"] == 1278  # Jan-Jun 2012; Jul 2012 on
    assert out["captured_rows"] == 10
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["forecast_id"].iloc[0] == "F2012-07-01" and "label_time" in history.columns
    assert store.exists(prepare.BASE_KEY)
    from refit.capture import read_captures

    captured = read_captures(
        store,
        "seattle_weather",
        timestamp_column="issued_at",
        request_id_column="request_id",
        target="next_temp_max",
        known_at=pd.Timestamp("2012-07-08", tz="UTC"),
    )
    # ten requests; by July 8 00:00 UTC (July 7, 17:00 in Seattle) the labels of the forecasts
    # for July 1 to 5 have arrived (the one for July 6 is tomorrow's high: known when July 7 ends)
    assert len(captured.frame) == 10 and len(captured.labelled(captured.frame)) == 5


def test_replay_detects_the_seasons_and_never_promotes_past_a_failed_segment(tmp_path: Path) -> None:
    prepare = _prepare()
    store = LocalStore(tmp_path / "replay")
    base, history = prepare.split(prepare.forecasts())
    store.put_bytes(prepare.BASE_KEY, base.to_csv(index=False).encode())
    sys.modules.pop("seattle_weather_schemas", None)
    config = load_config(EXAMPLE / "refit.yaml")  # the schema module is found beside the YAML
    result = replay(
        store,
        config,
        history,
        window=timedelta(days=30),
        start=datetime(2012, 7, 1, tzinfo=UTC),
        end=datetime(2012, 9, 29, tzinfo=UTC),
    )
    assert [w.rows for w in result.windows] == [29, 30, 30]
    first = result.windows[0]
    # trained on January to June, served in July: the temperatures have moved
    assert first.drift_detected and {"temp_max", "temp_min"} <= set(first.drifted_columns)
    assert first.decision == "trigger" and result.triggers[0] == 0
    # the README's story: July's and August's candidates are promoted, September's is no better
    assert [w.retrain_outcome for w in result.windows] == ["PROMOTE", "PROMOTE", "INCONCLUSIVE"]
    for w in result.windows:
        if w.retrain_outcome == "PROMOTE":
            assert w.failed_segments == [] and w.champion_after == w.new_version
        elif w.retrain_outcome is not None:
            assert w.champion_after == w.serving_version
        # any model beats the naive forecast (the mean of the base data's highs) in summer
        assert w.serving_metric is not None and w.baseline_metric is not None
        assert w.serving_metric < w.baseline_metric / 2
    # retraining on the summer pays: by September the serving champion forecasts better than
    # the first model, frozen since June
    assert result.promotions and result.windows[-1].serving_version != result.first_version
    last = result.windows[-1]
    assert last.serving_metric is not None and last.frozen_metric is not None
    assert last.serving_metric < last.frozen_metric
    md = result.to_markdown()
    assert "Replay of seattle_weather: 3 windows of 30 days" in md and "rmse" in md
