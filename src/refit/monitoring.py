"""The drift-check steps as plain functions (Prefect tasks wrap them one-to-one).

Reference: the champion version's stored training sample. Current: captured production
requests in a window. Signals: feature drift (Evidently), and performance decay when labels
have arrived. The governor (``refit.policy``) turns signals into at most one retrain.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from refit.capture import CaptureWindow, read_captures
from refit.config import PipelineConfig
from refit.data import run_stamp, schema_for, validate_and_quarantine
from refit.errors import RefitError
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
    as_of: datetime | None = None,
    window_hours: int | None = None,
    window_rows: int | None = None,
) -> CaptureWindow:
    """The captured requests of a window ending at ``as_of``, and the labels known by then.

    Time is the data's own: requests are placed by their event time, and a label counts only
    once it has arrived (its ``label_time`` at or before ``as_of``), so a check run today on
    last month's captures sees what a check run then would have seen.

    Args:
        store: Where the captures are.
        config: ``drift.window_hours`` / ``drift.window_rows`` when the arguments are None.
        as_of: End of the window (default: now, UTC).
        window_hours: The window is the N hours before ``as_of``.
        window_rows: The window is the last N requests up to ``as_of``, whatever their age:
            it replaces the hour window (it is never intersected with it).
    """
    end = _utc(as_of) if as_of is not None else datetime.now(UTC)
    rows = window_rows if window_rows is not None else config.drift.window_rows
    hours = window_hours if window_hours is not None else config.drift.window_hours
    if window_rows is not None or (window_hours is None and rows is not None):
        hours = None  # a row count replaces the hours, from the call or from the YAML
    start = end - timedelta(hours=hours) if hours else None
    ds = config.dataset
    window = read_captures(
        store,
        ds.name,
        timestamp_column=ds.timestamp_column,
        request_id_column=ds.request_id_column,
        target=ds.target,
        start=start,
        end=end,
        last_rows=rows if hours is None else None,
        known_at=end,
    )
    if window.frame.empty:
        return replace(window, start=start, end=end)  # a quiet window: the check completes with "no data"
    if start is None:  # a row window starts at its first request
        first = pd.to_datetime(window.frame[ds.timestamp_column], utc=True).min()
        window = replace(window, start=first.to_pydatetime())
    return window


def no_data_detail(store_uri: str, config: PipelineConfig, window: CaptureWindow) -> str:
    """What a drift check of an empty window says (it completes; a quiet hour is not a failure)."""
    name = config.dataset.name
    span = (
        f"between {window.start:%Y-%m-%d %H:%M} and {window.end:%Y-%m-%d %H:%M} UTC"
        if window.start is not None and window.end is not None
        else f"up to {window.end:%Y-%m-%d %H:%M} UTC"
    )
    where = f"{store_uri.rstrip('/')}/{LAYOUT.capture_requests(name).rstrip('/')}"
    return f"no captured requests for {name} {span} under {where}"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware (got {value.isoformat()})")
    return value.astimezone(UTC)


def evidence_digest(window: CaptureWindow, current: pd.DataFrame) -> str:
    """What a drift check judged, by content: the requests it compared and the labels it had.

    The governor de-duplicates on this, so re-running the same check on the same rows (at
    another wall-clock time, with other window bounds) is the same evidence, while a window
    whose labels have since arrived is new evidence."""
    import hashlib

    ids = np.sort(current[window.request_id_column].astype(str).to_numpy())
    labelled = window.labelled(current)
    digest = hashlib.sha256()
    digest.update("\n".join(ids).encode())
    digest.update(f"|labelled={len(labelled)}".encode())
    return digest.hexdigest()[:16]


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
    decay: Any | None  # refit.decay.DecayResult
    report_uri: str
    history_key: str
    window_start: datetime
    window_end: datetime
    current_rows: int
    labelled_rows: int
    evidence: str | None = None  # evidence_digest: what was judged, by content

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
        evidence=evidence_digest(window, current),
    )


def judge_decay(
    config: PipelineConfig, registered: dict[str, float], labelled: pd.DataFrame, scores: np.ndarray
) -> Any:
    """The champion's decay on labelled rows, judged as the gate judged it at registration:
    in ``gate.primary_metric`` and on the gate's own segments (bins, labels, crossings), so
    every segment key matches a registered one. Returns a ``refit.decay.DecayResult``."""
    from refit.decay import compute_decay
    from refit.evaluation import segment_labels

    ds = config.dataset
    return compute_decay(
        ds.gate_labels(labelled[ds.target]),
        scores,
        registered,
        config.drift,
        metric=config.gate.primary_metric,
        segments=segment_labels(labelled.reset_index(drop=True), ds),
        seed=config.training.seed,
    )


def _champion_scores(store: Store, config: PipelineConfig, reference: Reference, df: pd.DataFrame) -> np.ndarray:
    from refit.pipeline import load_version, scores
    from refit.registry import Registry

    model = load_version(store, Registry(store).get_version(reference.model, reference.version))
    return scores(model, df, config.dataset.task, config.dataset.positive_class)


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
    """Record the signal in the ledger; the governor says trigger, suppress or none, and why.

    The governor's clock is the window's: cooldown, daily cap and k-of-n are counted at the
    window's end (``now`` only when given), so a replay of last month decides as the live system
    would have, and a check that runs late still counts when its data was."""
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
        evidence=report.evidence,
    )
    entry = Governor(store, config.dataset.name, config.drift).submit(signal, now=now or report.window_end)
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
