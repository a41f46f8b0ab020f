"""The evidence of a drift check, for people: the HTML above Evidently's report
(:func:`evidence_html`) and the tables and headlines of the flow's Prefect artifacts, from one
:class:`refit.monitoring.DriftReport` and the governor's outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from refit.monitoring import DriftReport, GovernorOutcome


def evidence_html(report: DriftReport, outcome: GovernorOutcome | None, performance: str | None = None) -> str:
    """The decision and what it used, as HTML above Evidently's report: the governor's decision
    and reason, the rows of :func:`drift_summary_rows` (each column's score, calibrated threshold,
    p-value and verdict) and of :func:`decay_summary_rows` (the decay table with its intervals),
    and ``performance``, Evidently's performance report of the labelled rows (in a frame)."""
    from html import escape

    def num(value: float | None, digits: int = 4) -> str:
        return "" if value is None else f"{value:.{digits}g}"

    r = report.result
    lines = ['<div style="font-family:sans-serif;margin:16px;border:2px solid #444;padding:12px">']
    verdict = "DRIFT" if r.drift_detected else "no drift"
    decayed = report.decay.decayed_segments if report.decay is not None else []
    lines.append(f"<h2>refit decision: {escape(outcome.action if outcome else 'not asked')}</h2>")
    if outcome is not None:
        lines.append(f"<p>governor: {escape(outcome.reason)}: {escape(outcome.detail)}</p>")
    rule = (
        f"Holm across {r.n_columns} columns at alpha {r.alpha}"
        if r.threshold_mode == "calibrated"
        else f"share of drifted columns >= {r.drift_share_threshold}"
    )
    lines.append(
        f"<p>features: <b>{verdict}</b> ({r.n_drifted} of {r.n_columns} drifted; {escape(rule)}); "
        f"decay: <b>{escape(', '.join(decayed) or 'none')}</b></p>"
    )
    lines.extend(f"<p><b>{escape(line)}</b></p>" for line in decay_headlines(report))
    lines.append(
        "<table border=1 cellpadding=3><tr><th>column</th><th>method</th><th>score</th>"
        "<th>threshold</th><th>p-value</th><th>drifted</th></tr>"
    )
    for row in drift_summary_rows(report):
        lines.append(
            f"<tr><td>{escape(row['column'])}</td><td>{escape(row['method'])}</td><td>{num(row['score'])}</td>"
            f"<td>{num(row['threshold'])}</td><td>{num(row['p_value'])}</td>"
            f"<td>{'yes' if row['drifted'] else ''}</td></tr>"
        )
    lines.append("</table>")
    if report.decay is not None:
        d = report.decay
        lines.append(f"<h3>decay ({escape(d.metric)}, {d.confidence:.0%} intervals, {d.n_labelled} labelled rows)</h3>")
        lines.append(
            "<table border=1 cellpadding=3><tr><th>segment</th><th>rows</th><th>registered (± SE, holdout rows)</th>"
            "<th>now</th><th>drop</th><th>drop interval</th><th>tolerance</th><th>decayed</th></tr>"
        )
        for row in decay_summary_rows(report):
            interval = f"[{num(row['ci_low'])}, {num(row['ci_high'])}]" if row["ci_low"] is not None else ""
            verdict = "; ".join(v for v in ("yes" if row["decayed"] else "", row["note"] or "") if v)
            lines.append(
                f"<tr><td>{escape(row['segment'])}</td><td>{row['rows']}</td><td>{_registered(row, num)}</td>"
                f"<td>{num(row['current'])}</td><td>{num(row['drop'])}</td><td>{interval}</td>"
                f"<td>{num(row['tolerance'])}</td><td>{escape(verdict)}</td></tr>"
            )
        lines.append("</table>")
    if performance is not None:
        n = len(report.performance) if report.performance is not None else 0
        lines.append(f"<h3>performance on the {n} labelled rows (Evidently)</h3>")
        lines.append(
            f'<iframe title="performance" style="width:100%;height:1200px;border:0" srcdoc="{escape(performance)}">'
            "</iframe>"
        )
    lines.append("</div>")
    return "\n".join(lines)


def _registered(row: dict[str, Any], num: Any) -> str:
    """The registered value with its standard error and holdout rows, where they were stored."""
    se = f" ± {num(row['registered_se'], 2)}" if row["registered_se"] is not None else ""
    n = f" ({row['registered_n']:,} rows)" if row["registered_n"] is not None else ""
    return f"{num(row['registered'])}{se}{n}"


def drift_summary_rows(report: DriftReport) -> list[dict[str, Any]]:
    """Per-column scores, thresholds, p-values and verdicts for a table."""
    result = report.result
    tested = [(c, c.column) for c in result.columns]
    if result.prediction is not None:
        tested.append((result.prediction, f"{result.prediction.column} (prediction)"))
    return [
        {
            "column": label,
            "method": c.method,
            "score": c.score,
            "threshold": c.threshold,
            "p_value": c.p_value,
            "drifted": c.drifted,
        }
        for c, label in tested
    ]


def decay_headlines(report: DriftReport) -> list[str]:
    """One line per decayed segment, with the interval of its drop: what the decision used, in words
    (``decay in region=south: roc_auc 0.712 (registered 0.801 ± 0.0061), drop 0.089, 95% interval
    [0.052, 0.121], beyond the tolerance 0.05 (498 labelled rows)``). The interval carries the
    registered value's standard error as well as the window's, where registration stored it."""
    if report.decay is None:
        return []
    d = report.decay

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3g}"

    def se(s: Any) -> str:
        return "" if s.registered_se is None else f" ± {s.registered_se:.2g}"

    return [
        f"decay in {s.segment}: {d.metric} {num(s.current)} (registered {num(s.registered)}{se(s)}), drop "
        f"{num(s.drop)}, {d.confidence:.0%} interval [{num(s.ci_low)}, {num(s.ci_high)}], beyond the "
        f"tolerance {num(s.tolerance)} ({s.n_rows:,} labelled rows)"
        for s in [d.overall, *d.segments]
        if s.decayed
    ]


def decay_summary_rows(report: DriftReport) -> list[dict[str, Any]]:
    """Per segment: the registered metric (its standard error and holdout rows where stored) and
    the current one, the drop's interval, the tolerance and the verdict."""
    if report.decay is None:
        return []
    return [
        {
            "segment": s.segment,
            "rows": s.n_rows,
            "registered": s.registered,
            "registered_se": s.registered_se,
            "registered_n": s.registered_n,
            "current": s.current,
            "ci_low": s.ci_low,
            "ci_high": s.ci_high,
            "drop": s.drop,
            "tolerance": s.tolerance,
            "decayed": s.decayed,
            "note": s.note,
        }
        for s in [report.decay.overall, *report.decay.segments]
    ]
