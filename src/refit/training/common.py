"""What every trainer shares: the task kinds, the error type, and a small metric helper.

The metric helper only serves model selection (the validation score of each trial). The
gate's metrics, with bootstrap intervals and segments, live in the evaluation module.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from refit.errors import RefitError

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")


class TrainingError(RefitError):
    """Training could not produce a usable model (diverged, no data, every trial failed)."""


def primary_metric(task: Task) -> tuple[str, bool]:
    """(name, higher_is_better) of the metric that selects among trials."""
    if task == "binary":
        return "roc_auc", True
    if task == "multiclass":
        return "log_loss", False
    if task == "regression":
        return "rmse", False
    raise ValueError(f"unknown task {task!r}")


def score(task: Task, y_true: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Validation metrics from model output.

    Args:
        task: The task kind.
        y_true: Class indices (0..K-1) for classification, values for regression.
        output: Probabilities ``[n, K]`` for classification, predictions ``[n]`` for regression.
    """
    y_true = np.asarray(y_true)
    output = np.asarray(output, dtype=np.float64)
    if task == "regression":
        err = output.reshape(-1) - y_true.astype(np.float64)
        var = float(np.var(y_true))
        mse = float(np.mean(err**2))
        return {
            "rmse": math.sqrt(mse),
            "mae": float(np.mean(np.abs(err))),
            "r2": 1.0 - mse / var if var > 0 else float("nan"),
        }
    n_classes = output.shape[1]
    proba = np.clip(output, 1e-15, 1.0)
    labels = y_true.astype(np.int64)
    picked = proba[np.arange(len(labels)), labels]
    metrics = {
        "log_loss": float(-np.mean(np.log(picked))),
        "accuracy": float(np.mean(np.argmax(output, axis=1) == labels)),
    }
    if task == "binary":
        metrics["roc_auc"] = roc_auc(labels, output[:, 1])
        metrics["brier"] = float(np.mean((output[:, 1] - labels) ** 2))
    elif n_classes > 2:
        per_class = [roc_auc((labels == k).astype(np.int64), output[:, k]) for k in range(n_classes)]
        finite = [v for v in per_class if not math.isnan(v)]
        metrics["macro_roc_auc"] = float(np.mean(finite)) if finite else float("nan")
    return metrics


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC AUC by the rank statistic (ties get average ranks); NaN with one class."""
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # 1-based ranks, ties sharing their average rank.
    _, inverse, counts = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.reshape(-1)]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def is_better(candidate: float, incumbent: float | None, higher_is_better: bool) -> bool:
    """Strictly better (NaN is never better; anything beats no incumbent or a NaN one)."""
    if candidate is None or math.isnan(candidate):
        return False
    if incumbent is None or math.isnan(incumbent):
        return True
    return candidate > incumbent if higher_is_better else candidate < incumbent


def run_key(*parts: object) -> str:
    """A short stable key (16 hex digits of sha256) for a training run.

    Callers pass what makes a run the same run: the data fingerprint, the family and its
    resolved params, the seed. A rerun with the same parts finds the same checkpoints.
    """
    import hashlib
    import json

    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """sha256 of arrays' shapes, dtypes and bytes: the data part of a run key."""
    import hashlib

    digest = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        digest.update(f"{arr.dtype.str}{arr.shape};".encode())
        digest.update(arr.data.cast("B"))
    return digest.hexdigest()
