"""What a drift alert looks like on the wire, and the one shape the rest of refit sees.

Two formats are read: a small generic JSON alert (any monitor can send it) and the Prometheus
Alertmanager webhook (version 4; Grafana's webhook contact point sends the same structure as
version 1). Both become ``DriftAlert`` records; only firing ones lead to a dispatch.

The contract with whoever acts on an alert is here too (``DispatchResult``,
``DispatchUnavailable``), so a dispatcher can be written and tested without the HTTP app.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field, ValidationError, field_validator

from refit.clock import MAX_DECISION_AHEAD
from refit.errors import RefitError
from refit.records import Record, TolerantRecord

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MODEL_LABELS = ("model", "refit_model")
MAX_DEPTH = 32  # JSON nesting levels read; deeper bodies are refused (422), not a RecursionError (500)
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


class PayloadError(RefitError, ValueError):
    """The body is not an alert refit can read. The message says what is wrong, and where."""


class DispatchUnavailable(RefitError):
    """The dispatcher cannot start a run now (Prefect unreachable); the sender should retry.

    The dispatcher records the alert for a later retry before raising this; the receiver
    answers 503 with ``Retry-After``.
    """

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


DispatchStatus = Literal["accepted", "queued", "suppressed", "ignored", "unknown_model"]


@dataclass(frozen=True)
class DispatchResult:
    """What the dispatcher did with one alert.

    ``accepted``: a flow run was started (``flow_run_id`` set). ``queued``: the alert is kept
    (in an outbox) and its run will be started when the orchestrator answers; ``reason`` says
    why it is not started yet. ``suppressed``: the governor held it back (cooldown, cap,
    duplicate; ``reason`` says which). ``ignored``: nothing to do. ``unknown_model``: this
    receiver serves another model; the alert was not delivered (HTTP 404, so the sender knows).
    """

    status: DispatchStatus
    flow_run_id: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status not in ("accepted", "queued", "suppressed", "ignored", "unknown_model"):
            raise ValueError(f"unknown dispatch status {self.status!r}")
        if self.status == "accepted" and not self.flow_run_id:
            raise ValueError("an accepted dispatch needs a flow_run_id")


class _Wire(TolerantRecord):
    # A sender's payload: fields refit does not read are ignored, and numeric ids read as text.
    model_config = ConfigDict(coerce_numbers_to_str=True)


class DriftAlert(Record):
    """One drift alert for one model, whatever format it arrived in.

    ``alert_id`` is stable across redeliveries of the same alert, so the governor can
    de-duplicate on it (and use it in an idempotency key).
    """

    alert_id: str = Field(min_length=1, max_length=200)
    model: str = Field(pattern=MODEL_NAME_PATTERN)
    status: Literal["firing", "resolved"] = "firing"
    source: Literal["generic", "alertmanager"] = "generic"
    reason: str | None = None
    drift_share: float | None = Field(None, ge=0.0, le=1.0)
    drifted_columns: tuple[str, ...] = ()
    window: str | dict[str, Any] | None = None
    window_end: AwareDatetime | None = Field(
        None, description="When the drifted window ended, in the data's time: the retrain runs as of then."
    )
    severity: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    group_key: str | None = Field(default=None, description="Alertmanager's groupKey.")
    fingerprints: tuple[str, ...] = Field(
        default=(), description="Alertmanager fingerprints of the alerts behind this one."
    )

    @property
    def firing(self) -> bool:
        return self.status == "firing"


Dispatcher = Callable[[DriftAlert], DispatchResult]


# --- the generic format ----------------------------------------------------------------------


class GenericAlert(_Wire):
    """``{"alert_id": ..., "model": ..., ...}``: what a drift monitor of our own sends."""

    alert_id: str = Field(min_length=1, max_length=200)
    model: str | None = None
    status: Literal["firing", "resolved"] = "firing"
    reason: str | None = Field(None, max_length=4000)
    summary: str | None = Field(None, max_length=4000)
    drift_share: float | None = Field(None, ge=0.0, le=1.0)
    drifted_columns: list[str] = Field(default_factory=list, max_length=10_000)
    window: str | dict[str, Any] | None = None
    window_end: AwareDatetime | None = Field(None, description="Or window.end: the drifted window's end.")
    severity: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("alert_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable() or value != value.strip():
            raise ValueError("must be printable, without surrounding spaces")
        return value


# --- the Alertmanager format -----------------------------------------------------------------


class AlertmanagerAlert(_Wire):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None  # noqa: N815 - the wire name
    endsAt: datetime | None = None  # noqa: N815
    generatorURL: str | None = None  # noqa: N815
    fingerprint: str | None = None


class AlertmanagerPayload(_Wire):
    """Alertmanager's webhook body (``version: "4"``); Grafana's is a superset (``"1"``)."""

    version: str
    groupKey: str = Field(min_length=1)  # noqa: N815
    status: Literal["firing", "resolved"]
    receiver: str | None = None
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str | None = None  # noqa: N815
    truncatedAlerts: int = 0  # noqa: N815
    alerts: list[AlertmanagerAlert] = Field(min_length=1)


# --- normalisation ---------------------------------------------------------------------------


def _describe(exc: ValidationError, fmt: str) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(body)"
        parts.append(f"{where}: {err['msg']}")
    return f"invalid {fmt} alert: " + "; ".join(parts)


def _model_from(labels: dict[str, str]) -> str | None:
    for name in MODEL_LABELS:
        if labels.get(name):
            return labels[name]
    return None


def _checked_model(model: str | None, where: str) -> str:
    if model is None:
        raise PayloadError(
            f"{where}: no model: set 'model' in the alert or a 'model'/'refit_model' label, "
            "or start the receiver with a default model"
        )
    if not _MODEL_NAME.fullmatch(model):
        raise PayloadError(f"{where}: invalid model name {model[:130]!r} (letters, digits, '.', '_', '-')")
    return model


def _float_or_none(value: str | None) -> float | None:
    try:
        share = float(value) if value is not None else None
    except ValueError:
        return None
    return share if share is not None and 0.0 <= share <= 1.0 else None


def _columns(value: str | None) -> list[str]:
    return [c.strip() for c in (value or "").split(",") if c.strip()]


def _common_labels(label_sets: Iterable[dict[str, str]]) -> dict[str, str]:
    sets = list(label_sets)
    if not sets:
        return {}
    return {k: v for k, v in sets[0].items() if all(s.get(k) == v for s in sets[1:])}


def _window_end(window: str | dict[str, Any] | None) -> datetime | None:
    """``window.end`` of a generic alert (or an Alertmanager ``window_end`` annotation) as a
    UTC time; a value that is not an ISO 8601 time with a zone is a one-line error."""
    if not isinstance(window, dict) or window.get("end") in (None, ""):
        return None
    value = window["end"]
    try:
        end = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"window end {str(value)[:40]!r} is not an ISO 8601 time") from None
    if end.tzinfo is None:
        raise PayloadError(f"window end {str(value)[:40]!r} has no time zone")
    return end.astimezone(UTC)


def _fingerprint(alert: AlertmanagerAlert) -> str:
    if alert.fingerprint:
        return alert.fingerprint
    canonical = json.dumps(alert.labels, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _from_generic(alert: GenericAlert, default_model: str | None) -> DriftAlert:
    model = _checked_model(alert.model or _model_from(alert.labels) or default_model, "alert")
    return DriftAlert(
        alert_id=alert.alert_id,
        model=model,
        status=alert.status,
        source="generic",
        reason=alert.reason or alert.summary,
        drift_share=alert.drift_share,
        drifted_columns=tuple(alert.drifted_columns),
        window=alert.window,
        window_end=alert.window_end or _window_end(alert.window),
        severity=alert.severity,
        labels=dict(alert.labels),
    )


def _from_alertmanager(payload: AlertmanagerPayload, default_model: str | None) -> list[DriftAlert]:
    groups: dict[tuple[str, str], list[AlertmanagerAlert]] = {}
    for index, alert in enumerate(payload.alerts):
        model = _model_from(alert.labels) or _model_from(payload.commonLabels) or default_model
        if model is None and alert.status == "resolved":
            continue  # nothing will be done with it; no reason to refuse the notification
        groups.setdefault((alert.status, _checked_model(model, f"alerts.{index}")), []).append(alert)

    out = []
    for (status, model), alerts in sorted(groups.items()):
        # One firing episode of one set of alerts: a repeat notification keeps both the
        # fingerprints and startsAt, a re-fire after a resolve gets a new startsAt.
        episode = sorted(f"{_fingerprint(a)}@{a.startsAt.isoformat() if a.startsAt else ''}" for a in alerts)
        digest = hashlib.sha256("\x00".join([payload.groupKey, model, status, *episode]).encode()).hexdigest()
        annotations = [a.annotations for a in alerts] + [payload.commonAnnotations]
        reason = next((a.get(k) for a in annotations for k in ("summary", "description") if a.get(k)), None)
        labels = _common_labels(a.labels for a in alerts)
        shares = [s for a in annotations for s in [_float_or_none(a.get("drift_share"))] if s is not None]
        columns = sorted({c for a in annotations for c in _columns(a.get("drifted_columns"))})
        ends = [e for a in annotations for e in [_window_end({"end": a.get("window_end")})] if e is not None]
        out.append(
            DriftAlert(
                alert_id=f"am-{digest[:24]}",
                model=model,
                status=status,
                source="alertmanager",
                reason=reason or labels.get("alertname"),
                drift_share=max(shares) if shares else None,
                drifted_columns=tuple(columns),
                window_end=max(ends) if ends else None,
                severity=labels.get("severity"),
                labels=labels,
                group_key=payload.groupKey,
                fingerprints=tuple(sorted({_fingerprint(a) for a in alerts})),
            )
        )
    return out


def _depth_over(data: Any, limit: int) -> bool:
    """Whether JSON ``data`` nests objects or arrays more than ``limit`` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_alerts(body: bytes | str, default_model: str | None = None, now: datetime | None = None) -> list[DriftAlert]:
    """Read a request body into drift alerts (raise ``PayloadError`` when it is not one).

    An Alertmanager group may hold alerts for several models: each model gets its own
    ``DriftAlert``, firing and resolved apart. Resolved alerts whose model cannot be told are
    dropped, so a resolved-only notification may give an empty list.

    Args:
        body: The raw JSON body.
        default_model: Model for alerts that name none (a receiver that serves one model).
        now: The receiver's clock (default: the system's): a ``window_end`` more than
            :data:`refit.clock.MAX_DECISION_AHEAD` after it is refused (the governor dates no decision
            later), so the sender learns of its wrong clock.
    """
    alerts = _parse(body, default_model)
    limit = (now or datetime.now(UTC)) + MAX_DECISION_AHEAD
    for alert in alerts:
        if alert.window_end is not None and alert.window_end > limit:
            raise PayloadError(
                f"alert {alert.alert_id!r}: window_end {alert.window_end.isoformat()} is after this "
                f"receiver's clock ({(limit - MAX_DECISION_AHEAD).isoformat(timespec='seconds')}) by more "
                f"than {MAX_DECISION_AHEAD}: a drifted window cannot end in the future"
            )
    return alerts


def _parse(body: bytes | str, default_model: str | None) -> list[DriftAlert]:
    try:
        data = json.loads(body)
    except RecursionError:
        raise PayloadError(f"body is nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    if _depth_over(data, MAX_DEPTH):
        raise PayloadError(f"body is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(data, dict):
        raise PayloadError(f"expected a JSON object, got {type(data).__name__}")
    if "alerts" in data:
        try:
            payload = AlertmanagerPayload.model_validate(data)
        except ValidationError as exc:
            raise PayloadError(_describe(exc, "Alertmanager")) from None
        return _from_alertmanager(payload, default_model)
    try:
        generic = GenericAlert.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(_describe(exc, "generic")) from None
    return [_from_generic(generic, default_model)]
