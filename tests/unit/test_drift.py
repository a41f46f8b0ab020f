"""Drift checks through Evidently, sampling, decay, and the drift history."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from refit.config import DatasetConfig, DriftConfig, GateConfig, PipelineConfig, SegmentSpec
from refit.datasets import FEATURE_COLUMNS, churn_probability, generate_base, generate_production
from refit.decay import compute_decay
from refit.drift import (
    ColumnDrift,
    DriftResult,
    append_drift_history,
    check_drift,
    plot_drift_history,
    read_drift_history,
    stratified_sample_positions,
)
from refit.errors import ConfigError, DataError
from refit.evaluation import evaluate_gate
from refit.io.local import LocalStore
from refit.monitoring import judge_decay, load_reference
from refit.registry import Registry


def synthetic(n: int, seed: int, shift: float = 0.0, cat_shift: float = 0.0) -> pd.DataFrame:
    """Two numeric and two categorical columns, and a prediction; ``shift`` moves ``x``."""
    rng = np.random.default_rng(seed)
    colour_p = np.array([0.5, 0.3, 0.2]) * (1 - cat_shift) + np.array([0.0, 0.0, 1.0]) * cat_shift
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "y": rng.exponential(2.0, n),
            "colour": rng.choice(["red", "green", "blue"], n, p=colour_p),
            "flag": rng.random(n) < 0.3,
            "score": rng.beta(2, 5 + 3 * shift, n),
            "at": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.random(n) * 86_400, unit="s"),
        }
    )


FEATURES = ["x", "y", "colour", "flag"]
#: Evidently's semantics: the configured thresholds and a share of drifted columns.
FIXED_HALF = DriftConfig(drift_share=0.5, threshold_mode="fixed")


@pytest.fixture(scope="module")
def shifted_check():  # type: ignore[no-untyped-def]
    ref = synthetic(4000, seed=1)
    cur = synthetic(3000, seed=2, shift=0.8, cat_shift=0.6)
    return check_drift(ref, cur, FEATURES, "score", FIXED_HALF, seed=7, report=True)


# ------------------------------------------------------------------------------ sampling


def test_sample_is_exact_size_proportional_per_stratum_and_seeded() -> None:
    strata = np.repeat([0, 1, 2, 3], [50_000, 30_000, 15_000, 5_000])
    positions = stratified_sample_positions(len(strata), 2001, np.random.default_rng(0), strata)
    assert len(positions) == 2001
    assert len(np.unique(positions)) == 2001
    assert (np.diff(positions) > 0).all()
    counts = np.bincount(strata[positions], minlength=4)
    assert np.abs(counts - np.array([1000.5, 600.3, 300.15, 100.05])).max() <= 1
    again = stratified_sample_positions(len(strata), 2001, np.random.default_rng(0), strata)
    other = stratified_sample_positions(len(strata), 2001, np.random.default_rng(1), strata)
    assert (positions == again).all()
    assert not (positions == other).all()


def test_sample_takes_every_row_when_the_frame_is_small() -> None:
    assert stratified_sample_positions(10, 100, np.random.default_rng(0)).tolist() == list(range(10))


def test_sample_inside_a_stratum_is_uniform() -> None:
    positions = stratified_sample_positions(100_000, 10_000, np.random.default_rng(3))
    # Uniform without replacement: each tenth of the rows holds about a tenth of the sample.
    per_decile = np.bincount(positions // 10_000, minlength=10)
    assert per_decile.min() > 900 and per_decile.max() < 1100


def test_time_stratified_sample_keeps_every_hour() -> None:
    ref = synthetic(30_000, seed=1)
    cur = synthetic(30_000, seed=2)
    # Current traffic is lopsided: one hour holds half the rows.
    cur.loc[: len(cur) // 2, "at"] = pd.Timestamp("2026-01-01 05:30", tz="UTC")
    cfg = DriftConfig(sample_size=3000, stratify_by="at")
    from refit.drift.plan import _plan
    from refit.drift.sampling import _rng, _strata_codes

    plan = _plan(ref, cur, ["x"], None, cfg, seed=0)
    assert len(plan.reference) == len(plan.current) == 3000
    positions = stratified_sample_positions(len(cur), 3000, _rng(0, 2), _strata_codes(cur["at"]))
    hours = cur["at"].iloc[positions].dt.floor("h").value_counts()
    full = cur["at"].dt.floor("h").value_counts()
    share_sample = hours / hours.sum()
    share_full = (full / full.sum()).reindex(share_sample.index)
    assert (share_sample - share_full).abs().max() < 0.002


# ------------------------------------------------------------------------------ check_drift


def test_shifted_columns_drift_with_explicit_methods(shifted_check) -> None:  # type: ignore[no-untyped-def]
    result: DriftResult = shifted_check.result
    by_name = {c.column: c for c in result.columns}
    assert [c.column for c in result.columns] == FEATURES
    assert by_name["x"].method == "wasserstein" and by_name["x"].threshold == pytest.approx(0.1)
    assert by_name["colour"].method == "jensenshannon" and by_name["colour"].threshold == pytest.approx(0.1)
    assert by_name["flag"].kind == "categorical" and by_name["y"].kind == "numerical"
    # x moved by 0.8 sd: normed Wasserstein about 0.8; colour moved towards blue.
    assert by_name["x"].score == pytest.approx(0.8, abs=0.08) and by_name["x"].drifted
    assert by_name["colour"].drifted and by_name["colour"].score > 0.2
    assert not by_name["y"].drifted and by_name["y"].score < 0.1
    assert not by_name["flag"].drifted
    assert (result.n_columns, result.n_drifted, result.drift_share) == (4, 2, 0.5)
    assert result.drift_detected  # 0.5 >= drift_share 0.5
    assert result.drifted_columns == ["x", "colour"]
    assert result.prediction is not None and result.prediction.column == "score"
    assert result.prediction.drifted
    assert (result.reference_rows, result.current_rows) == (4000, 3000)
    # Smaller than the sample size: every row is used, and counted per column.
    assert (result.reference_sample_rows, result.current_sample_rows) == (4000, 3000)
    assert by_name["x"].n_reference == 4000 and by_name["x"].n_current == 3000
    assert result.engine.startswith("evidently 0.7")


def test_without_the_report_the_result_is_the_preset_runs(shifted_check) -> None:  # type: ignore[no-untyped-def]
    """report=False calls the stat tests directly; report=True reads them from DataDriftPreset."""
    ref = synthetic(4000, seed=1)
    cur = synthetic(3000, seed=2, shift=0.8, cat_shift=0.6)
    fast = check_drift(ref, cur, FEATURES, "score", FIXED_HALF, seed=7, report=False)
    assert fast.result == shifted_check.result
    assert fast.html is None and shifted_check.html is not None


def test_one_drift_entry_point() -> None:
    """check_drift is the only way to run a drift check; the copies beside it are gone."""
    from refit import drift

    assert not hasattr(drift, "compute_drift") and not hasattr(drift, "render_report_html")


def test_no_testable_column_still_gives_a_report_when_asked() -> None:
    ref, cur = synthetic(300, seed=1), synthetic(300, seed=2)
    ref["y"] = np.nan
    with_report = check_drift(ref, cur, ["y"], None, DriftConfig(), seed=0, report=True)
    without = check_drift(ref, cur, ["y"], None, DriftConfig(), seed=0, report=False)
    assert with_report.result == without.result and with_report.result.n_columns == 0
    assert with_report.html is not None and "No testable columns" in with_report.html and without.html is None


def test_result_is_json_serialisable(shifted_check) -> None:  # type: ignore[no-untyped-def]
    text = shifted_check.result.model_dump_json()
    assert DriftResult.model_validate_json(text) == shifted_check.result
    assert json.loads(text)["columns"][0]["column"] == "x"


def test_html_report_comes_from_the_same_run(shifted_check) -> None:  # type: ignore[no-untyped-def]
    html = shifted_check.html
    assert html is not None
    assert html.lstrip().lower().startswith("<html") or "<!doctype html" in html[:200].lower()
    assert "colour" in html and "Wasserstein" in html
    alone = check_drift(
        synthetic(500, 1), synthetic(500, 2, shift=1.0), ["x"], None, DriftConfig(), 0, report=True
    ).html
    assert alone is not None and "Wasserstein" in alone and "colour" not in alone


def test_overrides_and_empty_columns() -> None:
    ref = synthetic(3000, seed=1)
    cur = synthetic(2000, seed=2, shift=0.3)
    cur["y"] = np.nan  # the feed for y broke
    cur["score"] = np.nan  # nothing was scored
    cfg = DriftConfig(
        sample_size=1500,
        drift_share=0.9,
        threshold_mode="fixed",
        column_methods={"x": "ks", "colour": "psi"},
        column_thresholds={"x": 0.01, "colour": 0.5},
    )
    result = check_drift(ref, cur, FEATURES, "score", cfg, seed=0, report=False).result
    x, y, colour, _ = result.columns
    assert (x.method, x.threshold) == ("ks", 0.01)
    assert x.drifted and x.score is not None and x.score < 0.01  # a p-value
    assert (colour.method, colour.threshold, colour.drifted) == ("psi", 0.5, False)
    assert y.drifted and y.score is None and y.note == "no values in the current sample"
    assert result.prediction is None
    assert (result.n_drifted, result.n_columns) == (2, 4)
    assert not result.drift_detected
    assert (result.reference_sample_rows, result.current_sample_rows) == (1500, 1500)


def test_same_seed_same_result() -> None:
    ref = synthetic(5000, seed=1)
    cur = synthetic(5000, seed=2, shift=0.1)
    cfg = DriftConfig(sample_size=1000)
    first = check_drift(ref, cur, ["x", "colour"], None, cfg, seed=3, report=False).result
    second = check_drift(ref, cur, ["x", "colour"], None, cfg, seed=3, report=False).result
    assert first == second


def test_bad_inputs_fail_clearly() -> None:
    ref = synthetic(200, seed=1)
    with pytest.raises(ConfigError, match="nope"):
        check_drift(ref, ref, ["x"], None, DriftConfig(column_methods={"x": "nope"}), seed=0, report=False)
    with pytest.raises(ConfigError, match="categorical column 'colour'"):
        check_drift(ref, ref, ["colour"], None, DriftConfig(cat_method="wasserstein"), seed=0, report=False)
    with pytest.raises(DataError, match="missing"):
        check_drift(ref, ref, ["x", "nope"], None, DriftConfig(), seed=0, report=False)
    with pytest.raises(DataError, match="empty"):
        check_drift(ref, ref.iloc[:0], ["x"], None, DriftConfig(), seed=0, report=False)
    with pytest.raises(DataError, match="date or time"):
        check_drift(ref, ref, ["at"], None, DriftConfig(), seed=0, report=False)


@pytest.mark.slow  # a fresh Python process
def test_importing_drift_does_not_import_evidently() -> None:
    code = "import sys, refit.drift; assert 'evidently' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------ parity


def _window(drift: str, segment: dict[str, str] | None, rows: int) -> pd.DataFrame:
    batches = generate_production(10, rows // 10, seed=1, drift=drift, segment=segment)  # type: ignore[arg-type]
    frame = pd.concat([b.features for b in batches], ignore_index=True)
    frame["prediction"] = churn_probability(frame)
    return frame


@pytest.mark.slow  # Evidently's full preset on 50,000 rows, three times: seconds each
@pytest.mark.parametrize(
    ("drift", "segment", "expect_dataset", "expect_columns"),
    [
        ("none", None, False, set()),
        ("covariate", {"region": "south"}, False, {"tenure_months", "monthly_charges", "support_tickets"}),
        (
            "covariate",
            None,
            True,
            {"channel", "tenure_months", "monthly_charges", "total_charges", "support_tickets"},
        ),
    ],
)
def test_verdict_on_a_sample_matches_evidently_on_the_full_data(
    drift: str, segment: dict[str, str] | None, expect_dataset: bool, expect_columns: set[str]
) -> None:
    """50,000 rows, a 5,000-row time-stratified sample, against DataDriftPreset on every row."""
    rows = 50_000
    reference = generate_base(rows, seed=0)
    reference["prediction"] = churn_probability(reference)
    current = _window(drift, segment, rows)
    columns = list(FEATURE_COLUMNS)
    # Evidently's semantics (fixed thresholds): a calibrated threshold depends on the sample size
    sampled_cfg = DriftConfig(sample_size=5000, stratify_by="event_time", threshold_mode="fixed")
    sampled = check_drift(reference, current, columns, "prediction", sampled_cfg, seed=0, report=False).result
    full_cfg = DriftConfig(sample_size=10 * rows, threshold_mode="fixed")
    full = check_drift(reference, current, columns, "prediction", full_cfg, seed=0, report=True).result
    # The fast path and the preset agree on the sample too.
    preset = check_drift(reference, current, columns, "prediction", sampled_cfg, seed=0, report=True).result
    assert preset == sampled
    assert full.reference_sample_rows == rows and sampled.reference_sample_rows == 5000
    assert set(full.drifted_columns) == expect_columns
    assert set(sampled.drifted_columns) == expect_columns
    assert sampled.drift_detected == full.drift_detected == expect_dataset
    for s, f in zip(sampled.columns, full.columns, strict=True):
        assert (s.method, s.threshold) == (f.method, f.threshold)
        # Heavy tails (rare large bills) make the normed distance noisier on a sample.
        assert s.score == pytest.approx(f.score, rel=0.2, abs=0.05)
    assert sampled.prediction is not None and full.prediction is not None
    assert sampled.prediction.drifted == full.prediction.drifted == (drift != "none")


# ------------------------------------------------------------------------------ decay


def test_decay_overall_and_per_segment() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    region = np.where(rng.random(n) < 0.5, "north", "south")
    y = (rng.random(n) < 0.3).astype(float)
    # North keeps a good score; in the south the scores became noise.
    good = y * 0.6 + rng.random(n) * 0.6
    score = np.where(region == "north", good, rng.random(n))
    y[:100] = np.nan  # labels not arrived yet
    registered = {"overall": 0.9, "region=north": 0.93, "region=south": 0.9}
    cfg = DriftConfig(decay_tolerance=0.05, decay_min_rows=100)
    result = compute_decay(y, score, registered, cfg, "roc_auc", segments=pd.DataFrame({"region": region}))
    by = {s.segment: s for s in result.segments}
    assert result.metric == "roc_auc" and result.higher_is_better
    assert result.n_labelled == n - 100
    assert not by["region=north"].decayed and by["region=north"].current > 0.9
    assert by["region=south"].decayed and by["region=south"].current == pytest.approx(0.5, abs=0.05)
    assert by["region=south"].drop == pytest.approx(0.9 - by["region=south"].current)
    assert result.overall.decayed  # the overall AUC fell too
    assert result.decayed and "region=south" in result.decayed_segments


def test_decay_needs_enough_labels_and_both_classes() -> None:
    cfg = DriftConfig(decay_min_rows=50)
    few = compute_decay([1, 0, 1], [0.9, 0.1, 0.8], {"overall": 0.99}, cfg, "roc_auc")
    assert not few.decayed and few.overall.note == "fewer than 50 labelled rows"
    one_class = compute_decay([1.0] * 60, [0.5] * 60, {"overall": 0.99}, cfg, "roc_auc")
    assert not one_class.decayed and one_class.overall.note == "one class only"
    unregistered = compute_decay([1, 0] * 30, [0.9, 0.1] * 30, {}, cfg, "roc_auc")
    assert unregistered.overall.current == 1.0 and unregistered.overall.note == "no registered value"


def test_decay_regression_uses_rmse_lower_is_better() -> None:
    cfg = DriftConfig(decay_tolerance=0.5, decay_min_rows=10)
    y = np.arange(100, dtype=float)
    result = compute_decay(y, y + 2.0, {"overall": 1.0}, cfg, metric="rmse")
    assert result.metric == "rmse" and not result.higher_is_better
    assert result.overall.current == pytest.approx(2.0)
    assert result.overall.drop == pytest.approx(1.0) and result.decayed
    ok = compute_decay(y, y + 1.2, {"overall": 1.0}, cfg, metric="rmse")
    assert not ok.decayed


def _gate_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows with a region, a plan and a tenure, labels, and a champion's good scores."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "region": rng.choice(["north", "south"], n),
            "plan": rng.choice(["basic", "pro"], n),
            "tenure_months": rng.integers(0, 48, n),
        }
    )
    frame["churned"] = (rng.random(n) < 0.3).astype(int)
    good = frame["churned"].to_numpy() * 0.5 + rng.random(n) * 0.6
    return frame, good


def _decay_config(**gate: Any) -> PipelineConfig:
    return PipelineConfig(
        dataset=DatasetConfig(
            name="churn",
            sources=["x.parquet"],
            schema="schemas.churn:ChurnTrainingSchema",
            target="churned",
            task="binary",
            id_column="customer_id",
            timestamp_column="event_time",
            segments=[
                SegmentSpec(column="region"),
                SegmentSpec(column="tenure_months", bins=[0, 12, 240], labels=["new", "settled"]),
            ],
            segment_crossings=[["region", "plan"]],
        ),
        gate=GateConfig(**gate),
        drift=DriftConfig(decay_tolerance=0.05, decay_min_rows=100),
    )


def _registered(config: PipelineConfig) -> dict[str, float]:
    """What registration stores for the champion: the gate's metric, overall and on the gate's
    segments (``refit.pipeline.evaluate_candidate`` and ``refit.monitoring.load_reference``)."""
    frame, good = _gate_frame(6000, seed=1)
    ds = config.dataset
    decision = evaluate_gate(ds.task, frame[ds.target], good, None, frame, config.gate, ds)
    registered = {s.scope: s.candidate for s in decision.segments if s.candidate is not None}
    return {"overall": decision.candidate_value, **registered}


@pytest.mark.parametrize(
    ("broken", "key", "intact"),
    [
        # a binned, labelled segment
        (lambda f: f["tenure_months"] < 12, "tenure_months=new", "tenure_months=settled"),
        # a crossing
        (
            lambda f: (f["region"] == "north") & (f["plan"] == "basic"),
            "region×plan=north×basic",
            "region×plan=south×pro",
        ),
    ],
)
def test_decay_fires_on_the_gates_own_segments(broken: Any, key: str, intact: str) -> None:
    config = _decay_config()
    registered = _registered(config)
    assert key in registered
    frame, scores = _gate_frame(6000, seed=2)
    noise = np.random.default_rng(3).random(len(frame))
    scores = np.where(broken(frame), noise, scores)  # the champion's scores became noise there
    result = judge_decay(config, registered, frame, scores)
    by = {s.segment: s for s in result.segments}
    assert set(by) <= set(registered)  # every judged segment is a registered one
    assert by[key].decayed and by[key].registered == registered[key] and key in result.decayed_segments
    assert not by[intact].decayed and by[intact].drop is not None


def test_decay_is_judged_in_the_gates_metric() -> None:
    config = _decay_config(primary_metric="pr_auc")
    registered = _registered(config)
    frame, scores = _gate_frame(6000, seed=2)
    south = (frame["region"] == "south").to_numpy()
    scores = np.where(south, np.random.default_rng(3).random(len(frame)), scores)
    result = judge_decay(config, registered, frame, scores)
    assert result.metric == "pr_auc" and result.higher_is_better
    by = {s.segment: s for s in result.segments}
    assert by["region=south"].decayed and not by["region=north"].decayed
    assert by["region=south"].registered == pytest.approx(registered["region=south"])
    assert "region=south" in result.decayed_segments


def test_the_reference_carries_the_champions_metrics_in_the_gates_metric(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Registration stores segment metrics under ``gate.primary_metric``; the reference that
    decay compares with reads that same metric (not ROC AUC whatever the gate said)."""
    store = LocalStore(tmp_path)
    registry = Registry(store)
    version = registry.register(
        "churn",
        artifact_uri="/models/churn/1",
        metrics={"roc_auc": 0.8, "pr_auc": 0.6},
        segment_metrics={"region=north": {"n": 300, "pr_auc": 0.61}, "tenure_months=new": {"n": 300, "pr_auc": 0.5}},
        reference_sample=pd.DataFrame({"region": ["north"], "tenure_months": [3]}),
    )
    registry.promote("churn", version.version)
    reference = load_reference(store, _decay_config(primary_metric="pr_auc"))
    assert reference.registered_metrics == {"overall": 0.6, "region=north": 0.61, "tenure_months=new": 0.5}
    assert load_reference(store, _decay_config()).registered_metrics == {"overall": 0.8}


# ------------------------------------------------------------------------------ history


def _result(share: float, x_score: float) -> DriftResult:
    cols = [
        ColumnDrift(
            column="x",
            kind="numerical",
            method="wasserstein",
            score=x_score,
            threshold=0.1,
            drifted=x_score >= 0.1,
            n_reference=10,
            n_current=10,
        ),
        ColumnDrift(
            column="colour",
            kind="categorical",
            method="jensenshannon",
            score=0.01,
            threshold=0.1,
            drifted=False,
            n_reference=10,
            n_current=10,
        ),
    ]
    pred = ColumnDrift(
        column="score",
        kind="numerical",
        method="wasserstein",
        score=0.02,
        threshold=0.1,
        drifted=False,
        n_reference=10,
        n_current=10,
    )
    return DriftResult(
        columns=cols,
        n_columns=2,
        n_drifted=int(x_score >= 0.1),
        drift_share=share,
        drift_share_threshold=0.3,
        drift_detected=share >= 0.3,
        prediction=pred,
        reference_rows=10,
        current_rows=10,
        reference_sample_rows=10,
        current_sample_rows=10,
        sample_size=20_000,
        stratified_by=None,
        seed=0,
        engine="evidently 0.7.23",
    )


def test_history_appends_one_object_per_run_and_reads_in_time_order(store) -> None:  # type: ignore[no-untyped-def]
    t0 = datetime(2026, 10, 5, 8, tzinfo=UTC)
    k2 = append_drift_history(store, "churn", _result(0.5, 0.3), t0 + timedelta(hours=2))
    k0 = append_drift_history(store, "churn", _result(0.0, 0.02), t0)
    append_drift_history(store, "churn", _result(0.0, 0.05), t0 + timedelta(hours=1))
    append_drift_history(store, "other", _result(1.0, 0.9), t0)
    assert k0.startswith("drift/churn/history/20261005T080000000000Z-") and k0.endswith(".json")
    assert k2 > k0
    history = read_drift_history(store, "churn")
    assert len(history) == 3 * 3  # two features and the prediction per run
    x = history[history["column"] == "x"]
    assert x["score"].tolist() == [0.02, 0.05, 0.3]
    assert x["drifted"].tolist() == [False, False, True]
    assert x["at"].tolist() == [t0, t0 + timedelta(hours=1), t0 + timedelta(hours=2)]
    assert set(history["role"]) == {"feature", "prediction"}
    assert history.groupby("run_id")["drift_share"].first().sort_values().tolist() == [0.0, 0.0, 0.5]


def test_empty_history_and_plot(local_store) -> None:  # type: ignore[no-untyped-def]
    empty = read_drift_history(local_store, "churn")
    assert empty.empty and "score" in empty.columns
    assert plot_drift_history(empty).startswith(b"\x89PNG")
    t0 = datetime(2026, 10, 5, tzinfo=UTC)
    for i, score in enumerate([0.01, 0.04, 0.2]):
        append_drift_history(local_store, "churn", _result(score, score), t0 + timedelta(hours=i))
    png = plot_drift_history(read_drift_history(local_store, "churn"))
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_naive_timestamp_is_refused(local_store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="timezone-aware"):
        append_drift_history(local_store, "churn", _result(0, 0), datetime(2026, 10, 5))
