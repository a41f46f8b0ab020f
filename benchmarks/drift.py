"""The drift-check flow's drift path, timed, against Evidently's ``DataDriftPreset`` on the full
window; and the calibrated check's false alarms and power next to Evidently's fixed thresholds.

Same frames for both: the reference is what a registered version stores (a 50,000-row sample of
the training rows) and the current window is production requests, shifted (covariate drift on
every row). :func:`time_flow_path` runs the flow's own steps (``compute_drift_and_decay``, then
``record_drift_check`` with the HTML report) on a store, cold (the champion's first check: the
nulls are drawn and stored) and warm (later checks read them). :func:`run` adds the baseline
(the full frames, features only, handed to ``DataDriftPreset`` with the same kinds, methods and
thresholds, its verdict read from the snapshot without rendering) and checks that refit's
``threshold_mode: fixed`` gives the same column verdicts. :func:`rates` measures how often
in-distribution windows alarm and how often covariate drift is caught, per window size."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

REFERENCE_ROWS = 50_000
REPEATS = 3


def _kind(values: pd.Series, column: str, cfg: Any) -> str:
    from refit.drift import column_kind

    return column_kind(values.sample(n=min(len(values), cfg.sample_size), random_state=0), column, cfg)


def evidently_full(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], cfg: Any) -> dict[str, Any]:
    """DataDriftPreset on the whole frames; per column (score, drifted) and the dataset verdict,
    with refit's column kinds (whole numbers with few values are categories)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from refit.compat.evidently import default_threshold

    kinds = {c: _kind(reference[c], c, cfg) for c in columns}
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


def _flow_inputs(rows: int, config: Any, reference: pd.DataFrame, root: str) -> tuple[Any, Any, Any, Any]:
    """A store, the champion's reference and a captured window, as the flow's steps receive them."""
    from datetime import UTC, datetime, timedelta

    from benchmarks.retrain import production_window
    from refit.capture import CaptureWindow
    from refit.io import open_store
    from refit.monitoring import Reference

    store = open_store(root)
    current = production_window(rows).copy()
    end = datetime(2026, 11, 1, tzinfo=UTC)
    window = CaptureWindow(
        start=end - timedelta(hours=24),
        end=end,
        frame=current,
        origins=pd.Series(["bench"] * len(current)),
        labels=pd.DataFrame({"request_id": pd.Series([], dtype=object), "churned": pd.Series([], dtype=float)}),
        request_id_column="request_id",
        target=config.dataset.target,
    )
    champion = Reference(model=config.dataset.name, version=1, frame=reference, registered_metrics={})
    return store, champion, current, window


def time_flow_path(rows: int, config_path: str = "benchmarks/bench.yaml") -> dict[str, Any]:
    """The drift-check flow's own steps on ``rows`` captured requests: ``compute_drift_and_decay``
    (sample, calibrated tests against nulls cached in the store) then ``record_drift_check`` with
    the HTML report (render, store, prune, history). Calibrate: what the retrain's calibrate-drift
    step does at promotion (kinds, the nulls of a full window); cold: the champion's first check
    after it (nothing left to draw); warm: every later check of that champion. The report is timed
    after Evidently's import (``evidently_import_s``, paid once by a process that renders one; the
    calibrated check itself never imports it), as the preset it is compared with is."""
    import tempfile

    from benchmarks.common import RssSampler
    from refit.compat import evidently as evidently_compat
    from refit.config_loader import load_config
    from refit.datasets import generate_base
    from refit.drift import StoreNullCache, calibrate
    from refit.monitoring import column_kinds, compute_drift_and_decay, record_drift_check

    config = load_config(config_path)
    reference = generate_base(REFERENCE_ROWS * 2, seed=0).sample(n=REFERENCE_ROWS, random_state=config.training.seed)
    out: dict[str, Any] = {"rows": rows, "reference_rows": REFERENCE_ROWS, "sample_size": config.drift.sample_size}
    with tempfile.TemporaryDirectory(prefix="refit-bench-drift-") as root, RssSampler() as rss:
        store, champion, current, window = _flow_inputs(rows, config, reference, root)
        with rss.stage("calibrate") as calibration:  # what calibrate_version does at promotion
            kinds = column_kinds(store, config, champion.model, champion.version, champion.frame)
            nulls = StoreNullCache(store, champion.model, champion.version)
            cfg = config.drift
            calibrate(
                champion.frame, config.feature_columns, cfg, config.training.seed, nulls, [cfg.sample_size], kinds
            )
        with rss.stage("cold") as cold:
            report = compute_drift_and_decay(store, config, champion, current, window)
        runs = []
        for i in range(REPEATS):
            with rss.stage(f"warm_{i}") as warm:
                report = compute_drift_and_decay(store, config, champion, current, window)
            runs.append(warm)
        with rss.stage("evidently_import") as imported:  # once per process, whatever the report asks of it
            evidently_compat.internals_available()
        with rss.stage("report") as rec:
            recorded = record_drift_check(store, config, report, None, html=True)
        html_key = recorded.report_uri.split(store.uri.rstrip("/") + "/", 1)[-1]
        out.update(
            {
                "call": "refit.monitoring.compute_drift_and_decay + record_drift_check(html=True), the flow's steps",
                "calibrate_s": calibration["s"],
                "cold_s": cold["s"],
                "warm_s": min(r["s"] for r in runs),
                "warm_runs_s": [r["s"] for r in runs],
                "evidently_import_s": imported["s"],
                "report_s": rec["s"],
                "with_report_s": round(min(r["s"] for r in runs) + rec["s"], 3),
                "with_report_and_import_s": round(min(r["s"] for r in runs) + rec["s"] + imported["s"], 3),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in [cold, *runs, rec]),
                "html_bytes": store.size(html_key),
                "json_bytes": store.size(recorded.history_key),
                "drift_detected": report.result.drift_detected,
                "drifted": report.result.drifted_columns,
            }
        )
    return out


def run(rows: int = 1_000_000, config_path: str = "benchmarks/bench.yaml", repeats: int = REPEATS) -> dict[str, Any]:
    """The flow's drift path at ``rows`` against Evidently's preset on the full window, and the
    fixed-threshold verdicts against the preset's (same methods and thresholds)."""
    from benchmarks.common import RssSampler
    from benchmarks.retrain import production_window
    from refit.config_loader import load_config
    from refit.datasets import generate_base
    from refit.drift import check_drift

    config = load_config(config_path)
    cfg, columns = config.drift, config.feature_columns
    fixed = cfg.model_copy(update={"threshold_mode": "fixed"})
    flow = time_flow_path(rows, config_path)
    reference = generate_base(rows, seed=0).sample(n=REFERENCE_ROWS, random_state=config.training.seed)
    current = production_window(rows).copy()
    check_drift(reference.head(2000), current.head(2000), columns, None, fixed, 0, report=False)  # imports
    with RssSampler() as rss:
        with rss.stage("fixed") as fixed_rec:
            result = check_drift(
                reference, current, columns, None, fixed, seed=config.training.seed, report=False
            ).result
        start = time.perf_counter()
        with rss.stage("evidently_full") as ev_rec:
            full = evidently_full(reference, current, columns, fixed)
        evidently_s = time.perf_counter() - start
    agree_cols = sum(full["per_column"][c.column][1] == c.drifted for c in result.columns)
    return {
        "reference_rows": len(reference),
        "current_rows": len(current),
        "sample_size": cfg.sample_size,
        "methods": {"numerical": cfg.num_method, "categorical": cfg.cat_method},
        "flow": flow,
        "refit_call": flow["call"],
        "refit_s": flow["with_report_s"],
        "refit_peak_rss_mb": flow["peak_rss_mb"],
        "refit_no_report_s": flow["warm_s"],
        "refit_cold_s": flow["cold_s"],
        "fixed_s": fixed_rec["s"],
        "evidently_s": round(evidently_s, 2),
        "evidently_peak_rss_mb": ev_rec["peak_rss_mb"],
        "evidently_rss_start_mb": ev_rec["rss_start_mb"],
        "refit": {
            "drift_detected": result.drift_detected,
            "drift_share": result.drift_share,
            "drifted": result.drifted_columns,
        },
        "evidently": {
            "drift_detected": full["drift_detected"],
            "drift_share": full["drift_share"],
            "drifted": [c for c, (_, d) in full["per_column"].items() if d],
        },
        "columns_agree": f"{agree_cols}/{len(result.columns)}",
        "verdict_agrees": result.drift_detected == full["drift_detected"] and agree_cols == len(result.columns),
    }


def rates(
    sizes: tuple[int, ...] = (100, 1000, 10_000, 100_000),
    windows: int = 200,
    power_windows: int = 50,
    strengths: tuple[float, ...] = (0.25, 0.5, 1.0),
    config_path: str = "benchmarks/bench.yaml",
    verify_windows: int = 10,
) -> dict[str, Any]:
    """False alarms and power of the calibrated check and of Evidently's default thresholds on the
    same windows, per window size (:func:`rates_at`). The windows share nothing but the reference,
    so they run side by side: a process per size, and the larger sizes' windows split across
    several (2 at 10,000 rows, 4 at 100,000), each process judging every ``chunks``-th window."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from benchmarks.common import log
    from refit.config_loader import load_config

    config = load_config(config_path)
    out: dict[str, Any] = {"reference_rows": REFERENCE_ROWS, "alpha": config.drift.alpha, "sizes": {}}
    split = {n: 1 if n <= 1000 else 2 if n <= 10_000 else 4 for n in sizes}
    jobs = [(n, k) for n in sizes for k in range(split[n])]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=spawn) as pool:
        futures = {
            (n, k): pool.submit(
                rates_at,
                n,
                windows,
                power_windows,
                tuple(strengths),
                config_path,
                -(-verify_windows // split[n]),
                k,
                split[n],
            )
            for n, k in jobs
        }
        for n in sizes:
            parts = [futures[(n, k)].result() for k in range(split[n])]
            out["sizes"][str(n)] = _rates_row(parts, strengths)
            log(f"drift_rates: {n:,} rows in {out['sizes'][str(n)]['seconds']} s: {out['sizes'][str(n)]['generator']}")
    return out


def _rates_row(parts: list[dict[str, Any]], strengths: tuple[float, ...]) -> dict[str, Any]:
    """One size's rates from its processes' counts."""
    totals: dict[str, list[int]] = {}
    for part in parts:
        for name, tally in part["counts"].items():
            totals[name] = [a + b for a, b in zip(totals.get(name, [0, 0, 0]), tally, strict=True)]

    def rate(name: str) -> dict[str, Any]:
        judged, cal, old = totals[name]
        return {"windows": judged, "calibrated": cal / judged, "evidently_fixed": old / judged}

    row: dict[str, Any] = {"generator": rate("generator")}
    if "self_split" in totals:
        row["self_split"] = rate("self_split")
    row["power"] = {str(strength): rate(f"power {strength}") for strength in strengths}
    agree = sum(p["verified"]["agree"] for p in parts)
    row["fixed_verified"] = f"{agree}/{sum(p['verified']['windows'] for p in parts)}"
    row["processes"] = len(parts)
    row["seconds"] = max(p["seconds"] for p in parts)
    return row


def rates_at(
    n: int,
    windows: int = 200,
    power_windows: int = 50,
    strengths: tuple[float, ...] = (0.25, 0.5, 1.0),
    config_path: str = "benchmarks/bench.yaml",
    verify_windows: int = 10,
    chunk: int = 0,
    chunks: int = 1,
) -> dict[str, Any]:
    """Alarm counts at windows of ``n`` rows, over the windows ``chunk, chunk + chunks, ...`` (the
    windows of one size split across processes; :func:`rates` adds them up). In-distribution windows: the churn
    generator without drift (each window its own seed) and, up to 10,000 rows, self-splits (rows
    of the reference's population that are not in the reference). Power: the generator's
    covariate drift at each strength.

    Each window is checked once, as production checks it (the champion's column kinds, nulls kept
    between checks), the reference side done once (:class:`refit.drift.ReferenceCache`).
    Evidently's verdict comes from the same per-column scores (the calibrated check scores with
    Evidently's stat tests, :mod:`refit.drift.null`) at Evidently's default thresholds and the
    drift-share rule; on the first ``verify_windows`` windows the fixed-threshold check
    (Evidently's own stat tests) runs too, and ``verified`` counts the
    windows whose verdict it confirms."""
    from refit.compat.evidently import default_threshold
    from refit.config_loader import load_config
    from refit.datasets import generate_base, generate_production
    from refit.drift import DriftResult, MemoryNullCache, ReferenceCache, check_drift, reference_kinds
    from refit.drift import null as drift_null

    started = time.perf_counter()
    config = load_config(config_path)
    cfg, columns = config.drift, config.feature_columns
    fixed = cfg.model_copy(update={"threshold_mode": "fixed"})
    population = generate_base(REFERENCE_ROWS + 10_000 * 20, seed=0)
    reference, held_out = population.iloc[:REFERENCE_ROWS], population.iloc[REFERENCE_ROWS:]
    kinds = reference_kinds(reference, columns, cfg)
    nulls = MemoryNullCache()
    refs = ReferenceCache()  # the reference side, done once for all the windows
    seed = config.training.seed
    thresholds: dict[tuple[str, str], float] = {}
    verified = {"windows": 0, "agree": 0}

    def evidently_verdict(result: DriftResult) -> bool:
        """Evidently's rule on the result's scores: each column at its method's default threshold,
        the window when the share of drifted columns reaches ``drift_share``."""
        judged = [c for c in result.columns if c.score is not None or c.drifted]
        drifted = 0
        for c in judged:
            if c.score is None:
                drifted += c.drifted  # no values in the window: drifted in either mode
                continue
            if c.method == drift_null.NEW_VALUE:
                limit = fixed.new_value_threshold
            else:
                limit = thresholds.setdefault((c.method, c.kind), default_threshold(c.method, c.kind))
            drifted += c.score < limit if c.method in drift_null.P_VALUE_METHODS else c.score >= limit
        return bool(judged) and drifted / len(judged) >= fixed.drift_share

    def judge(window: pd.DataFrame) -> tuple[bool, bool]:
        cal = check_drift(
            reference,
            window,
            columns,
            None,
            cfg,
            seed=seed,
            report=False,
            nulls=nulls,
            kinds=kinds,
            reference_cache=refs,
        ).result
        old = evidently_verdict(cal)
        if verified["windows"] < verify_windows:
            own = check_drift(
                reference, window, columns, None, fixed, seed=seed, report=False, kinds=kinds, reference_cache=refs
            ).result
            verified["windows"] += 1
            verified["agree"] += own.drift_detected == old
        return cal.drift_detected, old

    mine = range(chunk, windows, chunks)  # this process's share of the window indices
    counts: dict[str, list[int]] = {}  # per window set: [windows, calibrated alarms, Evidently alarms]

    def count(name: str, window: pd.DataFrame) -> None:
        c, o = judge(window)
        tally = counts.setdefault(name, [0, 0, 0])
        tally[0], tally[1], tally[2] = tally[0] + 1, tally[1] + c, tally[2] + o

    for i in mine:
        count("generator", generate_production(1, n, seed=10_000 + i, drift="none")[0].features)
    if n * windows <= len(held_out) * 10:
        for i in mine:
            picks = np.random.default_rng([n, i]).choice(len(held_out), size=n, replace=False)
            count("self_split", held_out.iloc[np.sort(picks)])
    for strength in strengths:
        for i in range(chunk, power_windows, chunks):
            drifted = generate_production(1, n, seed=20_000 + i, drift="covariate", drift_strength=strength)[0]
            count(f"power {strength}", drifted.features)
    return {"counts": counts, "verified": verified, "seconds": round(time.perf_counter() - started, 1)}


def decay_rates(
    segment_rows: tuple[int, ...] = (500, 1000),
    windows: int = 50,
    strength: float = 1.0,
    segment: str = "south",
    config_path: str = "benchmarks/bench.yaml",
    registered_se: bool = True,
) -> dict[str, Any]:
    """Concept drift in one segment (``region=south``: the generator's churn rises there, the
    features do not move), caught by decay in the first window with at least ``segment_rows``
    labelled rows in that segment; and the same windows without drift, for decay's false alarms.

    The champion is a small HistGradientBoosting model trained on the generator's base data; its
    registered metrics (overall and per gate segment) come from a held-out part, as registration
    stores them with their standard errors (``refit.pipeline.registered_metrics``); each window
    is judged by ``refit.monitoring.judge_decay``, the flow's decay step. ``registered_se=False``
    judges against the registered values as exact (versions registered before refit stored the
    errors)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from refit.config_loader import load_config
    from refit.datasets import FEATURE_COLUMNS, generate_base, generate_production
    from refit.decay import se_key
    from refit.monitoring import judge_decay
    from refit.pipeline import registered_metrics

    config = load_config(config_path)
    ds = config.dataset
    columns = list(FEATURE_COLUMNS)

    def design(frame: pd.DataFrame) -> pd.DataFrame:
        x = frame[columns].copy()
        for c in x.columns:
            if x[c].dtype == object or x[c].dtype == bool:
                x[c] = x[c].astype("category")
        return x

    base = generate_base(60_000, seed=0)
    train, holdout = base.iloc[:40_000], base.iloc[40_000:].reset_index(drop=True)
    model = HistGradientBoostingClassifier(max_iter=60, categorical_features="from_dtype", random_state=0)
    model.fit(design(train), train[ds.target].astype(int))
    y = holdout[ds.target].astype(int).to_numpy()
    scores = model.predict_proba(design(holdout))[:, 1]
    metric = config.gate.primary_metric
    recorded = registered_metrics(holdout, y, scores, config).items()
    registered = {k: float(v[metric]) for k, v in recorded if v.get(metric) is not None}
    errors = {k: float(v[se_key(metric)]) for k, v in recorded if registered_se and v.get(se_key(metric)) is not None}
    # the most any test at the 5% level could catch on these windows: one-sided 5% (not 2.5%),
    # no Holm, the registered value taken as exact; the same bootstrap (a ceiling, not a setting)
    lenient = config.model_copy(
        update={"drift": config.drift.model_copy(update={"decay_confidence": 0.90, "decay_holm": False})}
    )
    held = {k: int(v["n"]) for k, v in recorded if k != "overall"}
    share = float((base["region"] == segment).mean())
    out: dict[str, Any] = {"segment": f"region={segment}", "strength": strength, "metric": metric, "sizes": {}}
    out["registered_se"] = {k: round(v, 4) for k, v in errors.items() if k in ("overall", f"region={segment}")}
    for rows in segment_rows:
        n = int(math.ceil(rows / share * 1.1))
        row: dict[str, Any] = {"window_rows": n}
        for kind in ("concept", "none"):
            caught = fired = ceiling = above = 0
            in_segment = []
            for i in range(windows):
                batch = generate_production(
                    1, n, seed=30_000 + i, drift=kind, segment={"region": segment}, drift_strength=strength
                )[0]
                frame = batch.features.merge(batch.labels[["request_id", ds.target]], on="request_id")
                in_segment.append(int((frame["region"] == segment).sum()))
                score = model.predict_proba(design(frame))[:, 1]
                result = judge_decay(config, registered, frame, score, registered_se=errors, registered_n=held)
                caught += f"region={segment}" in result.decayed_segments
                fired += bool(result.decayed)
                loose = judge_decay(lenient, registered, frame, score, registered_n=held)
                ceiling += f"region={segment}" in loose.decayed_segments
                mine = next(s for s in loose.segments if s.segment == f"region={segment}")
                above += mine.drop is not None and mine.drop > mine.tolerance  # type: ignore[operator]
            row[kind] = {
                "windows": windows,
                "segment_rows_min": min(in_segment),
                "caught_in_segment": caught / windows,
                "any_decay": fired / windows,
                "ceiling_5pct_one_sided_exact": ceiling / windows,
                "point_drop_above_tolerance": above / windows,
            }
        out["sizes"][str(rows)] = row
    return out


def decay_registered_rates(
    holdout_rows: int = 123, window_rows: tuple[int, ...] = (300, 1000), pairs: int = 200
) -> dict[str, Any]:
    """A segment registered on few holdout rows (30% positives, true ROC AUC 0.638) and judged
    on windows where it is 0.614 (a true drop of 0.024, under the 0.05 tolerance), or where it
    collapsed to 0.5 (a drop of 0.138): how often decay fires with the registered value taken as
    exact (versions without a stored SE) and with its bootstrap standard error
    (``refit.decay.registered_errors``, as registration stores it). Each pair draws a new
    holdout and a new window; the registered value is as lucky or unlucky as its draw."""
    from refit.config import DriftConfig
    from refit.decay import compute_decay, registered_errors

    def rows(n: int, strength: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        y = (rng.random(n) < 0.3).astype(float)
        return y, 1 / (1 + np.exp(-(rng.normal(0, 1, n) + strength * y)))

    cfg = DriftConfig()
    out: dict[str, Any] = {"holdout_rows": holdout_rows, "pairs": pairs, "sizes": {}}
    registered = [
        registered_errors("binary", "roc_auc", *rows(holdout_rows, 0.5, i), None, 1000, 0)["overall"]
        for i in range(pairs)
    ]
    for n in window_rows:
        fired = {(how, kind): 0 for how in ("exact", "with_se") for kind in ("small_drop", "collapse")}
        for i, reg in enumerate(registered):
            for kind, strength in (("small_drop", 0.41), ("collapse", 0.0)):
                window = rows(n, strength, 100_000 + 1_000 * n + i)
                for how, se in (("exact", None), ("with_se", {"overall": reg["roc_auc_se"]})):
                    result = compute_decay(
                        *window, {"overall": reg["roc_auc"]}, cfg, "roc_auc", seed=i, registered_se=se
                    )
                    fired[(how, kind)] += result.decayed
        out["sizes"][str(n)] = {f"{how}_{kind}": count / pairs for (how, kind), count in fired.items()}
    return out
