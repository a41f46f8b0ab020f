"""Gate and decay thresholds follow the metric's scale: no AUC-sized default judges an RMSE."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from refit.config import PipelineConfig
from refit.config_loader import parse_config
from refit.decay import compute_decay
from refit.evaluation import Outcome, evaluate_gate


def _config(task: str, gate: dict[str, Any] | None = None, drift: dict[str, Any] | None = None) -> PipelineConfig:
    raw: dict[str, Any] = {
        "dataset": {
            "name": "bikes",
            "sources": ["rides.csv"],
            "schema": "m:C",
            "target": "rides",
            "task": task,
            "id_column": "id",
            "timestamp_column": "ts",
            "segments": [{"column": "station"}],
        },
        "gate": {"bootstrap_resamples": 300, "seed": 3, **(gate or {})},
    }
    if drift is not None:
        raw["drift"] = drift
    return parse_config(raw)


def test_defaults_follow_the_metric_scale() -> None:
    reg = _config("regression")
    assert reg.gate.primary_metric == "rmse"
    assert (reg.gate.max_segment_regression, reg.gate.max_relative_segment_regression) == (None, 0.05)
    assert (reg.gate.max_improvement, reg.gate.max_relative_improvement) == (None, 0.8)
    assert (reg.drift.decay_tolerance, reg.drift.decay_relative_tolerance) == (None, 0.10)
    assert reg.gate.segment_tolerance(40.0) == pytest.approx(2.0)
    assert reg.gate.improvement_limit(40.0) == pytest.approx(32.0)
    assert reg.drift.decay_limit(40.0) == pytest.approx(4.0)

    binary = _config("binary")
    assert (binary.gate.max_segment_regression, binary.gate.max_relative_segment_regression) == (0.02, None)
    assert (binary.gate.max_improvement, binary.drift.decay_tolerance) == (0.2, 0.05)
    assert binary.gate.segment_tolerance(0.8) == 0.02 and binary.drift.decay_limit(0.8) == 0.05
    # an AUC-scale metric on a regression task (R²) keeps the absolute defaults
    assert _config("regression", {"primary_metric": "r2"}).gate.max_segment_regression == 0.02


def test_what_the_yaml_says_wins_and_survives_the_round_trip() -> None:
    cfg = _config(
        "regression",
        {"max_segment_regression": 0.5, "max_relative_improvement": None, "max_improvement": 10.0},
        {"decay_tolerance": 3.0, "decay_relative_tolerance": None},
    )
    assert cfg.gate.segment_tolerance(40.0) == pytest.approx(2.0)  # the larger of 0.5 and 5% of 40
    assert cfg.gate.improvement_limit(40.0) == 10.0
    assert cfg.drift.decay_limit(40.0) == 3.0
    assert PipelineConfig.model_validate(cfg.to_dict()) == cfg  # stored beside a model, read back the same


def _rides(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y = rng.gamma(4.0, 100.0, n)  # hourly rides: hundreds, RMSE in the tens
    station = rng.choice(["north", "south", "east", "west"], n)
    champion = y + rng.normal(0, 40, n)
    return y, champion, pd.DataFrame({"station": station})


def test_an_honest_rmse_gain_is_no_leakage() -> None:
    y, champion, frame = _rides(6000, 1)
    candidate = y + (champion - y) * 0.93  # 7% less error: about 2.8 RMSE on 40
    cfg = _config("regression")
    d = evaluate_gate("regression", y, candidate, champion, frame, cfg.gate, cfg.dataset)
    assert 2.0 < d.gain < 3.5
    assert d.outcome == Outcome.PROMOTE, d.headline  # an absolute 0.2 leakage guard rejected this
    assert not [c for c in d.checks if c.name == "leakage_guard" and c.passed is False]


def test_a_leak_sized_rmse_gain_is_still_caught() -> None:
    y, champion, frame = _rides(3000, 2)
    leak = y + (champion - y) * 0.05  # the error cut by 95%: the target leaked into a feature
    cfg = _config("regression")
    d = evaluate_gate("regression", y, leak, champion, frame, cfg.gate, cfg.dataset)
    assert d.outcome == Outcome.REJECT and "leakage" in d.headline


def test_a_small_segment_loss_in_rmse_units_is_within_tolerance() -> None:
    y, champion, frame = _rides(8000, 3)
    error = champion - y
    north = (frame["station"] == "north").to_numpy()
    # 1.25% worse in north (about 0.5 RMSE, certain: the errors are scaled, not resampled),
    # 10% better elsewhere
    candidate = y + np.where(north, error * 1.0125, error * 0.90)
    cfg = _config("regression")
    d = evaluate_gate("regression", y, candidate, champion, frame, cfg.gate, cfg.dataset)
    row = next(s for s in d.segments if s.value == "north")
    assert -1.0 < row.gain < -0.2 and row.ci_high < -0.02  # a clear loss, far beyond an AUC-sized 0.02
    assert d.max_segment_regression == pytest.approx(0.05 * d.champion_value)
    assert row.passed is True and d.outcome == Outcome.PROMOTE, d.headline
    # a loss beyond 5% of the champion's error still rejects
    worse = y + np.where(north, error * 1.15, error * 0.90)
    d = evaluate_gate("regression", y, worse, champion, frame, cfg.gate, cfg.dataset)
    assert d.outcome == Outcome.REJECT and "north" in d.headline


def test_decay_in_rmse_is_judged_relative_to_the_registered_error() -> None:
    cfg = _config("regression", drift={"decay_min_rows": 50}).drift
    rng = np.random.default_rng(4)
    y = rng.gamma(4.0, 100.0, 2000)
    noise = rng.normal(0, 1, len(y))
    noise = noise / np.sqrt(np.mean(noise**2))  # RMSE exactly the scale below
    slightly = compute_decay(y, y + 41.5 * noise, {"overall": 40.0}, cfg, metric="rmse")
    assert slightly.overall.drop == pytest.approx(1.5) and not slightly.decayed  # 0.05 absolute fired here
    clearly = compute_decay(y, y + 46.0 * noise, {"overall": 40.0}, cfg, metric="rmse")
    assert clearly.overall.drop == pytest.approx(6.0) and clearly.decayed and clearly.tolerance == pytest.approx(4.0)
