"""Every check's stored result: append, read back as a table, plot; and the pruning of old HTML reports."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from refit.config import RetentionConfig
from refit.data import run_stamp, stamp_time
from refit.drift.records import DriftResult, score_ratio
from refit.io.base import Store
from refit.io.layout import LAYOUT

#: Per column, and per run, fields of a history row (see ``read_drift_history``).
_HISTORY_COLUMN_FIELDS = ["column", "method", "score", "threshold", "p_value", "drifted"]
_HISTORY_RUN_FIELDS = [
    "drift_share",
    "drift_detected",
    "threshold_mode",
    "reference_sample_rows",
    "current_sample_rows",
]
_HISTORY_COLUMNS = [
    "at",
    "run_id",
    "role",
    *_HISTORY_COLUMN_FIELDS,
    "ratio",
    *_HISTORY_RUN_FIELDS,
    "decision",
    "decision_reason",
    "decay_detected",
]


def new_check_id() -> str:
    """A drift check's id: its history JSON and its HTML report are named ``<stamp>-<id>``, so
    two checks of windows ending at the same time keep both."""
    return uuid.uuid4().hex[:12]


def append_drift_history(
    store: Store,
    model: str,
    result: DriftResult,
    at: datetime,
    extra: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> str:
    """Store one run's result under ``drift/<model>/history/<timestamp>-<id>.json``.

    One object per run (never a read-modify-write), so concurrent checks cannot lose one.
    The timestamp leads the key, so listing order is time order. ``extra`` (the decision, the
    decay table, the report's key) is stored beside the result. ``run_id``: the check's
    :func:`new_check_id` (a new one when None). Returns the key.
    """
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    at = at.astimezone(UTC)
    run_id = run_id or new_check_id()
    key = f"{LAYOUT.drift_history(model)}{run_stamp(at)}-{run_id}.json"
    body = {"at": at.isoformat(), "run_id": run_id, "model": model, "result": result.model_dump(mode="json")}
    body.update(dict(extra or {}))
    store.put_if_absent(key, json.dumps(body, sort_keys=True, default=str).encode())
    return key


def latest_drift_record(store: Store, model: str) -> dict[str, Any] | None:
    """The last stored check of ``model`` (its JSON body), or None before the first."""
    keys = [k for k in store.list(LAYOUT.drift_history(model)) if k.endswith(".json")]
    if not keys:
        return None
    body: dict[str, Any] = json.loads(store.get_bytes(keys[-1]))
    return body


def _report_time(key: str) -> datetime | None:
    """When a report was made, from its key (``LAYOUT.drift_report``'s run stamp)."""
    return stamp_time(key.rsplit("/", 1)[-1].removesuffix(".html"))


def prune_reports(store: Store, model: str, cfg: RetentionConfig, now: datetime) -> list[str]:
    """Remove HTML reports beyond ``cfg.drift_reports``, older than ``cfg.drift_reports_days``
    (before ``now``, the check's own clock) or past ``cfg.drift_reports_max_mb`` in all, oldest
    first. Check results (JSON) are never removed here. Returns the removed keys."""
    reports = sorted(k for k in store.list(LAYOUT.drift_reports(model)) if k.endswith(".html"))
    cutoff = now.astimezone(UTC).timestamp() - cfg.drift_reports_days * 86_400
    keep: list[str] = []
    removed: list[str] = []
    total = 0
    cap = cfg.drift_reports_max_mb * 1_000_000
    for key in reversed(reports):  # newest first
        when = _report_time(key)
        too_old = when is not None and when.timestamp() < cutoff
        size = store.size(key) if not too_old and len(keep) < cfg.drift_reports else 0
        if too_old or len(keep) >= cfg.drift_reports or (keep and total + size > cap):
            store.delete(key)
            removed.append(key)
            continue
        keep.append(key)
        total += size
    return removed


def read_drift_history(store: Store, model: str) -> pd.DataFrame:
    """Every stored run of ``model``, one row per (run, column), in time order.

    Columns: ``at`` (UTC), ``run_id``, ``column``, ``role`` (feature or prediction),
    ``method``, ``score``, ``threshold``, ``p_value``, ``drifted``, ``ratio`` (score over
    threshold: 1.0 is the line), the run's ``drift_share``, ``drift_detected``, mode and sample
    sizes, and the decision stored with it (``decision``, ``decision_reason``, ``decay_detected``).
    """
    rows: list[dict[str, Any]] = []
    for key in store.list(LAYOUT.drift_history(model)):
        if not key.endswith(".json"):
            continue
        # Read as plain JSON, not as DriftResult: old records stay readable when it grows.
        body = json.loads(store.get_bytes(key))
        result = body["result"]
        decision = body.get("decision") or {}
        run = {
            "at": body["at"],
            "run_id": body["run_id"],
            **{k: result.get(k) for k in _HISTORY_RUN_FIELDS},
            "decision": decision.get("action"),
            "decision_reason": decision.get("reason"),
            "decay_detected": decision.get("decay_detected"),
        }
        tested = [(c, "feature") for c in result["columns"]]
        if result.get("prediction") is not None:
            tested.append((result["prediction"], "prediction"))
        for col, role in tested:
            ratio = score_ratio(col.get("method", ""), col.get("score"), col.get("threshold"))
            rows.append({**run, "role": role, **{k: col.get(k) for k in _HISTORY_COLUMN_FIELDS}, "ratio": ratio})
    frame = pd.DataFrame(rows, columns=_HISTORY_COLUMNS)
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    for name in ("score", "threshold", "p_value", "ratio"):
        frame[name] = frame[name].astype("float64")
    return frame.sort_values(["at", "run_id", "role", "column"], kind="stable").reset_index(drop=True)


#: The plot's score/threshold axis is clipped to this range (log scale): a far-off score
#: cannot flatten the others.
_RATIO_CLIP = (0.01, 100.0)


def plot_drift_history(history: pd.DataFrame, title: str | None = None) -> bytes:
    """PNG of each column's score over its threshold across windows (1.0 is the line; log scale,
    clipped to 0.01..100), window time on x, drifted points marked, and the decisions below.

    Uses matplotlib's Agg canvas directly, so it never touches the global backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 7), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[4, 1])
    if history.empty:
        top.text(0.5, 0.5, "no drift history yet", ha="center", va="center", transform=top.transAxes)
    else:
        columns = sorted(history["column"].astype(str).unique())
        colours = [f"C{i}" for i in range(10)]
        styles = ["-", "--", ":"]
        for i, column in enumerate(columns):
            rows = history[history["column"] == column].sort_values("at")
            ratio = rows["ratio"].clip(*_RATIO_CLIP)
            top.plot(
                rows["at"],
                ratio,
                linestyle=styles[(i // 10) % len(styles)],
                color=colours[i % 10],
                marker=".",
                linewidth=1,
                label=column,
            )
            hits = rows["drifted"].astype(bool).to_numpy()
            top.scatter(rows["at"][hits], ratio[hits], marker="x", s=50, color=colours[i % 10], zorder=3)
        top.axhline(1.0, color="black", linewidth=1.5)
        top.set_yscale("log")
        top.set_ylim(*_RATIO_CLIP)
        top.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        runs = history.drop_duplicates("run_id").sort_values("at")
        bottom.plot(runs["at"], runs["drift_share"], color="grey", linewidth=1)
        markers = {"trigger": ("^", "red"), "suppress": ("v", "orange"), "none": ("o", "green")}
        for action, (marker, colour) in markers.items():
            these = runs[runs["decision"] == action]
            if len(these):
                bottom.scatter(these["at"], these["drift_share"], marker=marker, color=colour, s=40, label=action)
        unknown = runs[runs["decision"].isna()]
        if len(unknown):
            bottom.scatter(unknown["at"], unknown["drift_share"], marker="o", color="grey", s=15, label="(no decision)")
        bottom.set_ylim(-0.05, 1.05)
        bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    top.set_ylabel("score / threshold (x: drifted)")
    bottom.set_ylabel("share drifted")
    bottom.set_xlabel("window end (UTC)")
    top.set_title(title or "Drift history")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
