"""Search space expansion and candidate selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refit.config import CandidateSpec
from refit.errors import ConfigError, DataError
from refit.io.local import LocalStore
from refit.training import TrainingError
from refit.training.search import expand_params, prepare_data, select_candidate
from tests.unit.training_frames import churn_frame, make_config, multiclass_frame, regression_frame, split

CPU = torch.device("cpu")


def spec(**kw) -> CandidateSpec:  # type: ignore[no-untyped-def]
    return CandidateSpec(**{"family": "torch_mlp", **kw})


def test_grid_walks_sorted_keys_in_written_order_capped_at_budget() -> None:
    trials = expand_params(spec(params={"lr": [0.1, 0.01], "dropout": [0.0, 0.5], "width": 8}, budget=3), seed=1)
    assert trials == [
        {"dropout": 0.0, "lr": 0.1, "width": 8},
        {"dropout": 0.0, "lr": 0.01, "width": 8},
        {"dropout": 0.5, "lr": 0.1, "width": 8},
    ]
    assert expand_params(spec(params={}, budget=3), seed=1) == [{}]


def test_grid_rejects_ranges_and_bad_mappings() -> None:
    with pytest.raises(ConfigError, match="ranges need search: random"):
        expand_params(spec(params={"lr": {"low": 0.001, "high": 0.1}}), seed=1)
    with pytest.raises(ConfigError, match="must be a range"):
        expand_params(spec(params={"lr": {"min": 1}}), seed=1)
    with pytest.raises(ConfigError, match="log range needs low > 0"):
        expand_params(spec(params={"lr": {"low": 0, "high": 1, "log": True}}, search="random"), seed=1)
    with pytest.raises(ConfigError, match="empty list"):
        expand_params(spec(params={"lr": []}), seed=1)


def test_random_search_is_seeded_and_respects_ranges() -> None:
    params = {
        "lr": {"low": 1e-4, "high": 1e-1, "log": True},
        "width": {"low": 8, "high": 64, "int": True},
        "dropout": [0.0, 0.1, 0.2],
        "depth": 2,
    }
    a = expand_params(spec(params=params, search="random", budget=5), seed=7)
    b = expand_params(spec(params=params, search="random", budget=5), seed=7)
    c = expand_params(spec(params=params, search="random", budget=5), seed=8)
    assert a == b and a != c and len(a) == 5
    for trial in a:
        assert 1e-4 <= trial["lr"] <= 1e-1 and isinstance(trial["width"], int) and 8 <= trial["width"] <= 64
        assert trial["dropout"] in (0.0, 0.1, 0.2) and trial["depth"] == 2
    assert len({tuple(sorted(t.items())) for t in a}) == 5  # no duplicates


def test_random_search_over_a_small_grid_is_the_grid() -> None:
    trials = expand_params(spec(params={"lr": [0.1, 0.2]}, search="random", budget=5), seed=1)
    assert trials == [{"lr": 0.1}, {"lr": 0.2}]


def test_prepare_data_encodes_classes_and_rejects_unseen_ones() -> None:
    train, val = split(multiclass_frame(200))
    data = prepare_data(train, val, make_config("multiclass"))
    assert data.task == "multiclass" and data.classes == ["high", "low", "mid"]
    assert set(np.unique(data.y)) == {0, 1, 2}
    val = val.copy()
    val.loc[0, "label"] = "extreme"
    with pytest.raises(DataError, match="not in training: extreme"):
        prepare_data(train, val, make_config("multiclass"))
    with pytest.raises(DataError, match="single class"):
        prepare_data(train.assign(label="low"), val, make_config("multiclass"))


def test_select_candidate_records_every_trial_and_picks_the_best(tmp_path) -> None:  # type: ignore[no-untyped-def]
    train, val = split(churn_frame(600))
    config = make_config(
        candidates=[
            {"family": "linear", "params": {"C": [0.01, 1.0]}},
            {"family": "hist_gradient_boosting", "params": {"max_iter": 20, "learning_rate": [0.05, 0.2]}, "budget": 1},
            {"family": "torch_mlp", "params": {"hidden": [[16]], "max_epochs": 2}},
        ]
    )
    epochs = []
    store = LocalStore(tmp_path)
    result = select_candidate(train, val, config, store, "runs/r1", CPU, on_epoch=epochs.append)
    assert [(t.family, t.index) for t in result.trials] == [
        ("linear", 0), ("linear", 1), ("hist_gradient_boosting", 2), ("torch_mlp", 3),
    ]  # fmt: skip
    assert result.trials[2].params == {"learning_rate": 0.05, "max_iter": 20}  # budget 1 caps the grid
    assert all(t.status == "ok" and t.train_s > 0 and "roc_auc" in t.metrics for t in result.trials)
    assert result.primary_metric == "roc_auc" and result.higher_is_better
    best = max(result.trials, key=lambda t: t.primary)
    assert result.best_trial is best and result.best.family == best.family
    assert [(e["family"], e["trial"], e["epoch"]) for e in epochs] == [("torch_mlp", 3, 1), ("torch_mlp", 3, 2)]
    mlp = result.trials[3]
    assert mlp.epochs == 2 and store.exists(f"runs/r1/checkpoints/{mlp.run_key}/latest.json")
    proba = result.best.predict_proba(val)
    assert proba.shape == (len(val), 2)
    assert set(result.best.predict(val)) <= {0, 1}
    # The same search again resumes the finished MLP trial from its checkpoint.
    again = select_candidate(train, val, config, store, "runs/r1", CPU)
    assert again.trials[3].resumed_from_epoch == 2
    assert [t.primary for t in again.trials] == [t.primary for t in result.trials]


@pytest.mark.parametrize("metric", ["log_loss", "pr_auc"])
def test_selection_ranks_trials_by_the_gate_metric(metric: str) -> None:
    """On this data ROC AUC prefers C=0.1 and both log loss and PR AUC prefer C=1: the trial
    chosen is the one the gate's ``primary_metric`` prefers."""
    train, val = split(churn_frame(600))
    candidates = [{"family": "linear", "params": {"C": [0.1, 1.0]}}]
    by_auc = select_candidate(train, val, make_config(candidates=candidates), None, "", CPU)
    assert by_auc.primary_metric == "roc_auc" and by_auc.best_trial.index == 0
    config = make_config(candidates=candidates, gate={"primary_metric": metric})
    result = select_candidate(train, val, config, None, "", CPU)
    assert result.primary_metric == metric and result.higher_is_better == (metric == "pr_auc")
    assert result.best_trial.index == 1 and result.best.params["C"] == 1.0
    assert [t.primary for t in result.trials] == [t.metrics[metric] for t in result.trials]


def test_a_binary_task_refuses_labels_the_gate_cannot_judge_before_training(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import refit.training.sklearn_models as sklearn_models

    monkeypatch.setattr(sklearn_models, "train_sklearn", lambda *a, **k: pytest.fail("trained before checking"))
    train, val = split(churn_frame(300))
    config = make_config(candidates=[{"family": "linear"}])
    strings = train.assign(churned=np.where(train["churned"] == 1, "yes", "no"))
    with pytest.raises(DataError, match="binary task needs 0/1 \\(or boolean\\) labels in 'churned', got: no, yes"):
        select_candidate(strings, val, config, None, "", CPU)
    with pytest.raises(DataError, match="got: 0, 1, 2"):
        select_candidate(train, val.assign(churned=val.index % 3), config, None, "", CPU)
    data = prepare_data(train.assign(churned=train["churned"] == 1), val.assign(churned=val["churned"] == 1), config)
    assert data.task == "binary" and data.classes == [False, True]


def test_ties_go_to_the_earlier_trial() -> None:
    train, val = split(regression_frame(300))
    config = make_config("regression", candidates=[
        {"family": "linear", "params": {"alpha": 1.0}},
        {"family": "linear", "params": {"alpha": 1.0}},
    ])  # fmt: skip
    result = select_candidate(train, val, config, None, "", CPU)
    assert result.trials[0].primary == result.trials[1].primary
    assert result.best_trial.index == 0
    assert result.primary_metric == "rmse" and not result.higher_is_better


def test_multiclass_search_predicts_labels() -> None:
    train, val = split(multiclass_frame(300))
    config = make_config("multiclass", candidates=[{"family": "linear"}])
    result = select_candidate(train, val, config, None, "", CPU)
    assert result.primary_metric == "log_loss"
    assert set(result.best.predict(val)) <= {"high", "low", "mid"}
    assert result.best.predict_proba(val).shape == (len(val), 3)


def test_failed_trials_are_recorded_and_all_failing_is_an_error(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import refit.training.torch_mlp as torch_mlp

    def diverge(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise TrainingError("training loss became nan in epoch 1; lower the learning rate")

    monkeypatch.setattr(torch_mlp, "train_torch", diverge)
    train, val = split(regression_frame(200))
    config = make_config("regression", candidates=[{"family": "torch_mlp"}, {"family": "linear"}])
    result = select_candidate(train, val, config, None, "", CPU)
    failed, ok = result.trials
    assert (failed.status, failed.primary) == ("failed", None) and "loss became nan" in failed.error
    assert ok.status == "ok" and result.best_trial is ok
    config = make_config("regression", candidates=[{"family": "torch_mlp"}])
    with pytest.raises(TrainingError, match="no trial produced a usable model: torch_mlp#0: .*loss became nan"):
        select_candidate(train, val, config, None, "", CPU)


def test_config_mistakes_fail_before_any_training(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import refit.training.sklearn_models as sklearn_models

    monkeypatch.setattr(sklearn_models, "train_sklearn", lambda *a, **k: pytest.fail("trained before checking"))
    train, val = split(regression_frame(200))
    config = make_config("regression", candidates=[
        {"family": "linear"},
        {"family": "torch_mlp", "params": {"max_epochs": 1, "bogus": 1}},
    ])  # fmt: skip
    with pytest.raises(ConfigError, match="unknown torch_mlp params: bogus"):
        select_candidate(train, val, config, None, "", CPU)


def test_bad_targets_are_data_errors() -> None:
    train, val = split(regression_frame(200))
    config = make_config("regression")
    with pytest.raises(DataError, match="infinite"):
        prepare_data(train.assign(y=np.inf), val, config)
    with pytest.raises(DataError, match="missing target"):
        prepare_data(train.assign(y=np.nan), val, config)


def test_a_validation_split_with_one_class_is_explained() -> None:
    train, val = split(churn_frame(300))
    val = val[val["churned"] == 0]
    with pytest.raises(TrainingError, match="validation roc_auc is nan.*every class"):
        select_candidate(train, val, make_config(candidates=[{"family": "linear"}]), None, "", CPU)
