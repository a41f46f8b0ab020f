"""The one entry point, :func:`check_drift`, and Evidently's HTML report of a check (:func:`render_report`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from refit.compat import evidently as evidently_compat
from refit.compat.evidently import ColumnKind
from refit.config import DriftConfig
from refit.drift import null as drift_null
from refit.drift.caches import MemoryNullCache, NullCache, ReferenceCache
from refit.drift.calibration import _calibrated, _fixed, _Verdict
from refit.drift.plan import _Plan, _plan
from refit.drift.records import ColumnDrift, DriftCheck, DriftResult
from refit.jsonable import finite_or_none


def _by_evidently(plan: _Plan) -> list[str]:
    """The tested columns Evidently scores (it has no new-value test)."""
    tested = [*plan.features, *([plan.prediction] if plan.prediction else [])]
    return [c for c in tested if plan.methods[c] != drift_null.NEW_VALUE]


def _assemble(
    plan: _Plan,
    per_column: Mapping[str, _Verdict],
    columns: Sequence[str],
    cfg: DriftConfig,
    seed: int,
    reference_rows: int,
    current_rows: int,
) -> DriftResult:
    def tested(column: str) -> ColumnDrift:
        v = per_column[column]
        return ColumnDrift(
            column=column,
            kind=plan.kinds[column],
            method=plan.methods[column],
            score=finite_or_none(v.score),
            threshold=v.threshold if np.isfinite(v.threshold) else None,
            drifted=v.drifted,
            n_reference=plan.counts[column][0],
            n_current=plan.counts[column][1],
            p_value=v.p_value,
            level=v.level,
            null_draws=v.draws,
            window_bucket=v.bucket,
        )

    results: list[ColumnDrift] = []
    for column in dict.fromkeys(columns):
        results.append(plan.untestable[column] if column in plan.untestable else tested(column))
    judged = [c for c in results if c.score is not None or c.drifted]
    n_drifted = sum(c.drifted for c in judged)
    share = n_drifted / len(judged) if judged else 0.0
    calibrated = cfg.threshold_mode == "calibrated"
    # calibrated: any column Holm rejects (the share of one column); fixed: Evidently's share rule
    share_threshold = (1.0 / len(judged) if judged else 1.0) if calibrated else cfg.drift_share
    return DriftResult(
        columns=results,
        n_columns=len(judged),
        n_drifted=n_drifted,
        drift_share=share,
        drift_share_threshold=share_threshold,
        drift_detected=bool(judged) and (n_drifted > 0 if calibrated else share >= cfg.drift_share),
        prediction=tested(plan.prediction) if plan.prediction else None,
        reference_rows=reference_rows,
        current_rows=current_rows,
        reference_sample_rows=len(plan.reference),
        current_sample_rows=len(plan.current),
        sample_size=cfg.sample_size,
        stratified_by=cfg.stratify_by,
        seed=seed,
        engine=evidently_compat.engine_version(),
        threshold_mode=cfg.threshold_mode,
        alpha=cfg.alpha if calibrated else None,
    )


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    prediction_column: str | None,
    cfg: DriftConfig,
    seed: int,
    *,
    report: bool,
    nulls: NullCache | None = None,
    kinds: Mapping[str, ColumnKind] | None = None,
    reference_cache: ReferenceCache | None = None,
) -> DriftCheck:
    """Drift of ``current`` against ``reference``, and Evidently's HTML report when asked for.

    ``cfg.threshold_mode`` ``calibrated`` (the default): each column's score (Evidently's stat
    test, computed by :mod:`refit.drift.null`) gets a p-value from the null distribution of that
    score for a window of its size drawn from the reference; Holm across the features at
    ``cfg.alpha`` decides. ``fixed``: Evidently's stat tests at the configured thresholds and
    the drift-share rule. ``report`` only adds the HTML (:func:`render_report`); the result is
    the same either way.

    Args:
        reference: What the model was trained on (or a sample of it).
        current: The production window.
        columns: Feature columns to test; they decide the dataset verdict.
        prediction_column: Tested too when both frames have it with some values; it does not
            count towards the verdict.
        cfg: Mode, alpha, methods, thresholds, drift share, sample size and stratification.
        seed: Seeds the samples and the null draws: same frames and seed, same result.
        report: Also render Evidently's ``DataDriftPreset`` report of the same samples, with
            the thresholds the verdict used.
        nulls: Where null distributions are kept between checks (the flow: the store, per
            champion); None computes them for this call only.
        kinds: Each column's kind, fixed for a champion (:func:`reference_kinds`, stored at
            promotion); None decides them from this reference sample.
        reference_cache: Keeps the reference side (sample, cleaned columns, null digests) for the
            next check against the same frame; the result is the same with or without it.

    Raises:
        DataError: empty frames, missing or date-time columns.
        ConfigError: a method Evidently does not know for the column's type, or one
            calibration cannot score.
    """
    plan = _plan(reference, current, columns, prediction_column, cfg, seed, kinds, reference_cache)
    if not (plan.features or plan.prediction):
        per_column: dict[str, _Verdict] = {}
    elif cfg.threshold_mode == "calibrated":
        per_column = _calibrated(plan, cfg, seed, nulls if nulls is not None else MemoryNullCache())
    else:
        evidently_cols = _by_evidently(plan)
        found = (
            evidently_compat.run_stattests(
                plan.reference[evidently_cols],
                plan.current[evidently_cols],
                plan.kinds,
                plan.methods,
                plan.thresholds,
            )
            if evidently_cols
            else {}
        )
        per_column = _fixed(plan, found)
    result = _assemble(plan, per_column, columns, cfg, seed, len(reference), len(current))
    check = DriftCheck(result=result, html=None, plan=plan)
    if report:
        check = DriftCheck(result=result, html=render_report(check), plan=plan)
    return check


def render_report(check: DriftCheck, header: str = "") -> str:
    """Evidently's ``DataDriftPreset`` report of the check's own samples, each column at the
    threshold the verdict used (calibrated or fixed), with ``header`` (HTML) above it.

    In calibrated mode the preset's dataset verdict is "any column drifted" (its share set to
    one column's), so it agrees with refit's unless Holm's step-down stopped before a column
    whose score crossed its threshold (that column is then not drifted in refit's result)."""
    plan = check.plan
    if plan is None:
        raise ValueError("this drift check kept no samples to render a report from")
    evidently_cols = _by_evidently(plan)
    if not evidently_cols:
        return _with_header("<html><body>No testable columns.</body></html>", header)
    by_name = {c.column: c for c in check.result.columns}
    if check.result.prediction is not None:
        by_name[check.result.prediction.column] = check.result.prediction
    thresholds = {}
    for column in evidently_cols:
        t = by_name[column].threshold
        thresholds[column] = float(t) if t is not None else float(np.finfo(np.float64).max)
    features = [c for c in plan.features if c in evidently_cols]
    share = check.result.drift_share_threshold
    if check.result.threshold_mode == "calibrated" and features:
        share = np.nextafter(1.0 / len(features), 0.0)  # any drifted column, as refit decides
    _, html = evidently_compat.render_drift_report(
        plan.reference[evidently_cols],
        plan.current[evidently_cols],
        plan.kinds,
        plan.methods,
        thresholds,
        features,
        plan.prediction if plan.prediction in evidently_cols else None,
        float(share),
    )
    return _with_header(html, header)


def _with_header(html: str, header: str) -> str:
    if not header:
        return html
    at = html.lower().find("<body")
    if at < 0:
        return header + html
    close = html.index(">", at) + 1
    return html[:close] + header + html[close:]
