"""Decay fires on evidence: the window's metric is bootstrapped, and a drop must clear the tolerance."""

from __future__ import annotations

import numpy as np
import pandas as pd

from refit.config import DriftConfig
from refit.decay import compute_decay

TRUE_AUC = 0.80  # of the score below on this population, measured on 400,000 rows


def _window(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """An in-distribution window: about 23 positives in 300 rows, the champion as good as ever."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.077).astype(float)
    return y, 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.2 * y)))


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
