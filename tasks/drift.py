"""Drift-check tasks: reference, capture window, validation, drift + decay, governor, event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from refit import evidence, monitoring
from refit.capture import CaptureWindow
from refit.config import PipelineConfig
from refit.monitoring import DriftReport, GovernorOutcome, Reference
from tasks.common import artifact_key, flat_rows, io_task, open_run_store, store_link
from tasks.names import DRIFT_EVENT, RETRAIN_ON_DRIFT_FULL_NAME


@io_task("load-reference")
def load_reference(store_uri: str, config: PipelineConfig) -> Reference:
    """The champion's stored training sample: drift is always measured against the current champion."""
    ref = monitoring.load_reference(open_run_store(store_uri), config)
    get_run_logger().info("reference: %s version %s (%s rows)", ref.model, ref.version, f"{len(ref.frame):,}")
    return ref


@io_task("load-capture-window")
def load_capture_window(
    store_uri: str,
    config: PipelineConfig,
    as_of: datetime | None,
    window_hours: int | None,
    window_rows: int | None,
) -> CaptureWindow:
    """Captured production requests in the window, and their labels when they have arrived."""
    window = monitoring.load_capture_window(
        open_run_store(store_uri), config, as_of=as_of, window_hours=window_hours, window_rows=window_rows
    )
    get_run_logger().info(
        "window %s .. %s: %s requests, %s of them labelled",
        window.start,
        window.end,
        f"{len(window.frame):,}",
        f"{int(window.frame[window.request_id_column].isin(window.labels[window.request_id_column]).sum()):,}",
    )
    return window


@io_task("validate-captures")
def validate_captures(store_uri: str, config: PipelineConfig, window: CaptureWindow) -> pd.DataFrame:
    """Captures against their contract; bad rows quarantined (said in the run's log), the rest checked."""
    result = monitoring.validate_captures(open_run_store(store_uri), config, window)
    if result.summary.invalid_rows:
        get_run_logger().warning("captures: %s", result.summary.one_line())
    return result.valid


@io_task("compute-drift")
def compute_drift(
    store_uri: str,
    config: PipelineConfig,
    reference: Reference,
    current: pd.DataFrame,
    window: CaptureWindow,
) -> DriftReport:
    """Evidently drift per column on a seeded sample, and performance decay on labelled rows."""
    report = monitoring.compute_drift_and_decay(open_run_store(store_uri), config, reference, current, window)
    result = report.result
    logger = get_run_logger()
    if report.labels is not None and report.labels.summary.invalid_rows:
        logger.warning("labels: %s (quarantined, not judged)", report.labels.summary.one_line())
    logger.info(
        "drift share %.2f (threshold %.2f): %s; drifted: %s",
        result.drift_share,
        result.drift_share_threshold,
        "DRIFT" if result.drift_detected else "no drift",
        ", ".join(result.drifted_columns) or "none",
    )
    if report.decay is not None:
        logger.info(
            "decay on %d labelled rows: %s", report.labelled_rows, ", ".join(report.decay.decayed_segments) or "none"
        )
    return report


@io_task("record-drift-check")
def record_drift_check(
    store_uri: str, config: PipelineConfig, report: DriftReport, outcome: GovernorOutcome, html: bool | None = None
) -> DriftReport:
    """Store the evidence with the decision (JSON always, the HTML report when the decision changed);
    publish it as artifacts."""
    store = open_run_store(store_uri)
    report = monitoring.record_drift_check(store, config, report, outcome, html=html)
    result, model = report.result, config.dataset.name
    mode = f"{result.threshold_mode}" + (f", alpha {result.alpha}" if result.alpha is not None else "")
    create_table_artifact(
        key=artifact_key(model, "drift"),
        table=evidence.drift_summary_rows(report),
        description=f"Per-column drift ({mode}): {result.n_drifted} of {result.n_columns} drifted; "
        f"decision {outcome.action} ({outcome.reason}): {outcome.detail}",
    )
    link, text = store_link(store, report.report_uri)
    create_link_artifact(
        key=artifact_key(model, "drift-report"),
        link=link,
        link_text=text,
        description="Evidently drift report, with the decision" if report.report_stored else "Drift check (JSON)",
    )
    if report.decay is not None:
        decay = report.decay
        create_table_artifact(
            key=artifact_key(model, "decay"),
            table=evidence.decay_summary_rows(report),
            description=f"Performance decay of the champion in {decay.metric} on {decay.n_labelled:,} labelled rows, "
            f"{decay.confidence:.0%} intervals: " + ("; ".join(evidence.decay_headlines(report)) or "none decayed"),
        )
    return report


@io_task("ask-governor")
def ask_governor(
    store_uri: str,
    config: PipelineConfig,
    reference: Reference,
    report: DriftReport,
    as_of: datetime | None,
) -> GovernorOutcome:
    """At most one retrain: k-of-n windows, cooldown, de-duplication, daily cap (on the window's clock);
    recorded in the ledger."""
    outcome = monitoring.ask_governor(open_run_store(store_uri), config, reference, report, now=as_of)
    get_run_logger().info("governor: %s (%s) %s", outcome.action, outcome.reason, outcome.detail)
    return outcome


@task(name="emit-drift-event", cache_policy=NO_CACHE)
def emit_drift_event(store_uri: str, config: PipelineConfig, outcome: GovernorOutcome, report_uri: str) -> str | None:
    """Tell listeners (the retrain-on-drift deployment) that drift is real, in which store, and
    the evidence the check recorded (``report_uri``: its HTML report, else its JSON result)."""
    event = emit_event(
        event=DRIFT_EVENT,
        resource={"prefect.resource.id": f"refit.model.{config.dataset.name}", "refit.model": config.dataset.name},
        payload=outcome.event_payload | {"store": store_uri, "report_uri": report_uri},
    )
    get_run_logger().info("emitted %s for %s", DRIFT_EVENT, config.dataset.name)
    return str(event.id) if event is not None else None


@task(name="find-drift-listener", cache_policy=NO_CACHE)
def find_drift_listener(deployment: str = RETRAIN_ON_DRIFT_FULL_NAME) -> dict[str, Any]:
    """Whether a deployment listens for the drift event (else nothing starts a retrain)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return {"deployment": deployment, "exists": False}
    return {"deployment": deployment, "exists": True, "id": str(found.id), "paused": bool(found.paused)}


@task(name="publish-drift-check", cache_policy=NO_CACHE)
def publish_drift_check(config: PipelineConfig, result: dict[str, Any]) -> None:
    """The check's verdict and the governor's decision (or "no data") as one markdown artifact per model."""
    model = config.dataset.name
    decision = f"**governor: {result['decision']}** ({result['reason']}): {result['detail']}"
    rows = flat_rows({k: v for k, v in result.items() if k not in ("decision", "reason", "detail")})
    table = "\n".join(["| item | value |", "|---|---|", *(f"| {r['item']} | {r['value']} |" for r in rows)])
    create_markdown_artifact(
        key=artifact_key(model, "governor"),
        markdown=f"# Drift check of {model} (champion v{result['champion_version']})\n\n{decision}\n\n"
        f"{result.get('retrain', '')}\n\n{table}\n",
        description=f"governor: {result['decision']} ({result['reason']})",
    )
