"""The retrain flow: validate -> split -> train -> smoke test -> gate -> register -> promote."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from prefect import flow
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from flows.parameters import RunBudget, RunParameters, with_deployment_defaults
from refit.config_loader import resolve_run_parameters
from refit.io import resolve_store_uri
from refit.pipeline import new_run_id
from refit.tracking import tracking_enabled
from tasks.retrain import (
    calibrate_drift,
    evaluate_candidate,
    load_and_validate,
    load_pipeline_config,
    promote_model,
    publish_summary,
    register_model,
    smoke_test_candidate,
    split_data,
    track_run,
    train_candidates,
)

if TYPE_CHECKING:
    from refit.config import PipelineConfig
    from refit.data import ValidatedData
    from refit.pipeline import CandidateHandle, EvaluationHandle, SplitHandles
    from refit.smoke import SmokeReport


class RetrainParameters(RunParameters):
    """What one retrain run does (the Prefect UI renders this as a form)."""

    window_days: float | None = Field(
        None,
        ge=0,
        description="Labelled production captures from the last N days join the base data "
        "(empty: training.window_days of the config).",
    )
    as_of: AwareDatetime | None = Field(
        None,
        description="Train on what was known at this time: captures with an event time up to it, labels "
        "arrived by it (empty: now). For replays and backfills.",
    )
    force: bool = Field(False, description="Promote even when the gate says no. Needs a reason; recorded as forced.")
    dry_run: bool = Field(False, description="Train and evaluate, register nothing, move nothing.")
    reason: str | None = Field(None, description="Why this run: kept with the version and any promotion.")
    trigger: Literal["manual", "schedule", "drift", "cli"] = Field("manual", description="What started the run.")
    drift: dict[str, Any] | None = Field(None, description="The drift event's payload, when drift started the run.")

    @model_validator(mode="after")
    def _force_needs_reason(self) -> RetrainParameters:
        if self.force and not (self.reason and self.reason.strip()):
            raise ValueError("force=true needs a reason")
        return self


class RetrainResult(BaseModel):
    """What the run did, small enough to read in the UI."""

    run_id: str
    model: str
    store: str = Field(description="The store the run read and wrote.")
    outcome: str
    headline: str
    version: int | None = None
    champion_before: int | None = None
    champion_after: int | None = None
    forced: bool = False
    dry_run: bool = False
    artifact_uri: str | None = None
    dossier: dict[str, str] = Field(default_factory=dict)
    smoke_test: dict[str, Any] = Field(default_factory=dict)
    candidate: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)


@flow(name="retrain", log_prints=True)
def retrain(params: RetrainParameters = RetrainParameters()) -> RetrainResult:  # noqa: B008
    """Retrain, gate per segment against the champion, register, and promote only when the gate says so.

    The steps are ``refit.recipe.RETRAIN_STEPS`` (the plain runner's recipe), as tasks of the
    same names: a flow test fails when the two run different steps.

    Args:
        params: What this run does: config file, store, data window, force/dry-run, reason.
    """
    params = with_deployment_defaults(params)  # a partial `-p params=...` keeps the deployment's defaults
    config = load_pipeline_config(params.config_path)
    params = resolve_run_parameters(params, config)
    store = resolve_store_uri(params.store)  # chosen once; every task gets it
    run_id = new_run_id()
    # a hung step fails the run instead of holding its slot forever (timeouts of the config)
    budget, step_s = RunBudget(config.timeouts.retrain_s, "this retrain"), config.timeouts.step_s
    data = budget.step(load_and_validate, step_s)(store, config, run_id, params.window_days, params.as_of)
    splits = budget.step(split_data, step_s)(store, config, data, run_id)
    candidate = budget.step(train_candidates, config.timeouts.training_s)(store, config, splits, run_id)
    smoke = budget.step(smoke_test_candidate, step_s)(store, config, splits, candidate)
    base = _summary(params, config, store, run_id, data, splits, candidate, smoke)
    tracked = tracking_enabled(config)

    def report(result: RetrainResult, evaluation: Any, version: Any) -> RetrainResult:
        # after the decision: neither the run's time being up nor a failed report fails the run
        if tracked:
            budget.report(track_run, step_s)(
                store, config, run_id, splits, candidate, smoke, evaluation, version, params.trigger, return_state=True
            )
        budget.report(publish_summary, step_s)(store, config, result.model_dump(mode="json"), return_state=True)
        return result

    if not smoke.passed:
        result = RetrainResult(
            **base, outcome="SMOKE_FAILED", headline="smoke test failed: " + "; ".join(smoke.reasons)
        )
        return report(result, None, None)
    evaluation = budget.step(evaluate_candidate, step_s)(
        store, config, splits, candidate, run_id, params.force, params.reason
    )
    result = RetrainResult(**base, **_judged(evaluation), forced=evaluation.decision.forced)
    version = None
    if not params.dry_run:
        tags: dict[str, str] = {"trigger": params.trigger}
        version = budget.step(register_model, step_s)(
            store, config, splits, candidate, evaluation, run_id, params.reason, tags
        )
        result = result.model_copy(update={"version": version.version})
        if evaluation.promote:
            done = budget.step(promote_model, step_s)(
                store, config, version.version, evaluation, splits, candidate, run_id, params.reason
            )
            if done.rejudged_against:  # another run promoted meanwhile: the decision against that champion counts
                evaluation = done.evaluation
                result = result.model_copy(update=_judged(evaluation))
            if done.event is not None:
                result = result.model_copy(update={"champion_after": version.version})
                # a failed calibration does not fail the promoted run: the first drift check draws it then
                budget.report(calibrate_drift, step_s)(store, config, version.version, return_state=True)
    return report(result, evaluation, version)


def _summary(
    params: RetrainParameters,
    config: PipelineConfig,
    store: str,
    run_id: str,
    data: ValidatedData,
    splits: SplitHandles,
    candidate: CandidateHandle,
    smoke: SmokeReport,
) -> dict[str, Any]:
    """The fields of the run's result known once the candidate is smoke-tested, whatever follows."""
    return {
        "run_id": run_id,
        "model": config.dataset.name,
        "store": store,
        "artifact_uri": candidate.artifact_uri,
        "smoke_test": smoke.to_dict(),
        "dry_run": params.dry_run,
        "candidate": {
            "family": candidate.family,
            "params": candidate.params,
            "validation": candidate.validation_metrics,
            "device": candidate.device,
        },
        "data": {
            "rows": splits.rows,
            "quarantined": data.invalid_rows,
            "fingerprint": data.fingerprint.sha256,
            "window_days": params.window_days,
            "as_of": None if params.as_of is None else params.as_of.isoformat(),
        },
    }


def _judged(evaluation: EvaluationHandle) -> dict[str, Any]:
    """The fields of the run's result the gate's decision sets (again, when the candidate is judged again)."""
    return {
        "outcome": evaluation.outcome,
        "headline": evaluation.decision.headline,
        "champion_before": evaluation.champion_version,
        "champion_after": evaluation.champion_version,
        "dossier": evaluation.dossier,
    }
