"""How the gate's verdict is worded: the headline, the reasons, and the numbers in them.

The one home of this text: the dossier, the CLI and the flow's artifacts show these words, so
a verdict reads the same wherever a person meets it.
"""

from __future__ import annotations

from refit.evaluation.records import GateCheck, GateDecision, Outcome
from refit.evaluation.segments import OVERALL
from refit.metrics import get_metric

VERDICT = {Outcome.PROMOTE: "PROMOTED", Outcome.REJECT: "REJECTED", Outcome.INCONCLUSIVE: "INCONCLUSIVE"}
"""The word for each outcome, as a headline starts."""


def signed(x: float | None) -> str:
    """A signed number for sentences: 3 decimals for small values, 4 significant digits else."""
    if x is None:
        return "n/a"
    x = x + 0.0  # no "-0.000"
    return f"{x:+.3f}" if abs(x) < 10 else f"{x:+.4g}"


def ci_text(lo: float | None, hi: float | None, confidence: float) -> str:
    """``95% CI [-0.010, +0.030]``, or ``no CI``."""
    if lo is None or hi is None:
        return "no CI"
    return f"{confidence:.0%} CI [{signed(lo)}, {signed(hi)}]"


def change_text(
    metric: str, gain: float | None, lo: float | None, hi: float | None, confidence: float, unit: str = ""
) -> str:
    """A gain (positive: better) and its interval, written as the change of the metric itself,
    which is how a person reads ``+0.044 RMSE``: the candidate's RMSE is 0.044 higher (worse).
    Where higher is better the two are the same numbers. ``unit``: a label after the number."""

    def flip(x: float | None) -> float | None:
        return x if x is None or get_metric(metric).higher_is_better else -x

    low, high = (lo, hi) if get_metric(metric).higher_is_better else (flip(hi), flip(lo))
    return f"{signed(flip(gain))}{' ' + unit if unit else ''}, {ci_text(low, high, confidence)}"


def p_text(p: float | None) -> str:
    """A p-value with 3 decimals, or ``n/a``."""
    return "n/a" if p is None else f"{p:.3f}"


def reasons(checks: list[GateCheck], metric: str, confidence: float) -> list[str]:
    """One sentence per failed check, in the checks' order."""
    out = []
    for c in checks:
        if c.passed is not False:
            continue
        where = "overall" if c.scope == OVERALL else f"for {c.scope}"
        label = get_metric(metric).label
        if c.name == "floor":
            out.append(f"{label} {c.value:.4g} is below the floor {c.threshold:g}")
        elif c.name == "ceiling":
            out.append(f"{label} {c.value:.4g} is above the ceiling {c.threshold:g}")
        elif c.name == "leakage_guard":
            out.append(f"gain {signed(c.value)} exceeds max_improvement {c.threshold:g} (leakage guard)")
        elif c.name in ("overall_regression", "segment_regression"):
            out.append(
                f"worse {where}: {change_text(metric, c.value, c.ci_low, c.ci_high, confidence, label)}, "
                f"tolerance {abs(c.threshold or 0.0):g}"
            )
        elif c.name == "improvement":
            out.append(
                f"no clear gain overall: {signed(c.value)} ({ci_text(c.ci_low, c.ci_high, confidence)}) "
                f"does not clear {c.threshold:g}"
            )
    return out


def _first_run_body(d: GateDecision) -> str:
    label = get_metric(d.metric).label
    value = "undefined" if d.candidate_value is None else f"{d.candidate_value:.4g}"
    body = "first model (no champion): " + ("; ".join(d.reasons) if d.reasons else f"{label} {value}")
    if not d.reasons and d.checks:
        body += " passes " + " and ".join(f"the {c.name} {c.threshold:g}" for c in d.checks)
    return body


def _trend(d: GateDecision) -> str:
    if d.ci_low is not None and d.ci_low > 0:
        return "better"
    if d.ci_high is not None and d.ci_high < 0:
        return "worse"
    return "no clear change"


def _worse_segments(d: GateDecision, segs: list[GateCheck]) -> str:
    """The three worst failing segments, plain segments before crossings (the cause before its
    echoes), worst first; the tolerance is named once, on the first."""
    worst = sorted(segs, key=lambda c: ("×" in c.scope.split("=")[0], c.value if c.value is not None else 0.0))
    parts = [
        f"{c.scope} ({change_text(d.metric, c.value, c.ci_low, c.ci_high, d.confidence)}"
        + (f", tolerance {d.max_segment_regression:g})" if i == 0 else ")")
        for i, c in enumerate(worst[:3])
    ]
    if len(worst) > 3:
        return ", ".join(parts) + f" and {len(worst) - 3} more segment(s)"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _compared_body(d: GateDecision) -> str:
    trend = _trend(d)
    label = get_metric(d.metric).label
    body = f"{trend} overall ({change_text(d.metric, d.gain, d.ci_low, d.ci_high, d.confidence, label)})"
    bad = [c for c in d.checks if c.passed is False and c.rejects]
    segs = [c for c in bad if c.name == "segment_regression"]
    if segs:
        body += (" but worse for " if trend == "better" else "; worse for ") + _worse_segments(d, segs)
    for c in bad:
        if c.name == "segment_regression":
            continue
        if c.name == "overall_regression":
            if c.threshold:
                body += f"; beyond the overall tolerance {abs(c.threshold):g}"
        elif c.name == "leakage_guard":
            body += f"; gain above max_improvement {c.threshold:g}: suspected leakage"
        else:
            body += f"; {reasons([c], d.metric, d.confidence)[0]}"
    if d.gate_outcome == Outcome.INCONCLUSIVE:
        body += "; the champion stays"
    elif d.gate_outcome == Outcome.PROMOTE:
        body += f"; no gated segment worse beyond tolerance {d.max_segment_regression:g}"
    return body


def describe_decision(d: GateDecision) -> str:
    """One sentence a person can act on, e.g. ``REJECTED: better overall (+0.012 ROC AUC, 95% CI
    [...]) but worse for region=south (-0.041, 95% CI [...], tolerance 0.02)``."""
    body = _first_run_body(d) if d.first_run else _compared_body(d)
    text = f"{VERDICT[d.gate_outcome]}: {body}"
    if d.forced:
        text = f"FORCED PROMOTION (reason: {d.force_reason}); the gate said {text}"
    return text
