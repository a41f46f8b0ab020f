"""gate.evaluate_on: the gate judges the holdout, the most recent production window, or both."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from refit.config import DatasetConfig, GateConfig
from refit.config_loader import parse_config
from refit.errors import ConfigError
from refit.evaluation import Outcome
from refit.evaluation.recent import judge, recent_rows

DATASET = DatasetConfig.model_validate(
    {
        "name": "m",
        "sources": ["x"],
        "schema": "schemas.churn:ChurnTrainingSchema",
        "target": "y",
        "task": "regression",
        "id_column": "id",
        "timestamp_column": "t",
        "segments": [{"column": "zone"}],
    }
)


def _season_change(old: int = 1000, recent: int = 300) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Test rows of last season and of the last 30 days. The champion learned last season and
    is off by +3 now; the candidate is right now and noisier on last season's rows."""
    rng = np.random.default_rng(0)
    n = old + recent
    t = np.r_[
        pd.date_range("2012-01-01", "2012-05-01", periods=old, tz="UTC").asi8,
        pd.date_range("2012-06-05", "2012-06-30", periods=recent, tz="UTC").asi8,
    ]
    frame = pd.DataFrame({"t": pd.to_datetime(t, utc=True), "zone": np.where(np.arange(n) % 2, "a", "b")})
    y = rng.normal(20, 5, n)
    is_recent = np.arange(n) >= old
    champion = y + rng.normal(0, 1, n) + np.where(is_recent, 3.0, 0.0)
    candidate = y + rng.normal(0, 1, n) * np.where(is_recent, 1.0, 2.0)
    return frame, y, candidate, champion


def _gate(**kw: object) -> GateConfig:
    cfg = parse_config(
        {"dataset": DATASET.model_dump(mode="json", by_alias=True), "gate": {"min_segment_size": 100, **kw}}
    )
    return cfg.gate


def test_the_default_judges_the_whole_holdout() -> None:
    frame, y, cand, champ = _season_change()
    gate = _gate()
    assert gate.evaluate_on == "holdout"
    decision = judge("regression", y, cand, champ, frame, gate, DATASET)
    assert decision.n_rows == 1300 and decision.evaluated_on == "holdout"
    assert decision.outcome != Outcome.PROMOTE  # last season's rows outvote what production sees now


def test_recent_judges_the_last_window_and_promotes_what_production_needs() -> None:
    frame, y, cand, champ = _season_change()
    decision = judge("regression", y, cand, champ, frame, _gate(evaluate_on="recent"), DATASET)
    assert decision.outcome == Outcome.PROMOTE and decision.evaluated_on == "recent"
    assert (
        decision.n_rows == 300 and "the 300 test rows of the last 30 days up to 2012-06-30" in decision.evaluation_note
    )
    # the per-segment rules still apply, on the recent rows
    assert {s.scope for s in decision.segments} == {"zone=a", "zone=b"} and all(s.n == 150 for s in decision.segments)
    assert decision.gain is not None and decision.ci_low is not None and decision.ci_low > 1.5


def test_too_few_recent_rows_fall_back_to_the_holdout_and_say_so() -> None:
    frame, y, cand, champ = _season_change()
    gate = _gate(evaluate_on="recent", recent_min_rows=500)
    decision = judge("regression", y, cand, champ, frame, gate, DATASET)
    holdout = judge("regression", y, cand, champ, frame, _gate(), DATASET)
    assert decision.evaluated_on == "holdout" and decision.n_rows == 1300
    assert decision.outcome == holdout.outcome
    assert "only 300 test rows in the last 30 days" in decision.evaluation_note
    assert "gate.recent_min_rows 500" in decision.evaluation_note
    mask, _ = recent_rows(frame["t"], _gate(evaluate_on="recent", recent_days=10, recent_min_rows=50))
    assert mask is not None and int(mask.sum()) == 120  # June 20 to 30 of the 25 recent days


def test_both_promotes_only_when_both_promote() -> None:
    frame, y, cand, champ = _season_change()
    holdout = judge("regression", y, cand, champ, frame, _gate(), DATASET)
    decision = judge("regression", y, cand, champ, frame, _gate(evaluate_on="both"), DATASET)
    assert decision.evaluated_on == "both" and decision.outcome != Outcome.PROMOTE
    expected = Outcome.REJECT if holdout.gate_outcome == Outcome.REJECT else Outcome.INCONCLUSIVE
    assert decision.gate_outcome == expected
    assert f"holdout (1,300 rows): {holdout.gate_outcome}" in decision.evaluation_note
    assert "recent, the 300 test rows" in decision.evaluation_note and "PROMOTE" in decision.evaluation_note
    # where the holdout agrees, both promotes
    agree = judge(
        "regression", y[1000:], cand[1000:], champ[1000:], frame.iloc[1000:], _gate(evaluate_on="both"), DATASET
    )
    assert agree.outcome == Outcome.PROMOTE and agree.evaluated_on == "both"


def test_first_run_has_nothing_to_compare_and_says_so() -> None:
    frame, y, cand, _ = _season_change()
    decision = judge("regression", y, cand, None, frame, _gate(evaluate_on="recent"), DATASET)
    assert decision.first_run and decision.evaluated_on == "holdout" and "first run" in decision.evaluation_note


def test_an_unknown_evaluate_on_is_one_line_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"invalid value for 'gate.evaluate_on'"):
        _gate(evaluate_on="latest")


def test_registration_records_the_whole_holdout_whichever_rows_were_judged() -> None:
    from refit.pipeline import registered_metrics

    frame, y, cand, champ = _season_change()
    cfg = parse_config({"dataset": DATASET.model_dump(mode="json", by_alias=True), "gate": {"min_segment_size": 100}})
    holdout = judge("regression", y, cand, champ, frame, cfg.gate, DATASET)
    recorded = registered_metrics(frame, y, cand, cfg)
    del recorded["overall"]
    # the same values the gate reports when it judges the holdout, with their standard errors
    values = {scope: {"n": v["n"], "rmse": v["rmse"]} for scope, v in recorded.items()}
    assert values == {s.scope: {"n": s.n, "rmse": pytest.approx(s.candidate)} for s in holdout.segments}
    assert all(0 < v["rmse_se"] < 0.2 for v in recorded.values())
    recent = judge("regression", y, cand, champ, frame, _gate(evaluate_on="recent"), DATASET)
    assert {s.n for s in recent.segments} == {150} and {v["n"] for v in recorded.values()} == {650}
