"""refit's drift check as the drift-check flow runs it, against Evidently's ``DataDriftPreset`` on the full window.

Same frames for both: the reference is what a registered version stores (a 50,000-row sample of
the training rows) and the current window is a million production requests, shifted
(covariate drift on every row). Same methods and thresholds per column (the config's:
Wasserstein for numbers, Jensen-Shannon for categories, 0.1 each) and the same drift share.

refit's side is exactly the call the flow's compute step makes
(``refit.monitoring.compute_drift_and_decay``): ``refit.drift.check_drift`` on the features and
the ``prediction`` column (captured requests carry the champion's score; the flow scores the
reference with the champion, here both get the true churn probability), the config's drift
settings and training seed, and ``report=True``: it samples both frames to
``drift.sample_size`` rows, runs ``DataDriftPreset`` on the samples and renders the HTML report.
The same call with ``report=False`` (the stat tests called directly, no plots, the same result)
is timed beside it. The baseline hands the full frames (features only) to ``DataDriftPreset``,
as one would without refit, and reads the verdict from its snapshot, without rendering a report.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import pandas as pd

REFERENCE_ROWS = 50_000
REPEATS = 3


def _kind(values: pd.Series) -> str:
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return "numerical" if numeric else "categorical"


def evidently_full(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], cfg: Any) -> dict[str, Any]:
    """DataDriftPreset on the whole frames; per column (score, drifted) and the dataset verdict."""
    import numpy as np
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from refit.compat.evidently import default_threshold

    kinds = {c: _kind(reference[c]) for c in columns}
    methods = {c: cfg.num_method if kinds[c] == "numerical" else cfg.cat_method for c in columns}
    thresholds = {}
    for c in columns:
        given = cfg.num_threshold if kinds[c] == "numerical" else cfg.cat_threshold
        thresholds[c] = given if given is not None else default_threshold(methods[c], kinds[c])

    def plain(df: pd.DataFrame) -> pd.DataFrame:  # float64 numbers, object categories (what Evidently takes)
        return pd.DataFrame(
            {
                c: df[c].astype("float64").replace([np.inf, -np.inf], np.nan)
                if kinds[c] == "numerical"
                else df[c].astype(object)
                for c in columns
            }
        )

    definition = DataDefinition(
        numerical_columns=[c for c in columns if kinds[c] == "numerical"],
        categorical_columns=[c for c in columns if kinds[c] == "categorical"],
    )
    preset = DataDriftPreset(
        columns=columns, drift_share=cfg.drift_share, per_column_method=methods, per_column_threshold=thresholds
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        snapshot = Report([preset], include_tests=True).run(
            Dataset.from_pandas(plain(current), data_definition=definition),
            Dataset.from_pandas(plain(reference), data_definition=definition),
        )
    data = snapshot.dict()
    failed = {t["metric_config"]["metric_id"]: t["status"] == "FAIL" for t in data["tests"] if t.get("id") == "drift"}
    per_column, share = {}, None
    for metric in data["metrics"]:
        kind = metric["config"]["type"]
        if kind == "evidently:metric_v2:ValueDrift":
            per_column[metric["config"]["column"]] = (float(metric["value"]), failed[metric["id"]])
        elif kind == "evidently:metric_v2:DriftedColumnsCount":
            share = float(metric["value"]["share"])
    if share is None:
        share = sum(d for _, d in per_column.values()) / len(per_column)
    return {"per_column": per_column, "drift_share": share, "drift_detected": share >= cfg.drift_share}


def run(rows: int = 1_000_000, config_path: str = "benchmarks/bench.yaml", repeats: int = REPEATS) -> dict[str, Any]:
    from benchmarks.common import RssSampler
    from benchmarks.retrain import production_window
    from refit.config import load_config
    from refit.datasets import churn_probability, generate_base
    from refit.drift import check_drift
    from refit.monitoring import PREDICTION_COLUMN

    config = load_config(config_path)
    cfg, columns = config.drift, config.feature_columns
    reference = generate_base(rows, seed=0).sample(n=REFERENCE_ROWS, random_state=config.training.seed)
    current = production_window(rows).copy()
    reference[PREDICTION_COLUMN] = churn_probability(reference)
    current[PREDICTION_COLUMN] = churn_probability(current)

    def flow_call(ref: pd.DataFrame, cur: pd.DataFrame, report: bool) -> Any:
        """The call of ``refit.monitoring.compute_drift_and_decay``, argument for argument."""
        return check_drift(ref, cur, columns, PREDICTION_COLUMN, cfg, seed=config.training.seed, report=report)

    flow_call(reference.head(2000), current.head(2000), report=True)  # imports (Evidently, plotly), warm-up

    times, fast_times = [], []
    with RssSampler() as rss:
        for i in range(repeats):
            with rss.stage(f"refit_{i}") as rec:
                check = flow_call(reference, current, report=True)
            times.append(rec)
        for i in range(repeats):
            with rss.stage(f"refit_no_report_{i}") as rec:
                fast = flow_call(reference, current, report=False)
            fast_times.append(rec)
        start = time.perf_counter()
        with rss.stage("evidently_full") as ev_rec:
            full = evidently_full(reference, current, columns, cfg)
        evidently_s = time.perf_counter() - start
    result = check.result
    refit_s = min(t["s"] for t in times)
    agree_cols = sum(full["per_column"][c.column][1] == c.drifted for c in result.columns)
    return {
        "reference_rows": len(reference),
        "current_rows": len(current),
        "sample_size": cfg.sample_size,
        "methods": {"numerical": cfg.num_method, "categorical": cfg.cat_method},
        "refit_call": "refit.drift.check_drift(..., report=True), as the drift-check flow calls it",
        "refit_s": refit_s,
        "refit_runs_s": [t["s"] for t in times],
        "refit_peak_rss_mb": max(t["peak_rss_mb"] for t in times),
        "refit_report_mb": round(len(check.html or "") / 1e6, 1),
        "refit_no_report_s": min(t["s"] for t in fast_times),
        "refit_no_report_runs_s": [t["s"] for t in fast_times],
        "refit_no_report_peak_rss_mb": max(t["peak_rss_mb"] for t in fast_times),
        "no_report_result_equal": fast.result == result,
        "evidently_s": round(evidently_s, 2),
        "evidently_peak_rss_mb": ev_rec["peak_rss_mb"],
        "evidently_rss_start_mb": ev_rec["rss_start_mb"],
        "refit": {
            "drift_detected": result.drift_detected,
            "drift_share": result.drift_share,
            "drifted": result.drifted_columns,
            "prediction_drifted": result.prediction_drifted,
        },
        "evidently": {
            "drift_detected": full["drift_detected"],
            "drift_share": full["drift_share"],
            "drifted": [c for c, (_, d) in full["per_column"].items() if d],
        },
        "columns_agree": f"{agree_cols}/{len(result.columns)}",
        "verdict_agrees": result.drift_detected == full["drift_detected"],
    }
