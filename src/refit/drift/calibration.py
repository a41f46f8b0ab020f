"""Verdicts per column: calibrated (a p-value from the null drawn from the reference, Holm across
the features) or fixed (Evidently's stat tests at the configured thresholds)."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from refit.compat.evidently import ColumnKind
from refit.config import DriftConfig
from refit.drift import null as drift_null
from refit.drift.caches import NullCache
from refit.drift.plan import _Plan, _plan
from refit.drift.sampling import _SAMPLING_TAG, _rng


@dataclass(frozen=True)
class _Verdict:
    """One tested column's score and verdict, and with calibration where its threshold came from."""

    score: float
    drifted: bool
    threshold: float
    p_value: float | None = None
    level: float | None = None
    draws: int | None = None
    bucket: int | None = None


def _score(plan: _Plan, column: str) -> float:
    """The column's observed score, by the one scoring function the null draws use too."""
    kind, method = plan.kinds[column], plan.methods[column]
    counts = drift_null.observed_counts(plan.reference[column], plan.current[column], kind)
    return float(drift_null.score_counts(method, kind, counts)[0])


def _null_key(plan: _Plan, column: str, draws: int) -> str:
    """What a column's null depends on: its reference values, test, number of draws and the
    null's scheme (how a draw is made)."""

    def digest() -> tuple[int, str]:
        ref = plan.reference[column].dropna()
        if plan.kinds[column] == "numerical":
            content = np.sort(ref.to_numpy(dtype=np.float64)).tobytes()
        else:
            counts = ref.value_counts()
            content = json.dumps(sorted(zip(map(repr, counts.index), counts.tolist(), strict=True))).encode()
        return len(ref), hashlib.sha256(content).hexdigest()[:16]

    n, content = plan.memo(("digest", column, plan.kinds[column]), digest)
    return f"{column}|{plan.kinds[column]}|{plan.methods[column]}|{n}|{draws}|s{drift_null.NULL_SCHEME}|{content}"


def _draws(plan: _Plan, cfg: DriftConfig) -> int:
    # sized by every configured feature, not the ones this window could test: a sparse column missing
    # from one window must not change the draws, the nulls' cache keys, and so redraw every column
    configured = len(plan.features) + sum(1 for c in plan.untestable if c != plan.prediction)
    return drift_null.draws_for(configured, cfg.alpha, cfg.calibration_draws)


def _null(plan: _Plan, column: str, draws: int, seed: int, nulls: NullCache) -> tuple[int, np.ndarray]:
    """The column's size bucket and its null there: from ``nulls``, else drawn (seeded) and put."""
    bucket = drift_null.size_bucket(plan.counts[column][1])
    key = _null_key(plan, column, draws)
    null = nulls.get(bucket, key)
    if null is None:
        rng = np.random.default_rng([_SAMPLING_TAG, seed, 3, bucket, zlib.crc32(key.encode())])
        null = drift_null.null_scores(
            plan.methods[column], plan.kinds[column], plan.reference[column], bucket, draws, rng
        )
        nulls.put(bucket, key, null)
    return bucket, null


def calibrate(
    reference: pd.DataFrame,
    columns: Sequence[str],
    cfg: DriftConfig,
    seed: int,
    nulls: NullCache,
    window_rows: Sequence[int],
    kinds: Mapping[str, ColumnKind] | None = None,
) -> list[int]:
    """Draw and keep, ahead of any check, the nulls that checks of windows of ``window_rows``
    rows will read (each size capped at ``cfg.sample_size``, what a check samples): the same
    plan, keys and seeds :func:`check_drift` uses, so its first check reads them instead of
    drawing. A column with missing values is drawn at its expected count of values (its share in
    the reference); a window whose count falls in another size bucket draws that one lazily.
    Returns the size buckets drawn (or found) for the features."""
    if cfg.threshold_mode != "calibrated":
        return []
    buckets: set[int] = set()
    for rows in dict.fromkeys(min(max(int(n), 1), cfg.sample_size) for n in window_rows):
        # a stand-in window: the reference's rows, as many as a check of that size would sample
        picks = _rng(seed, 4).integers(0, len(reference), size=rows)
        window = reference.iloc[picks].reset_index(drop=True)
        plan = _plan(reference, window, columns, None, cfg, seed, kinds)
        draws = _draws(plan, cfg)
        for column in plan.features:
            buckets.add(_null(plan, column, draws, seed, nulls)[0])
        nulls.flush()
    return sorted(buckets)


def _calibrated(plan: _Plan, cfg: DriftConfig, seed: int, nulls: NullCache) -> dict[str, _Verdict]:
    """Per column: the p-value of its score against the null drawn from the reference for a
    window of its size, Holm across the features at ``cfg.alpha`` (the prediction alone)."""
    from refit.evaluation.gate import holm_levels

    tested = [*plan.features, *([plan.prediction] if plan.prediction else [])]
    draws = _draws(plan, cfg)
    observed: dict[str, float] = {}
    p: dict[str, float] = {}
    null_of: dict[str, np.ndarray] = {}
    bucket_of: dict[str, int] = {}
    for column in tested:
        observed[column] = _score(plan, column)
        bucket_of[column], null_of[column] = _null(plan, column, draws, seed, nulls)
        p[column] = drift_null.p_value(observed[column], null_of[column], plan.methods[column])
    nulls.flush()
    features = plan.features
    levels = dict(zip(features, holm_levels([p[c] for c in features], cfg.alpha), strict=True))
    if plan.prediction:
        levels[plan.prediction] = cfg.alpha  # the prediction alone
    return {
        c: _Verdict(
            score=observed[c],
            drifted=p[c] <= levels[c],
            threshold=drift_null.threshold_at(null_of[c], levels[c], plan.methods[c]),
            p_value=p[c],
            level=levels[c],
            draws=draws,
            bucket=bucket_of[c],
        )
        for c in tested
    }


def _fixed(plan: _Plan, evidently: Mapping[str, tuple[float, bool]]) -> dict[str, _Verdict]:
    """Evidently's verdicts at the configured thresholds (the new-value test scored here)."""
    out = {c: _Verdict(score=sc, drifted=d, threshold=plan.thresholds[c]) for c, (sc, d) in evidently.items()}
    for column in [*plan.features, *([plan.prediction] if plan.prediction else [])]:
        if plan.methods[column] == drift_null.NEW_VALUE:
            score = _score(plan, column)
            out[column] = _Verdict(
                score=score, drifted=score >= plan.thresholds[column], threshold=plan.thresholds[column]
            )
    return out
