"""Decay fires on evidence: the window's metric is bootstrapped, and a drop must clear the tolerance."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from refit.config import DatasetConfig, DriftConfig, PipelineConfig, SegmentSpec
from refit.decay import compute_decay
from refit.evidence import decay_summary_rows
from refit.io.local import LocalStore
from refit.metrics import metric_value
from refit.monitoring import Reference, champion_decay, load_reference
from refit.pipeline import registered_metrics
from refit.registry import Registry

TRUE_AUC = 0.80  # of the score below on this population, measured on 400,000 rows


def _window(seed: int, n: int = 300, prevalence: float = 0.077, strength: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """An in-distribution window: about 23 positives in 300 rows, the champion as good as ever."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(float)
    return y, 1 / (1 + np.exp(-(rng.normal(0, 1, n) + strength * y)))


def test_chance_drops_on_small_windows_do_not_fire() -> None:
    """On 100 in-distribution windows, the point estimate drops more than 0.05 in about one in
    seven (each of those fired before); with the interval, at most a few fire (alpha 2.5%)."""
    cfg = DriftConfig()
    results = [compute_decay(*_window(seed), {"overall": TRUE_AUC}, cfg, "roc_auc", seed=seed) for seed in range(100)]
    point_alarms = sum(r.overall.drop is not None and r.overall.drop > 0.05 for r in results)
    alarms = sum(r.decayed for r in results)
    assert point_alarms >= 10
    assert alarms <= 3
    first = results[0].overall
    assert first.ci_low is not None and first.ci_high is not None and first.p_value is not None
    assert first.ci_low <= first.drop <= first.ci_high and first.tolerance == 0.05  # type: ignore[operator]


def test_a_real_drop_on_enough_rows_still_fires_with_its_interval() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    y = (rng.random(n) < 0.3).astype(float)
    worse = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 0.4 * y)))  # AUC about 0.61 against 0.80 registered
    result = compute_decay(y, worse, {"overall": TRUE_AUC}, DriftConfig(), "roc_auc", seed=1)
    o = result.overall
    assert o.decayed and o.ci_low > 0.05 and o.p_adjusted == o.p_value == 0.0  # type: ignore[operator]
    assert result.confidence == 0.95 and result.n_resamples == 500


def test_holm_within_a_segmentation_keeps_many_small_segments_quiet() -> None:
    """Twenty stations of 150 rows each, none decayed: the chance worst of twenty is not evidence."""
    rng = np.random.default_rng(11)
    n = 3000
    station = rng.choice([f"s{i:02d}" for i in range(20)], n)
    y = (rng.random(n) < 0.2).astype(float)
    score = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.2 * y)))
    registered = {"overall": TRUE_AUC} | {f"station=s{i:02d}": TRUE_AUC for i in range(20)}
    cfg = DriftConfig(decay_min_rows=100)
    result = compute_decay(y, score, registered, cfg, "roc_auc", segments=pd.DataFrame({"station": station}), seed=2)
    assert len(result.segments) == 20 and not result.decayed
    worst = max(result.segments, key=lambda s: s.drop or 0.0)
    assert worst.drop is not None and worst.drop > 0.05  # a point estimate alone would have fired
    assert worst.p_adjusted is not None and worst.p_adjusted >= worst.p_value  # type: ignore[operator]
    unadjusted = compute_decay(
        y, score, registered, cfg.model_copy(update={"decay_holm": False}), "roc_auc",
        segments=pd.DataFrame({"station": station}), seed=2,
    )  # fmt: skip
    assert all(s.p_adjusted == s.p_value for s in unadjusted.segments if s.p_value is not None)


# ---------------------------------------------------------------- the registered value's own noise


def _loans_config() -> PipelineConfig:
    return PipelineConfig(
        dataset=DatasetConfig(
            name="loans",
            sources=["x.parquet"],
            schema="schemas.churn:ChurnTrainingSchema",
            target="defaulted",
            task="binary",
            id_column="loan_id",
            timestamp_column="event_time",
            segments=[SegmentSpec(column="loan_amount")],
        ),
        drift=DriftConfig(decay_tolerance=0.05, decay_min_rows=100),
    )


def _loans(mid: int, mid_strength: float, seed: int, others: int = 1000) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Loans in three amount segments, 30% defaults; the champion's score separates them by
    ``strength`` (AUC 0.80 at 1.2, 0.638 at 0.5, 0.614 at 0.41, 0.5 at 0)."""
    parts = []
    for i, (value, n, strength) in enumerate([("low", others, 1.2), ("mid", mid, mid_strength), ("high", others, 1.2)]):
        y, score = _window(seed * 3 + i, n, prevalence=0.3, strength=strength)
        parts.append(pd.DataFrame({"loan_amount": value, "defaulted": y, "score": score}))
    frame = pd.concat(parts, ignore_index=True)
    return frame, frame["defaulted"].to_numpy(), frame["score"].to_numpy()


def _champion(tmp_path: Path, holdout: tuple[pd.DataFrame, np.ndarray, np.ndarray], with_se: bool = True) -> Reference:
    """Register a champion as ``refit.pipeline.evaluate_candidate`` does (the gate's metric on
    the holdout, per segment) and load the reference decay judges against."""
    config = _loans_config()
    frame, y, score = holdout
    segments = registered_metrics(frame, y, score, config)
    del segments["overall"]
    if not with_se:  # a version registered before refit stored standard errors
        segments = {k: {"n": v["n"], "roc_auc": v["roc_auc"]} for k, v in segments.items()}
    store = LocalStore(tmp_path)
    registry = Registry(store)
    version = registry.register(
        "loans",
        artifact_uri="/models/loans/1",
        metrics={"roc_auc": metric_value("roc_auc", y, score)},
        segment_metrics=segments,
        reference_sample=frame.head(5),
    )
    registry.promote("loans", version.version)
    return load_reference(store, config)


def _decay(tmp_path: Path, reference: Reference, window: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> Any:
    frame, y, score = window
    return champion_decay(LocalStore(tmp_path), _loans_config(), reference, frame, scored=(y, score))


def test_a_lucky_registered_value_from_a_small_holdout_is_not_a_decay(tmp_path: Path) -> None:
    """The user's false alarm: loan_amount=mid registered at AUC 0.717 from 123 holdout rows
    (its truth is 0.638); production there is 0.614, a true drop of 0.024, under the 0.05
    tolerance. Judged against the registered value as exact, the drop's interval cleared the
    tolerance and decay fired; with the registered value's standard error it does not."""
    holdout = _loans(123, 0.5, seed=13)
    reference = _champion(tmp_path, holdout)
    lucky = reference.registered_metrics["loan_amount=mid"]
    assert lucky > 0.71  # a lucky estimate of 0.638
    result = _decay(tmp_path, reference, _loans(1000, 0.41, seed=101))
    mid = {s.segment: s for s in result.segments}["loan_amount=mid"]
    assert mid.drop is not None and mid.drop > 0.1  # the point estimate alone looks like decay
    assert not mid.decayed and not result.decayed
    assert mid.registered_n == 123 and mid.registered_se is not None and 0.03 < mid.registered_se < 0.08
    assert mid.ci_low is not None and mid.ci_low < 0.05  # the interval carries both sources of noise
    assert "weak evidence" in (mid.note or "")  # 123 rows, under gate.min_segment_size (200)
    rows = decay_summary_rows(SimpleNamespace(decay=result))  # type: ignore[arg-type]
    row = next(r for r in rows if r["segment"] == mid.segment)
    assert row["registered_se"] == mid.registered_se and row["registered_n"] == 123


def test_a_real_decay_on_a_large_registered_holdout_still_fires(tmp_path: Path) -> None:
    """loan_amount=mid registered at about 0.80 on 1,000 rows; production there is 0.614."""
    reference = _champion(tmp_path, _loans(1000, 1.2, seed=18))
    result = _decay(tmp_path, reference, _loans(1000, 0.41, seed=102))
    mid = {s.segment: s for s in result.segments}["loan_amount=mid"]
    assert mid.decayed and result.decayed_segments == ["loan_amount=mid"]
    assert mid.registered_se is not None and mid.registered_se < 0.02 and mid.note is None
    assert mid.ci_low is not None and mid.ci_low > 0.05


def test_a_large_drop_from_a_small_holdout_still_fires(tmp_path: Path) -> None:
    """The registered value's noise widens the interval; it does not hide a collapse (0.72 to 0.5)."""
    reference = _champion(tmp_path, _loans(123, 0.5, seed=13))
    result = _decay(tmp_path, reference, _loans(1000, 0.0, seed=103))
    mid = {s.segment: s for s in result.segments}["loan_amount=mid"]
    assert mid.decayed and "weak evidence" in (mid.note or "")


def test_a_version_registered_without_standard_errors_is_judged_as_before(tmp_path: Path) -> None:
    """No stored SE: the registered value is taken as exact (today's behaviour), so the lucky
    value fires; the report still says it came from few rows."""
    holdout = _loans(123, 0.5, seed=13)
    reference = _champion(tmp_path, holdout, with_se=False)
    assert reference.registered_se == {} and reference.registered_n["loan_amount=mid"] == 123
    result = _decay(tmp_path, reference, _loans(1000, 0.41, seed=101))
    mid = {s.segment: s for s in result.segments}["loan_amount=mid"]
    assert mid.decayed and mid.registered_se is None and "weak evidence" in (mid.note or "")
    exact = compute_decay(
        holdout[1][:0], holdout[2][:0], {"overall": 0.8}, DriftConfig(), "roc_auc"
    )  # no labelled rows: nothing judged, the registered side still reported
    assert exact.overall.registered == 0.8 and exact.overall.registered_se is None and not exact.decayed
