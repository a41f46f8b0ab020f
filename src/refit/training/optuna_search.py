"""Bayesian search with Optuna: the only module that imports ``optuna`` (import-linter contract).

``search: optuna`` on a candidate asks a TPE sampler for up to ``budget`` configurations,
stopping early once ``time_budget_s`` has passed; torch trials report their per-epoch
validation value of the gate's metric and a median pruner stops the ones that trail the earlier
trials at the same epoch. The sampler is seeded per trial by the search's one seeding scheme
(:func:`refit.training.search.search_seed` with the trial's number): one worker, same seed, same
trials. Each trial's study record (number, state) goes on the candidate's trials.

With ``training.search_storage`` (PostgreSQL) the study lives in that database and every worker
that trains the same candidates on the same data joins it: a transaction-scoped advisory lock
makes "count the trials, ask for the next" atomic, so the study holds exactly ``budget`` trials
whoever runs them; a worker then waits for the others' running trials and reports the study's
best, which it retrains when another worker ran it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from refit.training.search import ParamRange

if TYPE_CHECKING:
    from refit.config import CandidateSpec

#: Trials before the pruner judges, and epochs each trial runs before it can be pruned.
PRUNER_STARTUP_TRIALS = 3
PRUNER_WARMUP_EPOCHS = 1
#: How often a worker of a shared study looks whether the others' trials have finished.
SHARED_POLL_S = 0.5


class TrialPruned(Exception):
    """Raised from a trial's epoch callback when the pruner stops it."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch


@dataclass(frozen=True)
class StudyBest:
    """The study's best complete trial: its number, refit's params for it, its value."""

    number: int
    params: dict[str, Any]
    value: float


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _suggest(trial: Any, name: str, value: Any) -> Any:
    """One parameter from the trial: a list is a categorical choice, a range a float/int range."""
    if isinstance(value, list):
        if all(_primitive(v) for v in value):
            return trial.suggest_categorical(name, value)
        choices = [json.dumps(v) for v in value]  # Optuna's choices must be primitives
        return json.loads(trial.suggest_categorical(name, choices))
    bounds = ParamRange.of(value)
    if bounds is None:
        return value
    if bounds.integer:
        return trial.suggest_int(name, int(bounds.low), int(bounds.high), log=bounds.log)
    return trial.suggest_float(name, bounds.low, bounds.high, log=bounds.log)


class _SharedStudy:
    """A study in PostgreSQL, and the advisory lock its workers take to ask for a trial."""

    def __init__(self, url: str, name: str) -> None:
        import sqlalchemy

        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; refit's driver is psycopg2
        self.url = "postgresql+psycopg2://" + url.split("://", 1)[1]
        self.name = name
        self.engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
        self.storage: Any = None
        # one lock per study: a signed 64-bit key, as pg_advisory_xact_lock takes
        self.key = int.from_bytes(hashlib.sha256(f"refit-study:{name}".encode()).digest()[:8], "big", signed=True)

    def close(self) -> None:
        """Close every connection to the database (a long-lived worker runs many searches)."""
        if self.storage is not None:
            self.storage.engine.dispose()
        self.engine.dispose()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the study's lock (released when the transaction ends, also when the process dies)."""
        import sqlalchemy

        with self.engine.begin() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.key})
            yield

    def open(self, direction: Literal["minimize", "maximize"], pruner: Any) -> Any:
        import optuna

        with self.lock():  # the first worker creates the tables and the study; the others load them
            self.storage = optuna.storages.RDBStorage(self.url, engine_kwargs={"pool_pre_ping": True})
            return optuna.create_study(storage=self.storage, study_name=self.name, direction=direction,
                                       pruner=pruner, load_if_exists=True)  # fmt: skip


def run_study(
    spec: CandidateSpec,
    sampler_seed: Callable[[int], int],
    higher_is_better: bool,
    metric: str,
    fit: Callable[[dict[str, Any], Callable[[dict[str, Any]], None] | None], Any],
    clock: Callable[[], float] = time.monotonic,
    storage: str | None = None,
    study_name: str | None = None,
) -> tuple[list[Any], StudyBest | None]:
    """Run one family's study; ``fit(params, on_epoch)`` trains one trial and returns its Trial.

    Args:
        spec: The family, its search space, ``budget`` (trials in the study, all workers
            together) and ``time_budget_s`` (this worker asks for no trial after it).
        sampler_seed: The TPE sampler's seed for trial number N.
        storage: A PostgreSQL URL to share the study in (None: in memory, this worker's own).
        study_name: The shared study's name (every worker of one search must agree on it).

    ``on_epoch`` (given to torch trials) reports ``val_<metric>`` and raises
    :class:`TrialPruned` when the pruner says so; ``fit`` turns that into a pruned trial.
    Returns the trials this worker trained and the study's best complete trial (None: none).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction: Literal["minimize", "maximize"] = "maximize" if higher_is_better else "minimize"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS)
    shared = _SharedStudy(storage, study_name or spec.family) if storage else None
    study = shared.open(direction, pruner) if shared else optuna.create_study(direction=direction, pruner=pruner)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    start = clock()
    trials: list[Any] = []
    try:
        while not (spec.time_budget_s is not None and trials and clock() - start >= spec.time_budget_s):
            with shared.lock() if shared else contextlib.nullcontext():
                number = len(study.get_trials(deepcopy=False))  # every worker's, whatever their state
                if number >= spec.budget:
                    break
                study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(number))
                asked = study.ask()
            params = {name: _suggest(asked, name, spec.params[name]) for name in sorted(spec.params)}
            asked.set_user_attr("params", params)  # refit's params, for a worker that retrains this trial
            asked.set_user_attr("worker", worker)

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
            if shared:
                trial.study["study"] = shared.name
            trials.append(trial)
        if shared:  # the study's best is known once no worker's trial is still running
            while study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                time.sleep(SHARED_POLL_S)
        return trials, _best(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)),
                             higher_is_better)  # fmt: skip
    finally:
        if shared:
            shared.close()


def _best(complete: list[Any], higher_is_better: bool) -> StudyBest | None:
    """The best complete trial; a tie goes to the earlier trial (as refit's own selection does)."""
    if not complete:
        return None
    sign = -1.0 if higher_is_better else 1.0
    best = min(complete, key=lambda t: (sign * float(t.value), t.number))
    return StudyBest(number=best.number, params=dict(best.user_attrs["params"]), value=float(best.value))
