"""What every trainer shares: the error type, validation scores, and run keys.

The task kinds and the metrics (name, direction, function) live in ``refit.metrics``; the
validation scores here are those metrics on each trial's validation split, so selection reads
the gate's own ``primary_metric``.
"""

from __future__ import annotations

import math

import numpy as np

from refit.errors import RefitError
from refit.metrics import Task, compute_metrics

__all__ = ["Task", "TrainingError", "fingerprint_arrays", "run_key", "score"]


class TrainingError(RefitError):
    """Training could not produce a usable model (diverged, no data, every trial failed)."""


def score(task: Task, y_true: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Validation metrics from model output (NaN where a metric is undefined).

    Every model gets every metric of its task (``refit.metrics.metrics_for``), so selection
    reads the gate's own ``primary_metric`` whatever the task.

    Args:
        task: The task kind.
        y_true: Class indices (0..K-1) for classification, values for regression.
        output: Probabilities ``[n, K]`` for classification, predictions ``[n]`` for regression.
    """
    y_true = np.asarray(y_true)
    output = np.asarray(output, dtype=np.float64)
    if not np.isfinite(output).all():
        raise TrainingError("the model's validation output has NaN or infinite values")
    if task == "regression":
        values = compute_metrics(task, y_true.astype(np.float64), output.reshape(-1))
    elif task == "binary":
        values = compute_metrics(task, y_true.astype(np.int64), output[:, 1])
    else:
        values = compute_metrics(task, y_true.astype(np.int64), output)
    return {name: math.nan if v is None else float(v) for name, v in values.items()}


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
