"""The gate's paired bootstrap: 1,000 resamples, 10 segments, a million rows, ROC AUC (and, beside
the target, multiclass macro ROC AUC on a tenth of the rows).

Synthetic scores (two correlated models of one label) in a fixed seed; the time is the call to
``refit.evaluation.paired_bootstrap`` alone, best of ``repeats``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

SEGMENTS = 10


def data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    segment = rng.integers(0, SEGMENTS, rows)
    signal = rng.standard_normal(rows) + 0.1 * segment
    y = (rng.random(rows) < 1 / (1 + np.exp(-(signal - 1.5)))).astype(np.int64)
    cand = 1 / (1 + np.exp(-(signal + 0.8 * rng.standard_normal(rows))))
    champ = 1 / (1 + np.exp(-(signal + 0.9 * rng.standard_normal(rows))))
    return y, cand, champ, segment


def run(rows: int = 1_000_000, resamples: int = 1000, repeats: int = 2) -> dict[str, Any]:
    from refit.evaluation import paired_bootstrap

    y, cand, champ, segment = data(rows)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = paired_bootstrap(
            "binary", "roc_auc", y, cand, champ, {"segment": segment}, n_resamples=resamples, seed=0
        )
        times.append(round(time.perf_counter() - start, 3))
    start = time.perf_counter()
    paired_bootstrap("binary", "roc_auc", y, cand, champ, {"segment": segment}, n_resamples=resamples, seed=0, n_jobs=1)
    one_thread_s = round(time.perf_counter() - start, 3)
    # Not part of the target: scores with many ties (a model whose outputs take few distinct
    # values) take the tie-correction path, measured on a tenth of the rows.
    tie_rows = rows // 10
    yt, ct, ht, st = data(tie_rows)
    start = time.perf_counter()
    paired_bootstrap(
        "binary",
        "roc_auc",
        yt,
        np.round(ct, 3),
        np.round(ht, 3),
        {"segment": st},
        n_resamples=resamples,
        seed=0,
    )
    tie_s = round(time.perf_counter() - start, 3)
    multiclass = run_multiclass(rows // 10, resamples)
    return {
        "one_thread_s": one_thread_s,
        "tie_heavy": {"rows": tie_rows, "distinct_scores": int(len(np.unique(np.round(ct, 3)))), "seconds": tie_s},
        "multiclass": multiclass,
        "rows": rows,
        "resamples": resamples,
        "segments": SEGMENTS,
        "metric": "roc_auc",
        "runs_s": times,
        "seconds": min(times),
        "threads": min(4, os.cpu_count() or 1),
        "overall_difference": result.overall.difference,
        "overall_ci": [result.overall.ci_low, result.overall.ci_high],
        "segments_reported": len(result.segments),
    }


def multiclass_data(rows: int, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Class labels, two correlated models' softmax probabilities, and a segment per row."""
    rng = np.random.default_rng(seed)
    segment = rng.integers(0, SEGMENTS, rows)
    signal = rng.standard_normal((rows, classes))
    y = np.argmax(signal + rng.standard_normal((rows, classes)), axis=1)

    def softmax(noise: float) -> np.ndarray:
        z = signal + noise * rng.standard_normal((rows, classes))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    return y, softmax(0.8), softmax(0.9), segment


def run_multiclass(rows: int, resamples: int = 1000, classes: int = 3) -> dict[str, Any]:
    """Not part of the target: macro one-vs-rest ROC AUC (one bit-packed AUC pass per class,
    after a gather into that class's score order), on a tenth of the binary benchmark's rows."""
    from refit.evaluation import paired_bootstrap

    y, cand, champ, segment = multiclass_data(rows, classes)
    start = time.perf_counter()
    result = paired_bootstrap(
        "multiclass", "macro_roc_auc", y, cand, champ, {"segment": segment}, n_resamples=resamples, seed=0
    )
    return {
        "rows": rows,
        "classes": classes,
        "metric": "macro_roc_auc",
        "seconds": round(time.perf_counter() - start, 3),
        "overall_ci": [result.overall.ci_low, result.overall.ci_high],
    }
