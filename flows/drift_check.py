"""The drift-check flow: captured traffic vs the champion's training reference."""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import AliasChoices, AwareDatetime, BaseModel, Field

from flows.parameters import RunBudget, RunParameters, with_deployment_defaults
from refit.config import PipelineConfig
from refit.config_loader import resolve_run_parameters
from refit.io import resolve_store_uri
from refit.monitoring import no_data_detail
from tasks.drift import (
    ask_governor,
    compute_drift,
    emit_drift_event,
    find_drift_listener,
    load_capture_window,
    load_reference,
    publish_drift_check,
    record_drift_check,
    validate_captures,
)
from tasks.retrain import load_pipeline_config


class DriftCheckParameters(RunParameters):
    """What one drift check looks at (the Prefect UI renders this as a form)."""

    window_hours: int | None = Field(
        None, ge=1, description="Captured requests of the last N hours (empty: drift.window_hours of the config)."
    )
    window_rows: int | None = Field(
        None,
        ge=1,
        description="Or the last N captured requests, whatever their age: replaces the hours "
        "(empty: drift.window_rows of the config).",
    )
    as_of: AwareDatetime | None = Field(
        None,
        validation_alias=AliasChoices("as_of", "now"),
        description="End of the window, in the captures' event time (empty: now). Labels count once "
        "arrived by then; the governor's cooldown and caps run on this clock.",
    )
    report: bool | None = Field(
        None,
        description="Store Evidently's HTML report of this check (empty: as drift.report_html says, by default "
        "when the decision changes).",
    )


class DriftCheckResult(BaseModel):
    model: str
    store: str = Field(description="The store the check read and wrote.")
    champion_version: int
    drift_detected: bool
    drift_share: float
    drifted_columns: list[str]
    decay_detected: bool
    decayed_segments: list[str]
    decision: str
    reason: str
    detail: str
    report_uri: str = Field(description="Evidently's HTML report when this check stored one, else its JSON result.")
    sample_size: int
    current_rows: int
    labelled_rows: int
    event_emitted: bool = False
    listener: dict[str, Any] = Field(default_factory=dict)
    retrain: str = Field("", description="What happened about a retrain.")


@flow(name="drift-check", log_prints=True)
def drift_check(params: DriftCheckParameters = DriftCheckParameters()) -> DriftCheckResult:  # noqa: B008
    """Compare captured production traffic with the champion's reference; emit refit.drift.detected when real.

    Args:
        params: Which config and store, and which window of captured traffic.
    """
    params = with_deployment_defaults(params)  # a partial `-p params=...` keeps the deployment's defaults
    config = load_pipeline_config(params.config_path)
    params = resolve_run_parameters(params, config)
    store = resolve_store_uri(params.store)  # chosen once; every task gets it
    # a hung step fails the run instead of holding its slot forever (timeouts of the config)
    budget, step_s = RunBudget(config.timeouts.drift_check_s, "this drift check"), config.timeouts.step_s
    reference = budget.step(load_reference, step_s)(store, config)
    window = budget.step(load_capture_window, step_s)(
        store, config, params.as_of, params.window_hours, params.window_rows
    )
    if window.rows == 0:
        detail = no_data_detail(store, config, window)
        print(detail)
        return _published(
            config,
            DriftCheckResult(
                model=config.dataset.name,
                store=store,
                champion_version=reference.version,
                drift_detected=False,
                drift_share=0.0,
                drifted_columns=[],
                decay_detected=False,
                decayed_segments=[],
                decision="none",
                reason="no-data",
                detail=detail,
                report_uri="",
                sample_size=0,
                current_rows=0,
                labelled_rows=0,
                retrain="no retrain: no captured requests in the window",
            ),
        )
    current = budget.step(validate_captures, step_s)(store, config, window)
    report = budget.step(compute_drift, step_s)(store, config, reference, current, window)
    outcome = budget.step(ask_governor, step_s)(store, config, reference, report, params.as_of)
    report = budget.step(record_drift_check, step_s)(store, config, report, outcome, params.report)
    result = DriftCheckResult(
        model=config.dataset.name,
        store=store,
        champion_version=reference.version,
        drift_detected=report.drift_detected,
        drift_share=report.result.drift_share,
        drifted_columns=list(report.result.drifted_columns),
        decay_detected=report.decay_detected,
        decayed_segments=report.decay.decayed_segments if report.decay is not None else [],
        decision=outcome.action,
        reason=outcome.reason,
        detail=outcome.detail,
        report_uri=report.report_uri,
        sample_size=report.result.current_sample_rows,
        current_rows=report.current_rows,
        labelled_rows=report.labelled_rows,
    )
    if not outcome.trigger:
        return _published(config, result.model_copy(update={"retrain": f"no retrain: {outcome.reason}"}))
    budget.step(emit_drift_event, step_s)(store, config, outcome, report.report_uri)
    listener = budget.step(find_drift_listener, step_s)()
    note = (
        f"event emitted; {listener['deployment']} listens and starts the retrain"
        if listener["exists"]
        else f"event emitted, but no listener started a retrain ({listener['deployment']} is not deployed: "
        "run `refit up`, or `refit drift --retrain` to retrain in this process)"
    )
    return _published(config, result.model_copy(update={"event_emitted": True, "listener": listener, "retrain": note}))


def _published(config: PipelineConfig, result: DriftCheckResult) -> DriftCheckResult:
    publish_drift_check.with_options(timeout_seconds=config.timeouts.step_s)(config, result.model_dump(mode="json"))
    return result
