"""search: optuna: seeded TPE, trial and time budgets, median pruning of torch trials."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from refit.config import CandidateSpec
from refit.config_loader import load_config
from refit.errors import ConfigError
from refit.io.local import LocalStore
from refit.training.optuna_search import run_study
from refit.training.search import Trial, select_candidate
from tests.unit.training_frames import churn_frame, make_config, split

HGB_SPACE = {
    "max_iter": {"low": 5, "high": 40, "int": True},
    "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
    "max_leaf_nodes": [7, 15, 31],
}


def _search(candidates: list[dict[str, object]], seed: int = 0, store: LocalStore | None = None, **training: object):  # type: ignore[no-untyped-def]
    train, val = split(churn_frame(500, seed=1))
    config = make_config("churn", candidates=candidates, seed=seed, **training)
    return select_candidate(train, val, config, store, "run", torch.device("cpu"))


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


def test_torch_trials_that_trail_the_median_are_pruned_with_their_epochs_kept_and_checkpoints_removed(
    tmp_path: Path,
) -> None:
    spec = {
        "family": "torch_mlp",
        "params": {"lr": {"low": 1e-6, "high": 3e-2, "log": True}, "hidden": [[8], [32, 16]]},
        "search": "optuna",
        "budget": 8,
    }
    store = LocalStore(tmp_path / "store")
    result = _search([spec], store=store, max_epochs=5, patience=10)
    pruned = [t for t in result.trials if t.status == "pruned"]
    assert pruned, [(t.status, t.primary) for t in result.trials]
    for t in pruned:
        assert t.study["state"] == "PRUNED" and t.epochs is not None and t.epochs < 5
        assert [row["epoch"] for row in t.history] == list(range(1, t.epochs + 1))
        assert "val_roc_auc" in t.history[-1]
        # a pruned trial is never resumed: nothing of it is left in the store
        assert store.list(f"run/checkpoints/{t.run_key}/") == []
    assert result.best_trial.status == "ok"
    assert all(t.study["state"] == "COMPLETE" for t in result.trials if t.status == "ok")
    for t in result.trials:  # the trials that ran to the end keep theirs (a rerun resumes them)
        if t.status == "ok":
            assert f"run/checkpoints/{t.run_key}/latest.json" in store.list(f"run/checkpoints/{t.run_key}/")


def test_an_integer_range_draws_only_the_integers_inside_it() -> None:
    # 99.5..100.5 holds one integer; Optuna once read it as 99..100 (its own parse of the range)
    space = {"C": {"low": 0.1, "high": 10.0, "log": True}, "max_iter": {"low": 99.5, "high": 100.5, "int": True}}
    spec = {"family": "linear", "search": "optuna", "budget": 4, "params": space}
    result = _search([spec])
    assert [t.params["max_iter"] for t in result.trials] == [100] * 4


def test_the_time_budget_stops_asking() -> None:
    ticks = itertools.count(0, 10)  # each look at the clock: 10 s later
    spec = CandidateSpec(
        family="linear", params={"C": {"low": 0.1, "high": 10.0}}, search="optuna", budget=50, time_budget_s=25
    )

    def fit(params: dict[str, object], hook: object) -> Trial:
        assert hook is None  # only torch trials report epochs
        return Trial(index=0, family="linear", params=params, status="ok", primary=-abs(float(params["C"]) - 3))  # type: ignore[arg-type]

    trials, best = run_study(spec, lambda number: number, True, "roc_auc", fit, clock=lambda: float(next(ticks)))
    assert len(trials) == 3  # the first, then at 10 s and 20 s; at 30 s the 25 s budget is spent
    top = max(trials, key=lambda t: t.primary)
    assert best is not None and (best.number, best.params, best.value) == (top.study["number"], top.params, top.primary)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("sqlite:///study.db", "must be a postgresql:// URL"),
        ("postgresql://team:s3cret@db/optuna", "must not carry a password"),
        # libpq (psycopg2) also reads a password from the query string
        ("postgresql://team@db/optuna?password=s3cret", "must not carry a credential (password)"),
        ("postgresql://team@db/optuna?sslmode=require&sslpassword=s3cret", "credential (sslpassword)"),
    ],
)
def test_search_storage_is_postgresql_without_a_password(tmp_path: Path, url: str, rule: str) -> None:
    path = tmp_path / "refit.yaml"
    path.write_text(
        "dataset: {name: churn, sources: [a.parquet], schema: 'schemas.churn:ChurnTrainingSchema', target: churned,"
        " task: binary, id_column: customer_id, timestamp_column: event_time}\n"
        f"training: {{search_storage: '{url}'}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "training.search_storage" in message and rule in message
    assert "s3cret" not in message and ("PGPASSWORD" in message or "postgresql://" in message)


SHARED_BUDGET = 8
SHARED_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    import torch

    from refit.training.search import select_candidate
    from tests.unit.training_frames import churn_frame, make_config, split

    url, ready, me, other = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    space = {"max_iter": {"low": 5, "high": 40, "int": True}, "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
             "max_leaf_nodes": [7, 15, 31]}
    spec = {"family": "hist_gradient_boosting", "params": space, "search": "optuna", "budget": BUDGET}
    config = make_config("churn", candidates=[spec], seed=3, search_storage=url)
    train, val = split(churn_frame(400, seed=1))
    (ready / me).touch()  # imports done: start the search together with the other worker
    deadline = time.monotonic() + 120
    while not (ready / other).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    result = select_candidate(train, val, config, None, "run", torch.device("cpu"))
    best = result.best_trial
    print(json.dumps({"trials": [t.study for t in result.trials],
                      "best": {"study": best.study, "params": best.params, "primary": best.primary}}))
    """
).replace("BUDGET", str(SHARED_BUDGET))


@pytest.mark.slow
def test_two_processes_share_one_study_in_postgres(postgres: Any, tmp_path: Path) -> None:
    import optuna

    url = postgres.create_database("optuna_shared")
    script = tmp_path / "worker.py"
    script.write_text(SHARED_WORKER)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen([sys.executable, str(script), url, str(tmp_path), me, other],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root)
        for me, other in (("a", "b"), ("b", "a"))
    ]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]

    name = reports[0]["best"]["study"]["study"]
    storage = postgres.url("optuna_shared", driver="postgresql+psycopg2")  # SQLAlchemy's postgresql:// is psycopg 3
    stored = optuna.load_study(study_name=name, storage=storage).get_trials()
    # exactly the budget, numbered 0..7, every one finished, no configuration drawn twice
    assert sorted(t.number for t in stored) == list(range(SHARED_BUDGET))
    assert {t.state.name for t in stored} == {"COMPLETE"}
    assert len({json.dumps(t.user_attrs["params"], sort_keys=True) for t in stored}) == SHARED_BUDGET
    # both processes ran trials, and between them every trial once
    host = socket.gethostname()
    assert {t.user_attrs["worker"] for t in stored} == {f"{host}:{p.pid}" for p in procs}
    ran = [{s["number"] for s in r["trials"] if not s.get("retrained")} for r in reports]
    assert ran[0] and ran[1] and not ran[0] & ran[1] and ran[0] | ran[1] == set(range(SHARED_BUDGET))
    for p, numbers in zip(procs, ran, strict=True):
        assert numbers == {t.number for t in stored if t.user_attrs["worker"] == f"{host}:{p.pid}"}
    # each candidate is the study's best trial (the worker that did not run it trained it again)
    best = max(stored, key=lambda t: (t.value, -t.number))
    for r, numbers in zip(reports, ran, strict=True):
        assert r["best"]["study"]["number"] == best.number and r["best"]["study"]["study"] == name
        assert r["best"]["params"] == best.user_attrs["params"] and r["best"]["primary"] == best.value
        assert r["best"]["study"].get("retrained", False) is (best.number not in numbers)
