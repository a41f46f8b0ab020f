"""Retrain tasks: each wraps one step of ``refit.pipeline`` with retries, logging and artifacts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from refit import pipeline, tracking
from refit.config import PipelineConfig
from refit.config_loader import load_config
from refit.data import ValidatedData
from refit.dossier import for_display
from refit.pipeline import CandidateHandle, EvaluationHandle, PromotionHandle, SplitHandles
from tasks.common import artifact_key, flat_rows, io_task, open_run_store, store_link
from tasks.names import REJECTED_EVENT

if TYPE_CHECKING:
    from refit.registry import ModelVersion
    from refit.smoke import SmokeReport
    from refit.tracking import TrackingReport


@task(name="load-config", cache_policy=NO_CACHE)
def load_pipeline_config(path: str) -> PipelineConfig:
    """Read and check the pipeline config (YAML)."""
    return load_config(path)


@io_task("load-and-validate")
def load_and_validate(
    store_uri: str, config: PipelineConfig, run_id: str, window_days: float | None, as_of: datetime | None = None
) -> ValidatedData:
    """Base data plus labelled captures; bad rows quarantined; the run stops when too many are bad."""
    store = open_run_store(store_uri)
    handle = pipeline.load_and_validate(store, config, run_id, window_days, as_of)
    get_run_logger().info(
        "validated %s rows (%s quarantined%s), fingerprint %s",
        f"{handle.rows:,}",
        f"{handle.invalid_rows:,}",
        f"; {handle.later_rows:,} dated after as_of {as_of.isoformat()} left out"
        if as_of and handle.later_rows
        else "",
        handle.fingerprint.short,
    )
    if handle.quarantine_uri:
        summary = json.loads(pipeline.read_text(store, handle.summary_uri))
        create_table_artifact(
            key=artifact_key(config.dataset.name, "quarantine"),
            table=[
                {
                    "column": f["column"],
                    "rule": f["rule"],
                    "rows": f["count"],
                    "examples": ", ".join(f["examples"][:3]),
                    "files": ", ".join(f["sources"]),
                }
                for f in summary["failures"]
            ],
            description=f"Rows quarantined by validation; kept at {handle.quarantine_uri}",
        )
    return handle


@io_task("split-data")
def split_data(store_uri: str, config: PipelineConfig, data: ValidatedData, run_id: str) -> SplitHandles:
    """Deterministic split by a hash of the id (or by time)."""
    splits = pipeline.split_data(open_run_store(store_uri), config, data, run_id)
    get_run_logger().info("split rows: %s", splits.rows)
    return splits


@task(name="train-candidates", cache_policy=NO_CACHE)
def train_candidates(store_uri: str, config: PipelineConfig, splits: SplitHandles, run_id: str) -> CandidateHandle:
    """Search the configured model families; the best on validation becomes the candidate."""
    logger = get_run_logger()

    def on_epoch(row: dict[str, Any]) -> None:
        logger.info(
            "%s trial %s epoch %s: train loss %.4f, val loss %.4f, %s",
            row.get("family"),
            row.get("trial"),
            row.get("epoch"),
            row.get("train_loss", float("nan")),
            row.get("val_loss", float("nan")),
            ", ".join(
                f"{k} {v:.4f}"
                for k, v in row.items()
                if k.startswith("val_") and k != "val_loss" and isinstance(v, float)
            ),
        )

    candidate = pipeline.train_candidates(open_run_store(store_uri), config, splits, run_id, on_epoch=on_epoch)
    logger.info(
        "candidate: %s %s, validation %s, on %s in %.1fs",
        candidate.family,
        candidate.params,
        candidate.validation_metrics,
        candidate.device,
        candidate.train_s,
    )
    create_table_artifact(
        key=artifact_key(config.dataset.name, "trials"),
        table=[
            {
                "trial": t["index"],
                "family": t["family"],
                "status": t["status"],
                candidate.primary_metric: t.get("primary"),
                "params": str(t["params"]),
                "train_s": t.get("train_s"),
            }
            for t in candidate.trials
        ],
        description="Every search trial and its validation metric",
    )
    return candidate


@task(name="smoke-test", cache_policy=NO_CACHE)
def smoke_test_candidate(
    store_uri: str, config: PipelineConfig, splits: SplitHandles, candidate: CandidateHandle
) -> SmokeReport:
    """Load the artifact in a fresh process and check its outputs before anything is registered."""
    report = pipeline.smoke_test_candidate(open_run_store(store_uri), config, splits, candidate)
    logger = get_run_logger()
    if report.passed:
        logger.info("smoke test passed: %d rows, %.1f ms per 1,000 rows", report.rows, report.ms_per_1k_rows or 0)
    else:
        logger.error("smoke test FAILED: %s", "; ".join(report.reasons))
    return report


@io_task("evaluate-candidate")
def evaluate_candidate(
    store_uri: str,
    config: PipelineConfig,
    splits: SplitHandles,
    candidate: CandidateHandle,
    run_id: str,
    force: bool,
    reason: str | None,
) -> EvaluationHandle:
    """Candidate vs champion on the same rows, overall and per segment, with paired bootstrap CIs."""
    store = open_run_store(store_uri)
    evaluation = pipeline.evaluate_candidate(store, config, splits, candidate, run_id, force=force, reason=reason)
    decision = evaluation.decision
    get_run_logger().info("gate: %s", decision.headline)
    return evaluation


@io_task("register-model")
def register_model(
    store_uri: str,
    config: PipelineConfig,
    splits: SplitHandles,
    candidate: CandidateHandle,
    evaluation: EvaluationHandle,
    run_id: str,
    reason: str | None,
    tags: dict[str, str],
) -> ModelVersion:
    """A new immutable registry version with its lineage, metrics, decision and drift reference."""
    version = pipeline.register_candidate(
        open_run_store(store_uri), config, splits, candidate, evaluation, run_id, reason=reason, tags=tags
    )
    get_run_logger().info("registered %s version %s (%s)", version.name, version.version, evaluation.outcome)
    _emit(
        "refit.model.registered",
        version.name,
        version.version,
        {"outcome": evaluation.outcome, "compared_with": evaluation.champion_version, "run_id": run_id},
    )
    if not evaluation.promote:
        _emit(
            REJECTED_EVENT,
            version.name,
            version.version,
            {"outcome": evaluation.outcome, "headline": evaluation.decision.headline},
        )
    return version


@io_task("calibrate-drift")
def calibrate_drift(store_uri: str, config: PipelineConfig, version: int) -> list[int]:
    """The new champion's drift calibration (column kinds, null distributions), so its first check is quick."""
    from refit.monitoring import calibrate_version

    buckets = calibrate_version(open_run_store(store_uri), config, version)
    get_run_logger().info("drift calibration of %s version %s: window sizes %s", config.dataset.name, version, buckets)
    return buckets


@io_task("promote-model")
def promote_model(
    store_uri: str,
    config: PipelineConfig,
    version: int,
    evaluation: EvaluationHandle,
    splits: SplitHandles,
    candidate: CandidateHandle,
    run_id: str,
    reason: str | None,
) -> PromotionHandle:
    """Move the champion alias by compare-and-swap; when another run promoted meanwhile, judge the
    candidate again against that champion and promote only if it wins (``pipeline.promote_version``)."""
    done = pipeline.promote_version(
        open_run_store(store_uri), config, version, evaluation, splits, candidate, run_id, reason
    )
    logger = get_run_logger()
    final = done.evaluation
    for champion in done.rejudged_against:
        logger.warning(
            "the champion of %s moved to v%s during this run: judged again against it", config.dataset.name, champion
        )
    event = done.event
    if event is None:
        logger.warning("not promoted: against v%s, %s", final.champion_version, final.decision.headline)
        _emit(
            REJECTED_EVENT,
            config.dataset.name,
            version,
            {"outcome": final.outcome, "headline": final.decision.headline},
        )
        return done
    logger.info("champion of %s: %s -> %s", config.dataset.name, event.from_version, event.to_version)
    _emit(
        "refit.model.promoted",
        config.dataset.name,
        version,
        {"from_version": event.from_version, "forced": event.forced, "reason": event.reason},
    )
    return done


@task(name="track-run", cache_policy=NO_CACHE)
def track_run(
    store_uri: str,
    config: PipelineConfig,
    run_id: str,
    splits: SplitHandles,
    candidate: CandidateHandle,
    smoke: SmokeReport,
    evaluation: EvaluationHandle | None,
    version: ModelVersion | None,
    trigger: str,
) -> TrackingReport:
    """Log the run to MLflow (nested trials, datasets, dossier) and mirror the registry; never fails the run."""
    from prefect.runtime import flow_run

    tags = {"refit.trigger": trigger, "prefect.flow_run_id": str(flow_run.id or "")}
    if flow_run.ui_url:
        tags["prefect.flow_run_url"] = str(flow_run.ui_url)
    report = tracking.track_run(
        open_run_store(store_uri), config, run_id, splits, candidate, smoke, evaluation, version, tags
    )
    logger = get_run_logger()
    if report.ok:
        logger.info("tracked as MLflow run %s at %s", report.run_id, report.uri)
    else:
        logger.warning("MLflow tracking skipped: %s", report.error)
    return report


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(store_uri: str, config: PipelineConfig, summary: dict[str, Any]) -> None:
    """The run's summary (a flat table), its dossier (chart embedded, titled with the version) and
    links to the model artifact and the dossier file: one artifact key per kind, so the UI keeps
    each kind's history."""
    model = config.dataset.name
    create_table_artifact(
        key=artifact_key(model, "retrain-summary"),
        table=flat_rows({k: v for k, v in summary.items() if k != "dossier"}),
        description=summary.get("headline") or "retrain summary",
    )
    dossier = summary.get("dossier") or {}
    store = open_run_store(store_uri)
    if dossier.get("markdown") and dossier.get("png"):
        version = summary.get("version")
        candidate = f"version {version}" if version is not None else f"of run {summary['run_id']} (not registered)"
        markdown = for_display(
            pipeline.read_text(store, dossier["markdown"]), pipeline.read_bytes(store, dossier["png"]), candidate
        )
        title = f"{model} version {version}" if version is not None else f"{model} run {summary['run_id']}"
        create_markdown_artifact(
            markdown=markdown, key=artifact_key(model, "dossier"), description=f"{title}: {summary.get('outcome')}"
        )
        link, text = store_link(store, dossier["markdown"])
        create_link_artifact(
            key=artifact_key(model, "dossier-file"), link=link, link_text=text, description=f"Dossier of {title}"
        )
    if summary.get("artifact_uri"):
        link, text = store_link(store, str(summary["artifact_uri"]))
        create_link_artifact(
            key=artifact_key(model, "model-artifact"),
            link=link,
            link_text=text,
            description=f"Model artifact of {model} run {summary.get('run_id')}",
        )


def _emit(event: str, model: str, version: int, payload: dict[str, Any]) -> None:
    emit_event(
        event=event,
        resource={"prefect.resource.id": f"refit.model.{model}", "refit.model": model, "refit.version": str(version)},
        payload=payload,
    )
