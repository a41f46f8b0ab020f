"""refit replay: a history, window by window, through capture, drift check, governor, retrain and gate."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from refit.config_loader import load_config
from refit.demo import production_history
from refit.errors import RefitError
from refit.replay import ReplayResult, parse_window, replay
from tests.flows.helpers import make_project

pytestmark = pytest.mark.slow  # trains models and smoke-tests them in a child process

WEEK = timedelta(days=7)


def _replay(tmp_path: Path, drift: str, label_delay: timedelta | None = None, **history: object) -> ReplayResult:
    config_path, store = make_project(tmp_path, rows=6000)
    frame = production_history(weeks=4, rows_per_week=1200, drift=drift, drift_from_week=2, strength=1.5, **history)  # type: ignore[arg-type]
    if label_delay is not None:  # labels arrive this long after the request, not the generator's 1 to 60 days
        frame = frame.drop(columns=["label_time"])
    cfg = load_config(config_path)
    result = replay(store, cfg, frame, window=WEEK, label_delay=label_delay or timedelta(0))
    with pytest.raises(RefitError, match="already holds versions of churn: a replay starts on an empty store"):
        replay(store, cfg, frame, window=WEEK)
    uris = result.save(store)
    assert json.loads(Path(uris["json"]).read_text())["windows"][0]["rows"] == 1200
    assert Path(uris["png"]).read_bytes()[:4] == b"\x89PNG" and "| # | window end |" in Path(uris["md"]).read_text()
    return result


def test_no_drift_history_never_triggers(tmp_path: Path) -> None:
    result = _replay(tmp_path, "none")
    assert [w.rows for w in result.windows] == [1200] * 4
    assert result.triggers == [] and {w.decision for w in result.windows} == {"none"}
    assert {w.serving_version for w in result.windows} == {result.first_version}
    # the first model beats the naive baseline on every window's labels
    assert all(w.serving_metric is not None and w.serving_metric > w.baseline_metric + 0.1 for w in result.windows)  # type: ignore[operator]


def test_injected_drift_triggers_within_one_window(tmp_path: Path) -> None:
    result = _replay(tmp_path, "covariate")
    assert [w.decision for w in result.windows[:2]] == ["none", "none"]  # in distribution
    assert result.triggers and result.triggers[0] in (2, 3)  # drift starts in window 2
    trig = result.windows[result.triggers[0]]
    assert trig.drift_detected and {"tenure_months", "monthly_charges"} & set(trig.drifted_columns)
    assert trig.retrain_outcome in ("PROMOTE", "INCONCLUSIVE", "REJECT") and trig.gain is not None


def test_concept_drift_in_a_segment_never_promotes_past_a_failed_segment(tmp_path: Path) -> None:
    result = _replay(tmp_path, "concept", label_delay=timedelta(hours=1), segment={"region": "south"})
    assert [w.decision for w in result.windows[:2]] == ["none", "none"]
    # the inputs look the same; the outcomes in the south do not: decay there triggers
    trig = result.windows[result.triggers[0]]
    assert result.triggers[0] in (2, 3) and not trig.drift_detected
    assert any(s.startswith("region=south") for s in trig.decayed_segments)
    retrained = [w for w in result.windows if w.retrain_outcome is not None]
    for w in retrained:
        if w.retrain_outcome == "PROMOTE":
            assert w.failed_segments == [] and w.champion_after == w.new_version
        else:
            assert w.champion_after == w.serving_version  # the champion stays
    # the serving champion is always a registered version and the first one never changes
    assert all(w.serving_version is not None for w in result.windows)
    assert result.windows[-1].frozen_metric is not None


def test_windows_are_whole_hours() -> None:
    assert parse_window("7d") == WEEK and parse_window("36h") == timedelta(hours=36)
    assert parse_window("0h", allow_zero=True) == timedelta(0)
    for bad in ("0h", "1.5h", "week"):
        with pytest.raises(RefitError):
            parse_window(bad)
