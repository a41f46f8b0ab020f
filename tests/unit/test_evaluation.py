"""Metrics equal sklearn's, the bootstrap kernels equal the plain weighted metrics, and the
paired bootstrap's intervals mean what they say."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from refit import evaluation as ev
from refit import metrics as rm
from refit.config import DatasetConfig
from refit.evaluation import bootstrap, kernels


@pytest.fixture(scope="module")
def binary() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.35).astype(int)
    score = np.round(np.clip(rng.random(n) * 0.7 + 0.3 * y, 0, 1), 2)  # rounded: many ties
    weights = rng.integers(0, 4, n).astype(float)
    return y, score, weights


@pytest.fixture(scope="module")
def continuous() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    n = 300
    y = rng.normal(3.0, 2.0, n)
    pred = y + rng.normal(0, 1.0, n)
    weights = rng.uniform(0.0, 2.0, n)
    return y, pred, weights


def _sk_classification(y: np.ndarray, s: np.ndarray, w: np.ndarray | None) -> dict[str, float]:
    pred = s >= 0.5
    return {
        "roc_auc": skm.roc_auc_score(y, s, sample_weight=w),
        "pr_auc": skm.average_precision_score(y, s, sample_weight=w),
        "log_loss": skm.log_loss(y, s, sample_weight=w),
        "accuracy": skm.accuracy_score(y, pred, sample_weight=w),
        "f1": skm.f1_score(y, pred, sample_weight=w),
        "brier": skm.brier_score_loss(y, s, sample_weight=w),
    }


def _ece(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> float:
    total, gap = 0.0, 0.0
    for b in range(10):
        rows = np.minimum((s * 10).astype(int), 9) == b
        if w[rows].sum() > 0:
            gap += abs(np.sum(w[rows] * y[rows]) - np.sum(w[rows] * s[rows]))
        total += w[rows].sum()
    return gap / total


@pytest.mark.parametrize("weighted", [False, True])
def test_classification_metrics_equal_sklearn(binary, weighted: bool) -> None:
    y, s, w = binary
    weights = w if weighted else None
    got = rm.compute_metrics("binary", y, s, weights)
    assert set(got) == set(rm.metrics_for("binary"))
    for name, expected in _sk_classification(y, s, weights).items():
        assert got[name] == pytest.approx(expected, rel=1e-12, abs=1e-12), name
    assert got["ece"] == pytest.approx(_ece(y, s, w if weighted else np.ones(len(y))), rel=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_regression_metrics_equal_sklearn(continuous, weighted: bool) -> None:
    y, p, w = continuous
    weights = w if weighted else None
    got = rm.compute_metrics("regression", y, p, weights)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, p, sample_weight=weights), rel=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p, sample_weight=weights), rel=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(y, p, sample_weight=weights), rel=1e-12)
    assert got["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, p, sample_weight=weights), rel=1e-12)


def test_mape_skips_zero_targets_and_undefined_metrics_are_none() -> None:
    y = np.array([0.0, 2.0, 4.0, 0.0])
    p = np.array([5.0, 1.0, 5.0, -3.0])
    got = rm.compute_metrics("regression", y, p)
    assert got["mape"] == pytest.approx((0.5 + 0.25) / 2)
    assert rm.compute_metrics("regression", [0.0, 0.0], [1.0, 2.0])["mape"] is None
    assert rm.compute_metrics("regression", [1.0, 1.0], [1.0, 2.0])["r2"] is None  # constant target
    one_class = rm.compute_metrics("binary", [1, 1, 1], [0.2, 0.6, 0.9])
    assert one_class["roc_auc"] is None and one_class["accuracy"] == pytest.approx(2 / 3)


def test_metric_values_evaluates_many_weightings_at_once(binary) -> None:
    y, s, _ = binary
    W = np.random.default_rng(2).integers(0, 4, (len(y), 5)).astype(float)
    for name in ("roc_auc", "pr_auc", "log_loss", "f1"):
        got = rm.metric_values(name, y, s, W)
        for j in range(W.shape[1]):
            assert got[j] == pytest.approx(rm.compute_metrics("binary", y, s, W[:, j])[name], rel=1e-12)


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="binary task needs 0/1 labels"):
        rm.compute_metrics("binary", [0, 1, 2], [0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match="one value per row"):
        rm.compute_metrics("binary", [0, 1], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        rm.compute_metrics("regression", [1.0, 2.0], [np.nan, 1.0])
    assert rm.compute_metrics("binary", [0, 1], [[0.9, 0.1], [0.2, 0.8]])["roc_auc"] == 1.0


def test_every_metric_has_one_task_and_direction() -> None:
    assert {m for t in rm.TASKS for m in rm.metrics_for(t)} == set(rm.METRICS)
    assert rm.metrics_for("multiclass") == ("macro_roc_auc", "log_loss", "accuracy")
    assert rm.DEFAULT_METRIC == {"binary": "roc_auc", "multiclass": "macro_roc_auc", "regression": "rmse"}
    assert rm.get_metric("roc_auc").higher_is_better and not rm.get_metric("rmse").higher_is_better
    assert rm.get_metric("pr_auc").is_better(0.8, 0.7) and rm.get_metric("rmse").is_better(0.6, 0.7)
    with pytest.raises(ValueError, match="unknown metric 'aucc'"):
        rm.get_metric("aucc")


def test_weights_have_mean_one_and_variance_one() -> None:
    W = kernels._draw_weights(np.random.SeedSequence(5), 50_000, 16)
    assert W.shape == (50_001, 16) and not W[-1].any()
    freq = np.bincount(W[:-1].ravel(), minlength=4) / W[:-1].size
    assert freq == pytest.approx([3 / 8, 3 / 8, 1 / 8, 1 / 8], abs=0.003)
    assert W[:-1].mean() == pytest.approx(1.0, abs=0.01) and W[:-1].var() == pytest.approx(1.0, abs=0.01)


def _replayed(task: str, metric: str, y, s, n_resamples: int, seed: int) -> np.ndarray:
    """The resample weights paired_bootstrap draws, in the original row order."""
    n = len(y)
    k = bootstrap._chunk_size(n)
    chunks = [(c0, min(k, n_resamples - c0)) for c0 in range(0, n_resamples, k)]
    seeds = np.random.SeedSequence(seed).spawn(len(chunks))
    W = np.concatenate(
        [kernels._draw_weights(seeds[i], n, -(-w // 8) * 8)[:n, :w] for i, (_, w) in enumerate(chunks)], axis=1
    )
    if metric == "roc_auc":  # drawn in the champion's score order
        moved = np.empty_like(W)
        moved[kernels._score_order(np.asarray(y, dtype=np.uint8), s)] = W
        W = moved
    return W.astype(float)


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "log_loss", "accuracy", "f1", "brier", "ece"])
def test_bootstrap_replicates_equal_the_weighted_metric(binary, metric: str) -> None:
    y, cand, _ = binary
    champ = np.round(np.clip(cand + np.random.default_rng(3).normal(0, 0.15, len(y)), 0, 1), 3)
    segments = {"half": np.where(np.arange(len(y)) % 2 == 0, "even", "odd")}
    boot = ev.paired_bootstrap("binary", metric, y, cand, champ, segments, n_resamples=150, seed=4)
    W = _replayed("binary", metric, y, champ, 150, 4)
    for row in [boot.overall, *boot.segments]:
        rows = np.ones(len(y), bool) if row.segment == ev.OVERALL else segments["half"] == row.value
        expected = rm.metric_values(metric, y[rows], cand[rows], W[rows]) - rm.metric_values(
            metric, y[rows], champ[rows], W[rows]
        )
        np.testing.assert_allclose(row.replicates, expected, rtol=0, atol=1e-12)
        assert row.candidate == pytest.approx(rm.compute_metrics("binary", y[rows], cand[rows])[metric])
        assert row.n == rows.sum()


def test_auc_kernel_is_exact_across_tiles_batches_and_ties(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels._AucPlan, "TILE", 32)  # 3000 rows: 6 tiles, 3 level-2 batches, ragged ends
    monkeypatch.setattr(kernels._AucPlan, "BATCH", 2)
    rng = np.random.default_rng(7)
    n = 3000
    y = (rng.random(n) < 0.3).astype(int)
    cand = np.round(rng.random(n) * 0.6 + 0.3 * y, 2)
    champ = np.round(rng.random(n) * 0.6 + 0.2 * y, 2)
    segments = {"r": rng.integers(0, 5, n)}
    boot = ev.paired_bootstrap("binary", "roc_auc", y, cand, champ, segments, n_resamples=40, seed=3)
    W = _replayed("binary", "roc_auc", y, champ, 40, 3)
    for row in [boot.overall, *boot.segments]:
        rows = np.ones(n, bool) if row.segment == ev.OVERALL else segments["r"] == int(row.value)
        expected = rm.metric_values("roc_auc", y[rows], cand[rows], W[rows]) - rm.metric_values(
            "roc_auc", y[rows], champ[rows], W[rows]
        )
        np.testing.assert_array_equal(row.replicates, expected)


def test_bootstrap_regression_replicates_equal_the_weighted_metric(continuous) -> None:
    y, pred, _ = continuous
    other = pred + np.random.default_rng(6).normal(0, 0.5, len(y))
    boot = ev.paired_bootstrap("regression", "rmse", y, pred, other, None, n_resamples=100, seed=1)
    W = _replayed("regression", "rmse", y, other, 100, 1)
    expected = rm.metric_values("rmse", y, pred, W) - rm.metric_values("rmse", y, other, W)
    np.testing.assert_allclose(boot.overall.replicates, expected, atol=1e-12)


def test_identical_models_differ_by_exactly_zero(binary) -> None:
    y, s, _ = binary
    thirds = {"g": np.arange(len(y)) % 3}
    boot = ev.paired_bootstrap("binary", "roc_auc", y, s, s.copy(), thirds, n_resamples=120)
    for row in [boot.overall, *boot.segments]:
        assert row.difference == 0.0 and row.ci_low == 0.0 and row.ci_high == 0.0 and row.p_value == 1.0
        assert not np.any(row.replicates[np.isfinite(row.replicates)])


def test_results_depend_on_the_seed_not_on_threads(binary) -> None:
    y, s, _ = binary
    other = s[::-1].copy()
    one = ev.paired_bootstrap("binary", "roc_auc", y, s, other, n_resamples=300, seed=9, n_jobs=1)
    two = ev.paired_bootstrap("binary", "roc_auc", y, s, other, n_resamples=300, seed=9, n_jobs=2)
    np.testing.assert_array_equal(one.overall.replicates, two.overall.replicates)
    three = ev.paired_bootstrap("binary", "roc_auc", y, s, other, n_resamples=300, seed=10)
    assert not np.array_equal(one.overall.replicates, three.overall.replicates)


def _binormal(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.4).astype(int)
    shared = rng.normal(size=n)
    cand = shared + 1.2 * y + 0.5 * rng.normal(size=n)
    champ = shared + 0.9 * y + 0.5 * rng.normal(size=n)
    return y, cand, champ


def test_intervals_cover_the_true_difference() -> None:
    # Positives shift the score by mu on top of N(0, 1.25): AUC = Phi(mu / sqrt(2 * 1.25)).
    def auc(mu: float) -> float:
        return 0.5 * (1 + math.erf(mu / math.sqrt(2 * 1.25) / math.sqrt(2)))

    truth = auc(1.2) - auc(0.9)
    rng = np.random.default_rng(11)
    covered = 0
    trials = 40
    for t in range(trials):
        y, cand, champ = _binormal(rng, 400)
        boot = ev.paired_bootstrap("binary", "roc_auc", y, cand, champ, n_resamples=200, seed=t)
        covered += boot.overall.ci_low <= truth <= boot.overall.ci_high
    assert covered >= 34  # nominal 95%: 38 expected; below 34 of 40 would be a broken interval


def test_pairing_narrows_the_interval() -> None:
    y, cand, champ = _binormal(np.random.default_rng(12), 1000)
    flat = np.full(len(y), 0.5)  # AUC exactly 0.5 in every resample: isolates one model's spread
    sd_cand = np.std(
        ev.paired_bootstrap("binary", "roc_auc", y, cand, flat, n_resamples=300, seed=1).overall.replicates
    )
    sd_champ = np.std(
        ev.paired_bootstrap("binary", "roc_auc", y, champ, flat, n_resamples=300, seed=2).overall.replicates
    )
    paired = ev.paired_bootstrap("binary", "roc_auc", y, cand, champ, n_resamples=300, seed=3)
    unpaired_sd = math.hypot(sd_cand, sd_champ)
    assert np.std(paired.overall.replicates) < 0.6 * unpaired_sd


DATASET = DatasetConfig.model_validate(
    {
        "name": "churn",
        "sources": ["x.parquet"],
        "schema": "m:C",
        "target": "y",
        "task": "binary",
        "id_column": "id",
        "timestamp_column": "ts",
        "segments": [
            {"column": "region"},
            {"column": "tenure", "bins": [0, 6, 24], "labels": ["new", "loyal"]},
            {"column": "age", "bins": [0, 30, 60]},
        ],
        "segment_crossings": [["region", "tenure"]],
    }
)


def test_segment_labels_bins_crossings_and_missing() -> None:
    df = pd.DataFrame(
        {
            "region": ["north", "south", None, "north", "south"],
            "tenure": [1.0, 6.0, 30.0, np.nan, 23.9],
            "age": [10, 30, 59.5, 60, -1],
        }
    )
    labels = ev.segment_labels(df, DATASET)
    assert list(np.asarray(labels["region"])) == ["north", "south", "(missing)", "north", "south"]
    assert list(np.asarray(labels["tenure"])) == ["new", "loyal", "(out of range)", "(missing)", "loyal"]
    assert list(labels["tenure"].categories) == ["new", "loyal", "(out of range)", "(missing)"]  # bin order kept
    assert list(np.asarray(labels["age"])) == ["[0, 30)", "[30, 60)", "[30, 60)", "(out of range)", "(out of range)"]
    assert list(np.asarray(labels["region×tenure"])) == [
        "north×new",
        "south×loyal",
        "(missing)×(out of range)",
        "north×(missing)",
        "south×loyal",
    ]
    masks = ev.segment_masks(df, DATASET)
    assert masks["region"]["south"].tolist() == [1, 4]
    assert masks["region×tenure"]["south×loyal"].tolist() == [1, 4]
    with pytest.raises(Exception, match="segment column 'region'"):
        ev.segment_labels(df.drop(columns="region"), DATASET)


def test_bootstrap_segments_keep_category_order() -> None:
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 200)
    s = rng.random(400)
    cat = pd.Categorical(np.where(np.arange(400) < 100, "new", "loyal"), categories=["new", "loyal"])
    boot = ev.paired_bootstrap("binary", "brier", y, s, s[::-1].copy(), {"tenure": cat}, n_resamples=50)
    assert [(r.value, r.n) for r in boot.segments] == [("new", 100), ("loyal", 300)]
    ids = ev.paired_bootstrap("binary", "brier", y, s, s, {"id": np.arange(400) % 12}, n_resamples=20)
    assert [r.value for r in ids.segments] == [str(i) for i in range(12)]  # numeric ids sort as numbers


def test_holm_adjustment() -> None:
    adjusted = ev.holm_adjust([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1 -> max(0.06, 0.04)=0.06
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert ev.holm_adjust([]) == []
