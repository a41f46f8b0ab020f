"""Bayesian search with Optuna: the only module that imports ``optuna`` (import-linter contract).

``search: optuna`` on a candidate asks a TPE sampler (seeded by the run seed and the family)
for up to ``budget`` configurations, stopping early once ``time_budget_s`` has passed; torch
trials report their per-epoch validation value of the gate's metric and a median pruner stops
the ones that trail the earlier trials at the same epoch. One worker, same seed: same trials.
Each trial's study record (number, state, value, pruned epoch) goes on the candidate's trials.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from refit.config import CandidateSpec

#: Trials before the pruner judges, and epochs each trial runs before it can be pruned.
PRUNER_STARTUP_TRIALS = 3
PRUNER_WARMUP_EPOCHS = 1


class TrialPruned(Exception):
    """Raised from a trial's epoch callback when the pruner stops it."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _suggest(trial: Any, name: str, value: Any) -> Any:
    """One parameter from the trial: a list is a categorical choice, a range a float/int range."""
    if isinstance(value, list):
        if all(_primitive(v) for v in value):
            return trial.suggest_categorical(name, value)
        choices = [json.dumps(v) for v in value]  # Optuna's choices must be primitives
        return json.loads(trial.suggest_categorical(name, choices))
    if isinstance(value, dict) and {"low", "high"} <= set(value):
        log = bool(value.get("log"))
        if value.get("int"):
            return trial.suggest_int(name, int(value["low"]), int(value["high"]), log=log)
        return trial.suggest_float(name, float(value["low"]), float(value["high"]), log=log)
    return value


def run_study(
    spec: CandidateSpec,
    seed: int,
    salt: int,
    higher_is_better: bool,
    metric: str,
    fit: Callable[[dict[str, Any], Callable[[dict[str, Any]], None] | None], Any],
    clock: Callable[[], float] = time.monotonic,
) -> list[Any]:
    """Run one family's study; ``fit(params, on_epoch)`` trains one trial and returns its Trial.

    ``on_epoch`` (given to torch trials) reports ``val_<metric>`` and raises
    :class:`TrialPruned` when the pruner says so; ``fit`` turns that into a pruned trial.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if higher_is_better else "minimize",
        sampler=optuna.samplers.TPESampler(seed=(seed * 1_000_003 + salt) % 2**32),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS),
    )
    start = clock()
    trials: list[Any] = []
    for _ in range(spec.budget):
        if spec.time_budget_s is not None and trials and clock() - start >= spec.time_budget_s:
            break
        asked = study.ask()
        params = {name: _suggest(asked, name, spec.params[name]) for name in sorted(spec.params)}

        def on_epoch(row: dict[str, Any], asked: Any = asked) -> None:
            value = row.get(f"val_{metric}")
            if value is None:
                return
            epoch = int(row["epoch"])
            asked.report(float(value), epoch)
            if asked.should_prune():
                raise TrialPruned(epoch)

        trial = fit(params, on_epoch if spec.family == "torch_mlp" else None)
        if trial.status == "pruned":
            state = optuna.trial.TrialState.PRUNED
            study.tell(asked, state=state)
        elif trial.status != "ok" or trial.primary is None:
            state = optuna.trial.TrialState.FAIL
            study.tell(asked, state=state)
        else:
            state = optuna.trial.TrialState.COMPLETE
            study.tell(asked, float(trial.primary))
        trial.study = {"sampler": "TPE", "pruner": "median", "number": asked.number, "state": state.name}
        trials.append(trial)
    return trials
