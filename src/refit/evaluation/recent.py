"""Which rows the gate judges on: the whole holdout, the most recent production window, or both.

A holdout drawn from everything accumulated (a hash split of base data plus captures) can be
mostly last season's rows while production has moved on; ``gate.evaluate_on: recent`` judges
both models on the test rows of the last ``gate.recent_days`` (event time, up to the newest
test row) instead. Test rows are never trained on: not by the candidate, and not by any earlier
version either, since a hash split keeps each id in its split as data grows and a time split
puts the newest rows last. Too few recent rows (``gate.recent_min_rows``) fall back to the
holdout, and the decision says so. ``both`` asks both questions: a REJECT on either rejects,
PROMOTE needs both. The paired bootstrap and the per-segment rules are the gate's own, on
whichever rows are judged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from refit.config import DatasetConfig, GateConfig
from refit.evaluation.gate import evaluate_gate
from refit.evaluation.records import GateDecision, Outcome
from refit.metrics import Task


def recent_rows(timestamps: pd.Series, gate: GateConfig) -> tuple[np.ndarray | None, str]:
    """The rows of the last ``gate.recent_days`` up to the newest one, and what they are; None
    (with the reason) when there are fewer than ``gate.recent_min_rows``."""
    ts = pd.to_datetime(timestamps, utc=True)
    if ts.isna().all():
        return None, "the test rows have no event times: judged on the whole holdout"
    end = ts.max()
    start = end - pd.Timedelta(days=gate.recent_days)
    mask = ((ts > start) & (ts <= end)).to_numpy()
    n = int(mask.sum())
    span = f"the last {gate.recent_days:g} days up to {end:%Y-%m-%d %H:%M} UTC"
    if n < gate.recent_min_rows:
        return None, (
            f"only {n:,} test rows in {span} (gate.recent_min_rows {gate.recent_min_rows:,}): "
            f"judged on the whole holdout ({len(ts):,} rows)"
        )
    return mask, f"the {n:,} test rows of {span} (of {len(ts):,} held out)"


def judge(
    task: Task,
    y: Any,
    cand_score: Any,
    champ_score: Any | None,
    frame: pd.DataFrame,
    gate: GateConfig,
    dataset: DatasetConfig,
    force: bool = False,
    force_reason: str | None = None,
) -> GateDecision:
    """The gate's decision on the rows ``gate.evaluate_on`` names (``frame``: the test rows,
    with the timestamp and segment columns)."""
    segment_cols = sorted({s.column for s in dataset.segments})
    y, cand = np.asarray(y), np.asarray(cand_score)
    champ = None if champ_score is None else np.asarray(champ_score)

    def decide(mask: np.ndarray | None) -> GateDecision:
        rows = slice(None) if mask is None else mask
        segments = frame.loc[rows, segment_cols].reset_index(drop=True) if segment_cols else None
        return evaluate_gate(
            task,
            y[rows],
            cand[rows],
            None if champ is None else champ[rows],
            segments,
            gate,
            dataset,
            force=force,
            force_reason=force_reason,
        )

    if gate.evaluate_on == "holdout" or champ is None:
        note = "the whole holdout" if champ is not None else "the whole holdout (first run: no champion to compare)"
        return decide(None).model_copy(update={"evaluated_on": "holdout", "evaluation_note": note})
    mask, note = recent_rows(frame[dataset.timestamp_column], gate)
    if mask is None:  # too few recent rows: the holdout, with the reason
        return decide(None).model_copy(update={"evaluated_on": "holdout", "evaluation_note": note})
    recent = decide(mask)
    if gate.evaluate_on == "recent":
        return recent.model_copy(update={"evaluated_on": "recent", "evaluation_note": note})
    return _both(decide(None), recent, note, force)


def _both(holdout: GateDecision, recent: GateDecision, note: str, forced: bool) -> GateDecision:
    """REJECT when either rejects, PROMOTE when both promote, INCONCLUSIVE otherwise; the record
    is the recent window's (or the rejecting one's), with both verdicts in its note."""
    outcomes = (holdout.gate_outcome, recent.gate_outcome)
    if Outcome.REJECT in outcomes:
        rule, base = Outcome.REJECT, recent if recent.gate_outcome == Outcome.REJECT else holdout
    elif outcomes == (Outcome.PROMOTE, Outcome.PROMOTE):
        rule, base = Outcome.PROMOTE, recent
    else:
        rule, base = Outcome.INCONCLUSIVE, recent
    both = f"holdout ({holdout.n_rows:,} rows): {holdout.gate_outcome}; recent, {note}: {recent.gate_outcome}"
    update: dict[str, Any] = {
        "gate_outcome": rule,
        "outcome": Outcome.PROMOTE if forced else rule,
        "evaluated_on": "both",
        "evaluation_note": both,
    }
    if rule != base.gate_outcome:
        update["headline"] = f"{rule}: {both}"
        update["reasons"] = [*base.reasons, f"evaluate_on both: {both}"]
    return base.model_copy(update=update)
