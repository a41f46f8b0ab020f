"""The selection metrics helper (the gate's metrics live in the evaluation module)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from refit.metrics import metric_value
from refit.training.common import TrainingError, fingerprint_arrays, score


def test_roc_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)
    assert metric_value("roc_auc", y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metric_value("roc_auc", np.ones(5), np.arange(5)) is None


def test_score_binary_multiclass_regression() -> None:
    y = np.array([0, 1, 1, 0])
    p1 = np.array([0.2, 0.7, 0.6, 0.4])
    m = score("binary", y, np.stack([1 - p1, p1], axis=1))
    assert m["roc_auc"] == 1.0 and m["accuracy"] == 1.0 and m["pr_auc"] == 1.0
    assert m["log_loss"] == pytest.approx(log_loss(y, p1))
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    m = score("multiclass", np.array([0, 1, 1]), proba)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["log_loss"] == pytest.approx(log_loss([0, 1, 1], proba, labels=[0, 1, 2]))
    m = score("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3)) and m["mae"] == pytest.approx(2 / 3)
    assert math.isnan(score("binary", np.ones(4), np.stack([1 - p1, p1], axis=1))["roc_auc"])
    with pytest.raises(TrainingError, match="NaN or infinite"):
        score("regression", np.array([1.0, 2.0]), np.array([1.0, np.nan]))


def test_fingerprint_arrays_sees_values_dtype_and_shape() -> None:
    a = np.arange(6, dtype=np.float32)
    assert fingerprint_arrays(a) == fingerprint_arrays(a.copy())
    assert fingerprint_arrays(a) != fingerprint_arrays(a.astype(np.float64))
    assert fingerprint_arrays(a) != fingerprint_arrays(a.reshape(2, 3))
    b = a.copy()
    b[0] = 1e-9
    assert fingerprint_arrays(a) != fingerprint_arrays(b)
