"""search: optuna: seeded TPE, trial and time budgets, median pruning of torch trials."""

from __future__ import annotations

import itertools

import torch

from refit.config import CandidateSpec
from refit.training.optuna_search import run_study
from refit.training.search import Trial, select_candidate
from tests.unit.training_frames import churn_frame, make_config, split

HGB_SPACE = {
    "max_iter": {"low": 5, "high": 40, "int": True},
    "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
    "max_leaf_nodes": [7, 15, 31],
}


def _search(candidates: list[dict[str, object]], seed: int = 0, **training: object):  # type: ignore[no-untyped-def]
    train, val = split(churn_frame(500, seed=1))
    config = make_config("churn", candidates=candidates, seed=seed, **training)
    return select_candidate(train, val, config, None, "", torch.device("cpu"))


def test_the_same_seed_gives_the_same_study_and_the_best_trial_wins() -> None:
    spec = {"family": "hist_gradient_boosting", "params": HGB_SPACE, "search": "optuna", "budget": 6}
    a, b, c = _search([spec]), _search([spec]), _search([spec], seed=5)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.primary for t in a.trials] == [t.primary for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]
    assert [t.study["number"] for t in a.trials] == list(range(6))
    assert {t.study["state"] for t in a.trials} == {"COMPLETE"}
    for t in a.trials:
        assert 5 <= t.params["max_iter"] <= 40 and isinstance(t.params["max_iter"], int)
        assert 0.01 <= t.params["learning_rate"] <= 0.3 and t.params["max_leaf_nodes"] in (7, 15, 31)
    assert a.best_trial.primary == max(t.primary for t in a.trials)
    assert a.trials[a.best_trial.index].to_dict()["study"]["sampler"] == "TPE"


def test_torch_trials_that_trail_the_median_are_pruned_with_their_epochs_kept() -> None:
    spec = {
        "family": "torch_mlp",
        "params": {"lr": {"low": 1e-6, "high": 3e-2, "log": True}, "hidden": [[8], [32, 16]]},
        "search": "optuna",
        "budget": 8,
    }
    result = _search([spec], max_epochs=5, patience=10)
    pruned = [t for t in result.trials if t.status == "pruned"]
    assert pruned, [(t.status, t.primary) for t in result.trials]
    for t in pruned:
        assert t.study["state"] == "PRUNED" and t.epochs is not None and t.epochs < 5
        assert [row["epoch"] for row in t.history] == list(range(1, t.epochs + 1))
        assert "val_roc_auc" in t.history[-1]
    assert result.best_trial.status == "ok"
    assert all(t.study["state"] == "COMPLETE" for t in result.trials if t.status == "ok")


def test_the_time_budget_stops_asking() -> None:
    ticks = itertools.count(0, 10)  # each look at the clock: 10 s later
    spec = CandidateSpec(
        family="linear", params={"C": {"low": 0.1, "high": 10.0}}, search="optuna", budget=50, time_budget_s=25
    )

    def fit(params: dict[str, object], hook: object) -> Trial:
        assert hook is None  # only torch trials report epochs
        return Trial(index=0, family="linear", params=params, status="ok", primary=-abs(float(params["C"]) - 3))  # type: ignore[arg-type]

    trials = run_study(spec, 0, 1, True, "roc_auc", fit, clock=lambda: float(next(ticks)))
    assert len(trials) == 3  # the first, then at 10 s and 20 s; at 30 s the 25 s budget is spent
