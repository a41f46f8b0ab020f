"""The retrain recipe: which steps of :mod:`refit.pipeline` run, in which order, and when one is
skipped, written once, in :data:`RETRAIN_STEPS`. :func:`run_retrain` runs it in this process
for ``refit train``, the benchmarks and the tests; the retrain flow (``flows/retrain.py``)
composes the same steps through tasks of the same names, and a flow test checks that both run
the same step names in the same order.

The steps are called as attributes of :mod:`refit.pipeline` (``pipeline.split_data(...)``),
looked up when they run, so a test or a benchmark that wraps one there wraps it for the recipe
as well as for the tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from refit import pipeline
from refit.config import PipelineConfig
from refit.config_loader import resolve_run_parameters
from refit.data import ValidatedData
from refit.errors import RefitError
from refit.fingerprint import fingerprint_frame
from refit.io import Store
from refit.pipeline import CandidateHandle, EvaluationHandle, SplitHandles
from refit.splits import SPLIT_NAMES, split_part

if TYPE_CHECKING:
    import pandas as pd

    from refit.fingerprint import DatasetFingerprint


class RetrainOptions(BaseModel):
    """What one plain run of the recipe does; fields the YAML owns are None until resolved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_days: float | None = Field(None, ge=0, description="None: training.window_days of the YAML.")
    as_of: AwareDatetime | None = Field(None, description="Train on what was known then (None: now).")
    force: bool = False
    dry_run: bool = False
    reason: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


@dataclass
class RetrainRun:
    """One run of the recipe: its inputs, each step's handle as it is produced, and the steps run."""

    store: Store
    config: PipelineConfig
    run_id: str
    options: RetrainOptions
    on_epoch: Callable[[dict[str, Any]], None] | None = None
    data: ValidatedData | None = None
    splits: SplitHandles | None = None
    candidate: CandidateHandle | None = None
    smoke: Any = None  # refit.smoke.SmokeReport
    evaluation: EvaluationHandle | None = None
    version: Any = None  # refit.registry.ModelVersion
    promotion: Any = None  # refit.registry.AliasEvent: None unless the champion moved to this run's version
    calibration: list[int] | None = None  # the new champion's drift null size buckets
    tracking: Any = None  # refit.tracking.TrackingReport
    steps: list[str] = field(default_factory=list)

    def need(self, name: str) -> Any:
        """The handle an earlier step produced (a step run out of order fails here, by name)."""
        value = getattr(self, name)
        if value is None:
            raise RefitError(f"retrain step order: {name!r} is not produced yet (steps run: {self.steps})")
        return value


@dataclass(frozen=True)
class RetrainStep:
    """A named step of the recipe: what it does, and when it runs (given what ran before)."""

    name: str
    run: Callable[[RetrainRun], None]
    applies: Callable[[RetrainRun], bool] = lambda run: True


def _load(r: RetrainRun) -> None:
    r.data = pipeline.load_and_validate(r.store, r.config, r.run_id, r.options.window_days, r.options.as_of)


def _split(r: RetrainRun) -> None:
    r.splits = pipeline.split_data(r.store, r.config, r.need("data"), r.run_id)


def _train(r: RetrainRun) -> None:
    r.candidate = pipeline.train_candidates(r.store, r.config, r.need("splits"), r.run_id, on_epoch=r.on_epoch)


def _smoke(r: RetrainRun) -> None:
    r.smoke = pipeline.smoke_test_candidate(r.store, r.config, r.need("splits"), r.need("candidate"))


def _evaluate(r: RetrainRun) -> None:
    o = r.options
    r.evaluation = pipeline.evaluate_candidate(
        r.store, r.config, r.need("splits"), r.need("candidate"), r.run_id, force=o.force, reason=o.reason
    )


def _register(r: RetrainRun) -> None:
    o = r.options
    r.version = pipeline.register_candidate(
        r.store, r.config, r.need("splits"), r.need("candidate"), r.need("evaluation"), r.run_id, o.reason, o.tags
    )


def _promote(r: RetrainRun) -> None:
    done = pipeline.promote_version(
        r.store, r.config, r.need("version").version, r.need("evaluation"), r.need("splits"), r.need("candidate"),
        r.run_id, r.options.reason,
    )  # fmt: skip
    r.evaluation, r.promotion = done.evaluation, done.event


def _calibrate(r: RetrainRun) -> None:
    from refit.monitoring import calibrate_version

    r.calibration = calibrate_version(r.store, r.config, r.need("version").version)


def _track(r: RetrainRun) -> None:
    from refit.tracking import track_run

    r.tracking = track_run(
        r.store, r.config, r.run_id, r.need("splits"), r.need("candidate"), r.smoke, r.evaluation, r.version,
        {"refit.trigger": r.options.tags.get("trigger", "runner")},
    )  # fmt: skip


def _tracked(r: RetrainRun) -> bool:
    from refit.tracking import tracking_enabled

    return r.candidate is not None and tracking_enabled(r.config)


#: The retrain recipe, in order. The flow (``flows/retrain.py``) composes the same steps through
#: tasks of the same names; ``tests/flows/test_retrain_steps.py`` fails when the two differ.
RETRAIN_STEPS: tuple[RetrainStep, ...] = (
    RetrainStep("load-and-validate", _load),
    RetrainStep("split-data", _split),
    RetrainStep("train-candidates", _train),
    RetrainStep("smoke-test", _smoke),
    RetrainStep("evaluate-candidate", _evaluate, applies=lambda r: bool(r.need("smoke").passed)),
    RetrainStep("register-model", _register, applies=lambda r: r.evaluation is not None and not r.options.dry_run),
    RetrainStep("promote-model", _promote, applies=lambda r: r.version is not None and r.need("evaluation").promote),
    RetrainStep("calibrate-drift", _calibrate, applies=lambda r: r.promotion is not None),
    RetrainStep("track-run", _track, applies=_tracked),
)
RETRAIN_STEP_NAMES: tuple[str, ...] = tuple(step.name for step in RETRAIN_STEPS)


@contextmanager
def _no_wrap(name: str) -> Iterator[None]:
    yield


def run_retrain(
    store: Store,
    config: PipelineConfig,
    options: RetrainOptions | None = None,
    *,
    run_id: str | None = None,
    until: str | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    around: Callable[[str], AbstractContextManager[Any]] = _no_wrap,
) -> RetrainRun:
    """Run the retrain recipe in this process, without Prefect.

    Args:
        store: Where the data, the run's outputs and the registry live.
        config: The loaded pipeline config; the options' empty fields are read from it.
        options: Window, force/dry-run, reason and registry tags.
        run_id: The run's id (default: a new one).
        until: Stop after this step (``refit train`` stops after ``train-candidates``).
        on_epoch: Called with each training epoch's metrics (progress bars).
        around: A context manager entered around each step, given its name (timing, memory).

    Returns:
        The run: every handle produced, and ``steps``, the names of the steps that ran.
    """
    if until is not None and until not in RETRAIN_STEP_NAMES:
        raise RefitError(f"no retrain step {until!r}: the steps are {', '.join(RETRAIN_STEP_NAMES)}")
    resolved = resolve_run_parameters(options or RetrainOptions(), config)
    run = RetrainRun(store, config, run_id or pipeline.new_run_id(), resolved, on_epoch=on_epoch)
    for step in RETRAIN_STEPS:
        if not step.applies(run):
            continue
        with around(step.name):
            step.run(run)
        run.steps.append(step.name)
        if step.name == until:
            break
    return run


# ---------------------------------------------------------------------------------------------
# the holdout a retrain would judge on


def holdout_split(store: Store, config: PipelineConfig) -> tuple[pd.DataFrame, DatasetFingerprint]:
    """The test split of the store's current data, as a retrain with the YAML's options would
    load, validate and split it (:func:`refit.pipeline.labelled_captures`,
    :func:`refit.pipeline.split_codes`), held in memory: no run folder, no quarantine, nothing
    written to the store."""
    from refit.data import read_training_rows, schema_for
    from refit.validation import enforce, validate_frame

    options = resolve_run_parameters(RetrainOptions(), config)
    captures = pipeline.labelled_captures(store, config, options.window_days, options.as_of)
    frame, origins = read_training_rows(store, config, captures)
    result = validate_frame(
        frame, schema_for(config), source=origins, max_invalid_fraction=config.validation.max_invalid_fraction
    )
    enforce(result.summary)
    del frame, origins
    codes = pipeline.split_codes(result.valid, config)
    test = split_part(result.valid, codes, next(code for code, name in SPLIT_NAMES.items() if name == "test"))
    return test, fingerprint_frame(test)
