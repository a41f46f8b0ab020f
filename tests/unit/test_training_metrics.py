"""The selection metrics helper (the gate's metrics live in the evaluation module)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from refit.training.common import fingerprint_arrays, is_better, primary_metric, roc_auc, score


def test_roc_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert math.isnan(roc_auc(np.ones(5), np.arange(5)))


def test_score_binary_multiclass_regression() -> None:
    y = np.array([0, 1, 1, 0])
    p1 = np.array([0.2, 0.7, 0.6, 0.4])
    m = score("binary", y, np.stack([1 - p1, p1], axis=1))
    assert m["roc_auc"] == 1.0 and m["accuracy"] == 1.0
    assert m["log_loss"] == pytest.approx(log_loss(y, p1))
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    m = score("multiclass", np.array([0, 1, 1]), proba)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["log_loss"] == pytest.approx(log_loss([0, 1, 1], proba, labels=[0, 1, 2]))
    m = score("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3)) and m["mae"] == pytest.approx(2 / 3)


def test_primary_metric_and_is_better() -> None:
    assert primary_metric("binary") == ("roc_auc", True)
    assert primary_metric("multiclass") == ("log_loss", False)
    assert primary_metric("regression") == ("rmse", False)
    assert is_better(0.8, 0.7, True) and not is_better(0.7, 0.7, True) and is_better(0.6, 0.7, False)
    assert is_better(0.1, None, True) and is_better(0.1, float("nan"), True)
    assert not is_better(float("nan"), 0.5, True)


def test_fingerprint_arrays_sees_values_dtype_and_shape() -> None:
    a = np.arange(6, dtype=np.float32)
    assert fingerprint_arrays(a) == fingerprint_arrays(a.copy())
    assert fingerprint_arrays(a) != fingerprint_arrays(a.astype(np.float64))
    assert fingerprint_arrays(a) != fingerprint_arrays(a.reshape(2, 3))
    b = a.copy()
    b[0] = 1e-9
    assert fingerprint_arrays(a) != fingerprint_arrays(b)
