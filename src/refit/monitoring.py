"""The drift-check steps as plain functions (Prefect tasks wrap them one-to-one).

Reference: the champion version's stored training sample. Current: captured production
requests in a window. Signals: feature drift (Evidently), and performance decay when labels
have arrived. The governor (``refit.policy``) turns signals into at most one retrain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from refit.capture import CaptureWindow, read_captures
from refit.config import PipelineConfig
from refit.data import run_stamp, schema_for, validate_and_quarantine
from refit.errors import DataError, RefitError
from refit.io import Store
from refit.io.layout import LAYOUT

PREDICTION_COLUMN = "prediction"


@dataclass(frozen=True)
class Reference:
    model: str
    version: int
    frame: pd.DataFrame
    registered_metrics: dict[str, float]


def load_reference(store: Store, config: PipelineConfig) -> Reference:
    """The champion's training sample and its metrics at registration (overall and per segment)."""
    from refit.registry import Registry

    reg = Registry(store)
    name = config.dataset.name
    try:
        version = reg.champion(name)
    except RefitError as exc:
        raise RefitError(f"no champion for {name} yet ({exc}): run a retrain first") from None
    frame = reg.reference(name, version.version)
    metric = config.gate.primary_metric  # what registration stored, overall and per segment
    registered: dict[str, float] = {}
    if version.metrics.get(metric) is not None:
        registered["overall"] = float(version.metrics[metric])  # type: ignore[arg-type]
    for segment, values in version.segment_metrics.items():
        if values.get(metric) is not None:
            registered[segment] = float(values[metric])  # type: ignore[arg-type]
    return Reference(model=name, version=version.version, frame=frame, registered_metrics=registered)


def load_capture_window(
    store: Store,
    config: PipelineConfig,
    *,
    now: datetime | None = None,
    window_hours: int | None = None,
    window_rows: int | None = None,
) -> CaptureWindow:
    """Captured requests of the last N hours (or the last N rows), and the labels that arrived for them.

    Read by :func:`refit.capture.read_captures`, as training reads them.
    """
    end = now or datetime.now(UTC)
    hours = window_hours if window_hours is not None else config.drift.window_hours
    rows = window_rows if window_rows is not None else config.drift.window_rows
    start = end - timedelta(hours=hours) if hours else datetime(1970, 1, 1, tzinfo=UTC)
    ds = config.dataset
    window = read_captures(
        store,
        ds.name,
        timestamp_column=ds.timestamp_column,
        request_id_column=ds.request_id_column,
        target=ds.target,
        start=start,
        end=end,
        last_rows=rows,
    )
    if window.frame.empty:
        raise DataError(
            f"no captured requests for {ds.name} between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC "
            f"under {store.uri_for(LAYOUT.capture_requests(ds.name).rstrip('/'))}"
        )
    return window


def validate_captures(store: Store, config: PipelineConfig, window: CaptureWindow) -> pd.DataFrame:
    """Captures go through their contract too; bad rows are quarantined as for training data."""
    schema_model = schema_for(config, "capture")
    result, _, _ = validate_and_quarantine(
        store,
        window.frame,
        window.origins,
        schema_model,
        f"{config.dataset.name}-captures",
        config.validation.max_invalid_fraction,
    )
    return result.valid


@dataclass(frozen=True)
class DriftReport:
    """What the drift step found, with links to what it stored."""

    result: Any  # refit.drift.DriftResult
    decay: Any | None  # refit.drift.DecayResult
    report_uri: str
    history_key: str
    window_start: datetime
    window_end: datetime
    current_rows: int
    labelled_rows: int

    @property
    def drift_detected(self) -> bool:
        return bool(self.result.drift_detected)

    @property
    def decay_detected(self) -> bool:
        return bool(self.decay is not None and self.decay.decayed)


def compute_drift_and_decay(
    store: Store, config: PipelineConfig, reference: Reference, current: pd.DataFrame, window: CaptureWindow
) -> DriftReport:
    """Drift by :func:`refit.drift.check_drift` with its HTML report (stored), and decay on the labelled
    part of the window. The drift-check flow's compute step; ``benchmarks/drift.py`` times the same call."""
    from refit.drift import append_drift_history, check_drift

    if window.start is None or window.end is None:
        raise ValueError("a drift window has both bounds (load it with load_capture_window)")
    start, end = window.start, window.end
    columns = config.feature_columns
    ref = reference.frame.copy()
    prediction = (
        PREDICTION_COLUMN if PREDICTION_COLUMN in current.columns and current[PREDICTION_COLUMN].notna().any() else None
    )
    if prediction is not None and prediction not in ref.columns:
        ref[prediction] = _champion_scores(store, config, reference, ref)
    check = check_drift(ref, current, columns, prediction, config.drift, seed=config.training.seed, report=True)
    html = check.html or ""  # report=True: always there
    report_key = LAYOUT.drift_report(config.dataset.name, run_stamp(end))
    store.put_bytes(report_key, html.encode())
    history_key = append_drift_history(store, config.dataset.name, check.result, end)
    decay = None
    labelled = window.labelled(current)
    if len(labelled):
        scores = _champion_scores(store, config, reference, labelled)
        decay = judge_decay(config, reference.registered_metrics, labelled, scores)
    return DriftReport(
        result=check.result,
        decay=decay,
        report_uri=store.uri_for(report_key),
        history_key=history_key,
        window_start=start,
        window_end=end,
        current_rows=len(current),
        labelled_rows=len(labelled),
    )


def judge_decay(
    config: PipelineConfig, registered: dict[str, float], labelled: pd.DataFrame, scores: np.ndarray
) -> Any:
    """The champion's decay on labelled rows, judged as the gate judged it at registration:
    in ``gate.primary_metric`` and on the gate's own segments (bins, labels, crossings), so
    every segment key matches a registered one. Returns a ``refit.drift.DecayResult``."""
    from refit.drift import compute_decay
    from refit.evaluation import segment_labels

    ds = config.dataset
    return compute_decay(
        labelled[ds.target].to_numpy(),
        scores,
        registered,
        config.drift,
        metric=config.gate.primary_metric,
        segments=segment_labels(labelled.reset_index(drop=True), ds),
    )


def _champion_scores(store: Store, config: PipelineConfig, reference: Reference, df: pd.DataFrame) -> np.ndarray:
    from refit.pipeline import load_version, scores
    from refit.registry import Registry

    model = load_version(store, Registry(store).get_version(reference.model, reference.version))
    return scores(model, df, config.dataset.task)


@dataclass(frozen=True)
class GovernorOutcome:
    action: str  # trigger | suppress | none
    reason: str
    detail: str
    fingerprint: str
    ledger_seq: int
    event_payload: dict[str, Any] = field(default_factory=dict)

    @property
    def trigger(self) -> bool:
        return self.action == "trigger"


def ask_governor(
    store: Store, config: PipelineConfig, reference: Reference, report: DriftReport, now: datetime | None = None
) -> GovernorOutcome:
    """Record the signal in the ledger; the governor says trigger, suppress or none, and why."""
    from refit.policy import DriftSignal, Governor

    result = report.result
    decayed = report.decay.decayed_segments if report.decay is not None else []
    reason = []
    if report.drift_detected:
        reason.append(f"{result.n_drifted} of {result.n_columns} features drifted (share {result.drift_share:.2f})")
    if decayed:
        reason.append("performance decayed in " + ", ".join(decayed))
    signal = DriftSignal(
        model=config.dataset.name,
        source="drift-check",
        window_start=report.window_start,
        window_end=report.window_end,
        champion_version=str(reference.version),
        drift_detected=report.drift_detected,
        decay_detected=report.decay_detected,
        drift_share=float(result.drift_share),
        detail="; ".join(reason) or "no drift",
    )
    entry = Governor(store, config.dataset.name, config.drift).submit(signal, now=now)
    decision = entry.decision
    payload = {
        "model": config.dataset.name,
        "reason": "; ".join(reason) or "no drift",
        "drift_share": float(result.drift_share),
        "drifted_columns": list(result.drifted_columns),
        "decayed_segments": decayed,
        "window_start": report.window_start.isoformat(),
        "window_end": report.window_end.isoformat(),
        "champion_version": reference.version,
        "report_uri": report.report_uri,
        "fingerprint": decision.fingerprint,
    }
    return GovernorOutcome(
        action=decision.action,
        reason=decision.reason,
        detail=decision.detail,
        fingerprint=decision.fingerprint,
        ledger_seq=entry.seq,
        event_payload=payload,
    )


def drift_summary_rows(report: DriftReport) -> list[dict[str, Any]]:
    """Per-column scores and verdicts for a table."""
    rows = [
        {"column": c.column, "method": c.method, "score": c.score, "threshold": c.threshold, "drifted": c.drifted}
        for c in report.result.columns
    ]
    if report.result.prediction is not None:
        p = report.result.prediction
        rows.append(
            {
                "column": f"{p.column} (prediction)",
                "method": p.method,
                "score": p.score,
                "threshold": p.threshold,
                "drifted": p.drifted,
            }
        )
    return rows
