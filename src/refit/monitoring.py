"""The drift-check steps as plain functions (Prefect tasks wrap them one-to-one).

Reference: the champion version's stored training sample. Current: captured production
requests in a window. Signals: feature drift (Evidently), and performance decay when labels
have arrived. The governor (``refit.policy``) turns signals into at most one retrain.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from refit.capture import CaptureWindow, read_captures
from refit.capture.reader import LABEL_SOURCE_COLUMN
from refit.compat.evidently import performance_frame
from refit.config import PipelineConfig
from refit.data import label_rules, run_stamp, schema_for, validate_and_quarantine
from refit.errors import RefitError
from refit.evidence import evidence_html
from refit.io import Store
from refit.io.layout import LAYOUT
from refit.validation import ValidationResult

PREDICTION_COLUMN = "prediction"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    model: str
    version: int
    frame: pd.DataFrame
    registered_metrics: dict[str, float]
    #: The registered values' bootstrap standard errors and holdout rows, where registration
    #: stored them (``refit.decay.registered_errors``; none for versions registered before).
    registered_se: dict[str, float] = field(default_factory=dict)
    registered_n: dict[str, int] = field(default_factory=dict)
    #: What checks against this reference compute once: the champion's model and its predictions
    #: on ``frame`` (a flow's steps share one Reference; a replay keeps one while the champion serves).
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


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
    from refit.decay import se_key

    metric, se = config.gate.primary_metric, se_key(config.gate.primary_metric)  # what registration stored
    registered: dict[str, float] = {}
    errors: dict[str, float] = {}
    rows: dict[str, int] = {}
    for scope, values in {"overall": version.metrics, **version.segment_metrics}.items():
        if values.get(metric) is not None:
            registered[scope] = float(values[metric])  # type: ignore[arg-type]
        if values.get(se) is not None:
            errors[scope] = float(values[se])  # type: ignore[arg-type]
        if scope != "overall" and values.get("n") is not None:
            rows[scope] = int(values["n"])  # type: ignore[arg-type]
    return Reference(
        model=name, version=version.version, frame=frame, registered_metrics=registered,
        registered_se=errors, registered_n=rows,
    )  # fmt: skip


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


def evidence_digest(window: CaptureWindow, current: pd.DataFrame, labelled_rows: int | None = None) -> str:
    """What a drift check judged, by content: the requests it compared and the labels it had.

    The governor de-duplicates on this, so re-running the same check on the same rows (at
    another wall-clock time, with other window bounds) is the same evidence, while a window
    whose labels have since arrived (or been corrected: ``labelled_rows`` counts the labels
    that passed validation) is new evidence."""
    import hashlib

    # order-free: each id hashed to 64 bits and the hashes sorted (sorting a million strings
    # and joining them took most of a warm check at 1M rows)
    ids = current[window.request_id_column].astype(str).to_numpy(dtype=object)
    hashed = np.sort(pd.util.hash_array(ids, categorize=False))
    labelled = len(window.labelled(current)) if labelled_rows is None else labelled_rows
    digest = hashlib.sha256()
    digest.update(hashed.tobytes())
    digest.update(f"|rows={len(ids)}|labelled={labelled}".encode())
    return digest.hexdigest()[:16]


def validate_captures(store: Store, config: PipelineConfig, window: CaptureWindow) -> ValidationResult:
    """Captures go through their contract too; bad rows are quarantined as for training data.
    The check goes on with the valid rows unless more than
    ``validation.max_invalid_capture_fraction`` of them are bad (training's own, tighter
    ``max_invalid_fraction`` stopped every check of a window that held a few bad requests)."""
    schema_model = schema_for(config, "capture")
    result, _, _ = validate_and_quarantine(
        store,
        window.frame,
        window.origins,
        schema_model,
        f"{config.dataset.name}-captures",
        config.validation.max_invalid_capture_fraction,
    )
    return result


def _stored_kinds(store: Store, model: str, version: int) -> dict[str, Any] | None:
    key = LAYOUT.drift_kinds(model, version)
    if not store.exists(key):
        return None
    kinds: dict[str, Any] = json.loads(store.get_bytes(key))
    return kinds


def column_kinds(
    store: Store,
    config: PipelineConfig,
    model: str,
    version: int,
    frame: pd.DataFrame,
    columns: list[str] | None = None,
) -> dict[str, Any]:
    """The column kinds every drift check of ``version`` uses: stored with the version at its
    promotion (``LAYOUT.drift_kinds``), else decided now from its reference and stored. A column
    keeps the kind it had for the nearest earlier version with stored kinds (the champion before),
    so the low-cardinality rule cannot flip a column between versions. ``columns``: the
    config's features by default."""
    from refit.drift import reference_kinds

    stored = _stored_kinds(store, model, version)
    columns = config.feature_columns if columns is None else columns
    if stored is not None and all(c in stored for c in columns):
        return stored
    earlier = [
        int(m)
        for k in store.list(LAYOUT.drift_calibrations(model))
        if (m := _version_of_kinds(k)) is not None and int(m) < version
    ]
    inherited = (_stored_kinds(store, model, max(earlier)) or {}) if earlier else {}
    kinds = reference_kinds(frame, columns, config.drift, inherited={**inherited, **(stored or {})})
    store.put_bytes(LAYOUT.drift_kinds(model, version), json.dumps(kinds, sort_keys=True).encode())
    return dict(kinds)


def _version_of_kinds(key: str) -> str | None:
    parts = key.rsplit("/", 2)
    if len(parts) == 3 and parts[2] == "kinds.json" and parts[1].startswith("v") and parts[1][1:].isdigit():
        return parts[1][1:]
    return None


def calibrate_version(store: Store, config: PipelineConfig, version: int) -> list[int]:
    """What a version's drift checks need, made at its promotion so that its first check is as
    quick as every later one: its column kinds (stored) and the null distributions of a full
    window (``drift.sample_size`` rows; ``drift.window_rows`` too when set), drawn and cached in
    the store where the checks read them (not with ``drift.calibrate_at_promotion: false``: the
    first check draws them). Returns the size buckets drawn."""
    from refit.drift import StoreNullCache, calibrate
    from refit.registry import Registry

    name = config.dataset.name
    frame = Registry(store).reference(name, version)
    kinds = column_kinds(store, config, name, version, frame)
    cfg = config.drift
    if not cfg.calibrate_at_promotion:
        return []
    sizes = [cfg.sample_size, *([cfg.window_rows] if cfg.window_rows else [])]
    nulls = StoreNullCache(store, name, version)
    return calibrate(frame, config.feature_columns, cfg, config.training.seed, nulls, sizes, kinds)


@dataclass(frozen=True)
class DriftReport:
    """What the drift step found; :func:`record_drift_check` adds where it stored the evidence."""

    result: Any  # refit.drift.DriftResult
    decay: Any | None  # refit.decay.DecayResult
    report_uri: str
    history_key: str
    window_start: datetime
    window_end: datetime
    current_rows: int
    labelled_rows: int
    evidence: str | None = None  # evidence_digest: what was judged, by content
    check: Any | None = field(default=None, repr=False, compare=False)  # refit.drift.DriftCheck (its samples)
    champion_version: int | None = None
    report_stored: bool = False
    #: The labelled rows' targets and the champion's scores (``refit.compat.evidently.performance_frame``),
    #: for Evidently's performance preset in the stored report; None without labels.
    performance: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    #: The labelled rows' labels held to the training contract (``refit.data.label_rules``),
    #: those that broke it already quarantined (the summary says where). None without labels.
    labels: ValidationResult | None = field(default=None, repr=False, compare=False)

    @property
    def drift_detected(self) -> bool:
        return bool(self.result.drift_detected)

    @property
    def decay_detected(self) -> bool:
        return bool(self.decay is not None and self.decay.decayed)


def compute_drift_and_decay(
    store: Store, config: PipelineConfig, reference: Reference, current: pd.DataFrame, window: CaptureWindow
) -> DriftReport:
    """Drift by :func:`refit.drift.check_drift` (calibrated against nulls cached in the store per
    champion version), and decay on the labelled part of the window. The drift-check flow's
    compute step; ``benchmarks/drift.py`` times the same call. The labels joined to the window
    are held to the training contract first (``refit.data.label_rules``): their validation's
    summary and quarantine are stored, as the captures' are, and past
    ``validation.max_invalid_capture_fraction`` the check stops. The evidence goes to the store
    with the governor's decision (:func:`record_drift_check`)."""
    from refit.drift import StoreNullCache, check_drift

    if window.start is None or window.end is None:
        raise ValueError("a drift window has both bounds (load it with load_capture_window)")
    start, end = window.start, window.end
    columns = config.feature_columns
    ref = reference.frame.copy()
    prediction = (
        PREDICTION_COLUMN if PREDICTION_COLUMN in current.columns and current[PREDICTION_COLUMN].notna().any() else None
    )
    if prediction is not None and prediction not in ref.columns:
        ref[prediction] = _reference_predictions(store, config, reference, ref)
    nulls = reference._memo.setdefault("nulls", StoreNullCache(store, config.dataset.name, reference.version))
    kinds = column_kinds(store, config, reference.model, reference.version, reference.frame)
    check = check_drift(
        ref,
        current,
        columns,
        prediction,
        config.drift,
        seed=config.training.seed,
        report=False,
        nulls=nulls,
        kinds=kinds,
    )
    decay = None
    performance = None
    labels = None
    labelled = window.labelled(current)
    if len(labelled):  # the labels held to the training contract, as training holds them
        source = labelled.pop(LABEL_SOURCE_COLUMN) if LABEL_SOURCE_COLUMN in labelled else "captured labels"
        # bad ones quarantined (kept even when too many stop the check), the rest judged
        labels = validate_and_quarantine(
            store, labelled, source, label_rules(config), f"{config.dataset.name}-labels",
            config.validation.max_invalid_capture_fraction,
        )[0]  # fmt: skip
        labelled = labels.valid
    if len(labelled):
        scored = labelled_scores(store, config, reference, labelled)
        decay = champion_decay(store, config, reference, labelled, scored)
        performance = performance_frame(config.dataset.task, *scored)
    return DriftReport(
        result=check.result,
        decay=decay,
        report_uri="",
        history_key="",
        window_start=start,
        window_end=end,
        current_rows=len(current),
        labelled_rows=len(labelled),
        evidence=evidence_digest(window, current, len(labelled)),
        check=check,
        champion_version=reference.version,
        performance=performance,
        labels=labels,
    )


def record_drift_check(
    store: Store,
    config: PipelineConfig,
    report: DriftReport,
    outcome: GovernorOutcome | None,
    *,
    html: bool | None = None,
) -> DriftReport:
    """Store what the decision used: the check's result (JSON, always kept) with the decay table
    and the governor's decision, and Evidently's HTML report when ``drift.report_html`` says so
    (``on-change``: the first check of a champion, or a decision unlike the previous check's;
    ``html=True`` forces one, ``False`` skips it). Old reports go by ``retention.drift_reports*``.

    Returns the report with ``history_key`` and ``report_uri`` (the HTML, else the JSON)."""
    from refit.compat.evidently import split_bundle
    from refit.drift import append_drift_history, latest_drift_record, prune_reports, render_report
    from refit.drift.history import new_check_id

    name, cfg = config.dataset.name, config.drift
    decision = _decision_record(report, outcome)
    previous = latest_drift_record(store, name)
    if html is None:
        html = cfg.report_html == "always" or (cfg.report_html == "on-change" and _changed(previous, decision))
    report_key, check_id = None, new_check_id()  # the report and its JSON share the check's id
    if html and report.check is not None:

        def unbundled(page: str) -> str:
            page, asset, script = split_bundle(page)
            if asset is not None and script is not None:
                asset_key = LAYOUT.drift_report_asset(name, asset)
                if not store.exists(asset_key):
                    store.put_bytes(asset_key, script.encode())
            return page

        performance = None
        if report.performance is not None and len(report.performance):
            from refit.compat.evidently import run_performance_report

            try:
                page = run_performance_report(report.performance, config.dataset.task, "target", "prediction")[1]
                performance = unbundled(page)
            except Exception as exc:  # Evidently's extra section: said, never the check's end
                # (Evidently 0.7 refuses a multiclass window without every class among its labels)
                log.warning("no Evidently performance section in the drift report: %s: %s", type(exc).__name__, exc)
        page = unbundled(render_report(report.check, header=evidence_html(report, outcome, performance)))
        report_key = LAYOUT.drift_report(name, f"{run_stamp(report.window_end)}-{check_id}")
        store.put_bytes(report_key, page.encode())
        prune_reports(store, name, config.retention, now=report.window_end)
    extra = {"decision": decision, "decay": report.decay.model_dump(mode="json") if report.decay is not None else None}
    extra["report_key"] = report_key
    history_key = append_drift_history(store, name, report.result, report.window_end, extra=extra, run_id=check_id)
    uri = store.uri_for(report_key) if report_key else store.uri_for(history_key)
    return replace(report, history_key=history_key, report_uri=uri, report_stored=report_key is not None)


def _decision_record(report: DriftReport, outcome: GovernorOutcome | None) -> dict[str, Any]:
    return {
        "champion_version": report.champion_version,
        "drift_detected": report.drift_detected,
        "decay_detected": report.decay_detected,
        "decayed_segments": list(report.decay.decayed_segments) if report.decay is not None else [],
        "drifted_columns": list(report.result.drifted_columns),
        "action": outcome.action if outcome is not None else None,
        "reason": outcome.reason if outcome is not None else None,
        "detail": outcome.detail if outcome is not None else None,
        "window_start": report.window_start.isoformat(),
        "window_end": report.window_end.isoformat(),
        "current_rows": report.current_rows,
        "labelled_rows": report.labelled_rows,
    }


def _changed(previous: dict[str, Any] | None, decision: dict[str, Any]) -> bool:
    """Whether this check decided otherwise than the previous one (or is a new champion's first)."""
    if previous is None:
        return True
    before = previous.get("decision") or {}
    keys = ("champion_version", "drift_detected", "decay_detected", "action")
    return any(before.get(k) != decision.get(k) for k in keys)


def labelled_scores(
    store: Store, config: PipelineConfig, reference: Reference, labelled: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, list[Any] | None]:
    """The labels as the metric reads them, the reference champion's scores on ``labelled`` and,
    for multiclass, the class order of the labels' indices and the scores' columns."""
    from refit.pipeline import gate_inputs, multiclass_inputs

    champion = _champion(store, reference)
    if config.dataset.task == "multiclass":
        classes, y, (scores,) = multiclass_inputs(config.dataset, labelled, [champion])
        return y, scores, classes
    y, (scores,) = gate_inputs(config.dataset, labelled, [champion])
    return y, scores, None


def champion_decay(
    store: Store,
    config: PipelineConfig,
    reference: Reference,
    labelled: pd.DataFrame,
    scored: tuple[Any, ...] | None = None,
) -> Any:
    """The reference champion's decay on a window's labelled rows: the drift check's decay.
    ``scored``: :func:`labelled_scores` of these rows (labels and scores first) when the caller
    has them already."""
    y, scores = (scored if scored is not None else labelled_scores(store, config, reference, labelled))[:2]
    return judge_decay(
        config, reference.registered_metrics, labelled, scores, labels=y,
        registered_se=reference.registered_se, registered_n=reference.registered_n,
    )  # fmt: skip


def judge_decay(
    config: PipelineConfig,
    registered: dict[str, float],
    labelled: pd.DataFrame,
    scores: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    registered_se: dict[str, float] | None = None,
    registered_n: dict[str, int] | None = None,
) -> Any:
    """The champion's decay on labelled rows, judged as the gate judged it at registration:
    in ``gate.primary_metric`` and on the gate's own segments (bins, labels, crossings), so
    every segment key matches a registered one. ``labels``: the labels as the metric reads
    them when ``scores`` came with them (multiclass: ``refit.pipeline.gate_inputs``); default
    ``dataset.gate_labels``. ``registered_se`` / ``registered_n``: the registered values'
    standard errors and holdout rows (:class:`Reference`); a segment registered on fewer than
    ``gate.min_segment_size`` rows is noted as weak evidence. Returns a ``refit.decay.DecayResult``."""
    from refit.decay import compute_decay
    from refit.evaluation import segment_labels

    ds = config.dataset
    return compute_decay(
        ds.gate_labels(labelled[ds.target]) if labels is None else labels,
        scores,
        registered,
        config.drift,
        metric=config.gate.primary_metric,
        segments=segment_labels(labelled.reset_index(drop=True), ds),
        seed=config.training.seed,
        registered_se=registered_se,
        registered_n=registered_n,
        weak_below=config.gate.min_segment_size,
    )


def _champion(store: Store, reference: Reference) -> Any:
    """The reference's champion model, loaded (and its artifact checked) once per Reference."""
    from refit.pipeline import load_version
    from refit.registry import Registry

    if "champion" not in reference._memo:
        version = Registry(store).get_version(reference.model, reference.version)
        reference._memo["champion"] = load_version(store, version)
    return reference._memo["champion"]


def _reference_predictions(store: Store, config: PipelineConfig, reference: Reference, df: pd.DataFrame) -> np.ndarray:
    """The champion's predictions on the reference frame ``df`` (computed once per Reference)."""
    from refit.pipeline import capture_predictions

    if "predictions" not in reference._memo:
        ds = config.dataset
        model = _champion(store, reference)
        reference._memo["predictions"] = capture_predictions(model, df, ds.task, ds.positive_class)
    predictions: np.ndarray = reference._memo["predictions"]
    return predictions


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
