"""The promotion dossier: why a candidate was (or was not) promoted, for people and machines.

``write_dossier`` renders a ``GateDecision`` with its context as JSON (round-trips to the
decision), Markdown (a headline sentence, the checks, the per-segment table with intervals,
both versions, the data fingerprints and the config) and a PNG forest plot of the
per-segment gains. matplotlib is imported and drawn through its Agg canvas inside the
function only, so importing this module costs nothing and touches no global backend.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from refit.evaluation import OVERALL, VERDICT, GateDecision
from refit.io.base import Store
from refit.jsonable import to_jsonable
from refit.metrics import get_metric

SCHEMA_VERSION = 1
FILES = {"json": "dossier.json", "markdown": "dossier.md", "png": "dossier.png"}
_MAX_PLOT_ROWS = 40
_KNOWN_CONTEXT = {
    "model_name",
    "model",
    "candidate_version",
    "champion_version",
    "data",
    "fingerprints",
    "row_counts",
    "config",
}


class Dossier(TypedDict):
    json: bytes
    markdown: str
    png: bytes


def _data_rows(context: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``data`` ({name: {fingerprint, rows}}), or ``fingerprints`` + ``row_counts`` merged."""
    data: dict[str, dict[str, Any]] = {}
    for name, value in (context.get("data") or {}).items():
        data[str(name)] = dict(value) if isinstance(value, Mapping) else {"fingerprint": value}
    for name, fp in (context.get("fingerprints") or {}).items():
        data.setdefault(str(name), {})["fingerprint"] = fp
    for name, rows in (context.get("row_counts") or {}).items():
        data.setdefault(str(name), {})["rows"] = rows
    return data


def _num(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _signed(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x + 0.0:+.{digits}f}"


def _interval(lo: float | None, hi: float | None) -> str:
    return "—" if lo is None or hi is None else f"[{lo:+.4f}, {hi:+.4f}]"


def _result(passed: bool | None) -> str:
    return "not gated" if passed is None else ("pass" if passed else "**FAIL**")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _version(v: Any) -> str:
    return "none" if v is None else str(v)


def _markdown(d: GateDecision, context: Mapping[str, Any], data: dict[str, dict[str, Any]], png_name: str) -> str:
    model = context.get("model_name") or context.get("model") or "model"
    cand_v, champ_v = _version(context.get("candidate_version")), _version(context.get("champion_version"))
    lines = [f"# Promotion dossier: {model}, candidate {cand_v} vs champion {champ_v}", "", f"**{d.headline}**", ""]
    lines += _summary_lines(d, cand_v, champ_v)
    lines += _check_lines(d)
    lines += _segment_lines(d)
    lines += [f"![Per-segment gains with intervals]({png_name})", ""]
    lines += ["## Versions and data", "", f"- model: {model}", f"- candidate: {cand_v}", f"- champion: {champ_v}", ""]
    lines += _data_lines(data)
    extra = {k: v for k, v in context.items() if k not in _KNOWN_CONTEXT}
    if extra:
        lines += ["## Context", "", *_json_block(extra)]
    if context.get("config") is not None:
        lines += ["## Config", "", *_json_block(context["config"])]
    return "\n".join(lines)


def _summary_lines(d: GateDecision, cand_v: str, champ_v: str) -> list[str]:
    """A forced promotion's note, the overall table, and how to read the numbers."""
    label = get_metric(d.metric).label
    pct = f"{d.confidence:.0%}"
    lines = []
    if d.forced:
        lines += [
            f"> Forced promotion by request: {d.force_reason}. The gate's own verdict was {VERDICT[d.gate_outcome]}.",
            "",
        ]
    if d.evaluation_note:  # gate.evaluate_on: which rows were judged, or why not the recent ones
        lines += [f"Judged on {d.evaluation_note} (`gate.evaluate_on: {d.evaluated_on}`).", ""]
    lines += [
        f"| {label} (overall, {d.n_rows:,} rows) | candidate {cand_v} | champion {champ_v} | gain | {pct} CI |",
        "|---|---|---|---|---|",
        f"| value | {_num(d.candidate_value)} | {_num(d.champion_value)} | {_signed(d.gain)} | "
        f"{_interval(d.ci_low, d.ci_high)} |",
        "",
    ]
    direction = "higher" if d.higher_is_better else "lower"
    if d.first_run:
        lines += ["No champion yet: only the floor/ceiling apply; segments are reported, not gated.", ""]
    else:
        holm = "Holm-Bonferroni within each segmentation" if d.holm else "no multiplicity correction"
        lines += [
            f"Gain is the candidate's improvement in {label} ({direction} is better), so positive means "
            f"better. Intervals: {pct} percentile intervals from {d.n_resamples:,} paired bootstrap "
            f"resamples (seed {d.seed}); segment tests: {holm}.",
            "",
        ]
    return lines


def _check_lines(d: GateDecision) -> list[str]:
    """The checks table: each overall check, and the segment checks as one summary row."""
    overall_checks = [c for c in d.checks if c.name != "segment_regression"]
    segment_checks = [c for c in d.checks if c.name == "segment_regression"]
    lines = [
        "## Checks",
        "",
        "| check | scope | value | threshold | interval | margin | result | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in overall_checks:
        lines.append(
            f"| {c.name} | {_cell(c.scope)} | {_signed(c.value)} | {_signed(c.threshold)} | "
            f"{_interval(c.ci_low, c.ci_high)} | {_signed(c.margin)} | {_result(c.passed)}"
            f"{'' if c.rejects else ' (promotion only)'} | {_cell(c.note)} |"
        )
    if segment_checks:
        failed = sum(c.passed is False for c in segment_checks)
        gated = sum(c.passed is not None for c in segment_checks)
        lines.append(
            f"| segment_regression | {len(segment_checks)} segment values | | "
            f"{_signed(0.0 - d.max_segment_regression)} | | | "
            f"{'**FAIL**' if failed else 'pass'} | {gated} gated, {failed} failed; see Segments |"
        )
    lines.append("")
    return lines


def _segment_lines(d: GateDecision) -> list[str]:
    """The segments table (on a first run, the candidate's values only); nothing without segments."""
    if not d.segments:
        return []
    label = get_metric(d.metric).label
    pct = f"{d.confidence:.0%}"
    lines = ["## Segments", ""]
    if d.first_run:
        lines += [f"| segment | rows | candidate {label} |", "|---|---|---|"]
        lines += [f"| {_cell(s.scope)} | {s.n:,} | {_num(s.candidate)} |" for s in d.segments]
    else:
        lines += [
            f"Tolerance: a gated segment fails when its loss is significantly beyond {d.max_segment_regression:g}.",
            "",
            f"| segment | rows | candidate | champion | gain | {pct} CI | p (harm) | p (adjusted) | result |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in d.segments:
            p = "—" if s.p_harm is None else f"{s.p_harm:.3g}"
            pa = "—" if s.p_harm_adjusted is None else f"{s.p_harm_adjusted:.3g}"
            result = _result(s.passed) if s.gated else f"not gated ({_cell(s.note)})"
            lines.append(
                f"| {_cell(s.scope)} | {s.n:,} | {_num(s.candidate)} | {_num(s.champion)} | "
                f"{_signed(s.gain)} | {_interval(s.ci_low, s.ci_high)} | {p} | {pa} | {result} |"
            )
    lines.append("")
    return lines


def _data_lines(data: dict[str, dict[str, Any]]) -> list[str]:
    if not data:
        return []
    lines = ["| data | rows | fingerprint |", "|---|---|---|"]
    for name, info in data.items():
        rows = info.get("rows")
        count = f"{rows:,}" if isinstance(rows, int) else ("—" if rows is None else _cell(rows))
        lines.append(f"| {_cell(name)} | {count} | `{_cell(info.get('fingerprint', '—'))}` |")
    lines.append("")
    return lines


def _json_block(value: Any) -> list[str]:
    return ["```json", json.dumps(to_jsonable(value), indent=2, ensure_ascii=False), "```", ""]


_PlotRow = tuple[str, float | None, float | None, float | None, bool | None]


def _plot_rows(d: GateDecision) -> tuple[list[_PlotRow], int]:
    """(label, value, low, high, passed) per plotted row, overall first; and how many were left out."""
    rows: list[_PlotRow]
    if d.first_run:
        rows = [(OVERALL, d.candidate_value, None, None, True)]
        rows += [(s.scope, s.candidate, None, None, None) for s in d.segments]
    else:
        overall = next((c for c in d.checks if c.name == "overall_regression"), None)
        rows = [(OVERALL, d.gain, d.ci_low, d.ci_high, None if overall is None else overall.passed)]
        rows += [(s.scope, s.gain, s.ci_low, s.ci_high, s.passed) for s in d.segments]
    if len(rows) <= _MAX_PLOT_ROWS:
        return rows, 0
    # Keep overall, every failure, then the lowest gains (the segments worth looking at).
    rest = sorted(rows[1:], key=lambda r: (r[4] is not False, r[1] if r[1] is not None else math.inf))
    return [rows[0]] + rest[: _MAX_PLOT_ROWS - 1], len(rows) - _MAX_PLOT_ROWS


def _forest_png(d: GateDecision, model: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, left_out = _plot_rows(d)
    label = get_metric(d.metric).label
    fig = Figure(figsize=(8.0, 1.4 + 0.34 * len(rows)), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = {True: "#1b7837", False: "#c51b7d", None: "#7f7f7f"}
    for i, (_name, value, lo, hi, passed) in enumerate(rows):
        y = len(rows) - 1 - i
        if value is None:
            continue
        color = colors[passed]
        marker = "D" if i == 0 else "o"
        if lo is not None and hi is not None:
            ax.errorbar(
                value,
                y,
                xerr=[[value - lo], [hi - value]],
                fmt=marker,
                color=color,
                ecolor=color,
                capsize=3,
                markersize=7 if i == 0 else 5,
            )
        else:
            ax.plot(value, y, marker, color=color, markersize=7 if i == 0 else 5)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[0] for r in reversed(rows)], fontsize=8)
    if d.first_run:
        for c in d.checks:
            if c.name in ("floor", "ceiling") and c.threshold is not None:
                ax.axvline(c.threshold, color="#c51b7d", linestyle="--", linewidth=1, label=f"{c.name} {c.threshold:g}")
        ax.set_xlabel(f"candidate {label}")
    else:
        ax.axvline(0.0, color="black", linewidth=1, label="no change")
        tol = d.max_segment_regression
        ax.axvline(-tol, color="#c51b7d", linestyle="--", linewidth=1, label=f"segment tolerance −{tol:g}")
        diff = "candidate − champion" if d.higher_is_better else "champion − candidate"
        ax.set_xlabel(f"gain in {label} ({diff}; positive = candidate better), {d.confidence:.0%} CI")
    for passed, name in ((True, "pass"), (False, "fail"), (None, "not gated")):
        if any(r[4] is passed and r[1] is not None for r in rows[1:]):
            ax.plot([], [], "o", color=colors[passed], label=name)
    ax.axhline(len(rows) - 1.5, color="#cccccc", linewidth=0.8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=7, frameon=False)
    title = f"{model}: {VERDICT[d.outcome]}" + (" (forced)" if d.forced else "")
    if left_out:
        title += f" — {left_out} segment(s) not shown"
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", color="#eeeeee")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_dossier(
    decision: GateDecision,
    context: Mapping[str, Any],
    out: Store | str | os.PathLike[str] | None = None,
    *,
    prefix: str = "",
) -> Dossier:
    """Render the dossier of a gate decision, and write it when ``out`` is given.

    Args:
        decision: What the gate decided.
        context: ``model_name``, ``candidate_version``, ``champion_version``, ``data``
            (``{name: {"fingerprint": ..., "rows": ...}}``, or ``fingerprints`` and
            ``row_counts`` mappings), ``config`` (the run's config as a dict); other keys are
            kept under ``context``. Everything must be JSON-like.
        out: A store (written at ``{prefix}dossier.json|md|png``) or a local folder; None
            only renders.
        prefix: Key prefix in the store, e.g. ``models/churn/v7/``.

    Returns:
        ``{"json": bytes, "markdown": str, "png": bytes}``.
    """
    data = to_jsonable(_data_rows(context))
    model = str(context.get("model_name") or context.get("model") or "model")
    extra = {k: v for k, v in context.items() if k not in _KNOWN_CONTEXT}
    document = {
        "schema_version": SCHEMA_VERSION,
        "headline": decision.headline,
        "outcome": decision.outcome.value,
        "model_name": model,
        "candidate_version": to_jsonable(context.get("candidate_version")),
        "champion_version": to_jsonable(context.get("champion_version")),
        "data": data,
        "decision": decision.model_dump(mode="json"),
        "config": to_jsonable(context.get("config")),
        "context": to_jsonable(extra),
    }
    payload = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")
    result: Dossier = {
        "json": payload,
        "markdown": _markdown(decision, context, data, FILES["png"]),
        "png": _forest_png(decision, model),
    }
    if out is not None:
        blobs = {
            FILES["json"]: result["json"],
            FILES["markdown"]: result["markdown"].encode("utf-8"),
            FILES["png"]: result["png"],
        }
        if isinstance(out, Store):
            for name, blob in blobs.items():
                out.put_bytes(f"{prefix}{name}", blob)
        else:
            folder = Path(out)
            folder.mkdir(parents=True, exist_ok=True)
            for name, blob in blobs.items():
                (folder / f"{prefix}{name}").write_bytes(blob)
    return result


def read_decision(payload: bytes) -> GateDecision:
    """The decision back from a dossier's JSON."""
    return GateDecision.model_validate(json.loads(payload)["decision"])


__all__ = ["Dossier", "FILES", "read_decision", "write_dossier"]


def for_display(markdown: str, png: bytes, candidate: str) -> str:
    """The dossier as a UI shows it: the chart embedded (a ``data:`` URI, so no relative file is
    left to break) and the candidate named in the title (``version 3`` once registered; the
    dossier on disk is written before registration and names the run).

    Args:
        markdown: The stored ``dossier.md``.
        png: The stored ``dossier.png``.
        candidate: What to call the candidate, e.g. ``"version 3"`` or ``"dry run abc123"``.
    """
    import base64
    import re

    encoded = base64.b64encode(png).decode("ascii")
    shown = markdown.replace(f"]({FILES['png']})", f"](data:image/png;base64,{encoded})")
    lines = shown.split("\n")
    if lines and lines[0].startswith("# Promotion dossier:"):
        lines[0] = re.sub(r", candidate .* vs champion ", f", candidate {candidate} vs champion ", lines[0], count=1)
    return "\n".join(lines)
