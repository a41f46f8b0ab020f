"""scikit-learn families on the shared preprocessing output."""

from __future__ import annotations

import numpy as np
import pytest

from refit.config import TrainingConfig
from refit.errors import ConfigError
from refit.training.sklearn_models import design_matrix, predict_sklearn, resolve_params, train_sklearn
from tests.unit.test_training_torch import arrays
from tests.unit.training_frames import CHURN_FEATURES, churn_frame, multiclass_frame, regression_frame

CFG = TrainingConfig(seed=11, num_threads=1)
HGB = {"max_iter": 30}


@pytest.fixture(scope="module")
def churn():  # type: ignore[no-untyped-def]
    return arrays(churn_frame(800), CHURN_FEATURES, "churned")


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "linear"])
def test_binary(churn, family: str) -> None:  # type: ignore[no-untyped-def]
    pre, data = churn
    result = train_sklearn(family, *data, "binary", 2, HGB if family != "linear" else {}, CFG,
                           cardinalities=pre.cardinalities)  # fmt: skip
    assert result.val_metrics["roc_auc"] > 0.7
    proba = result.predict_output(data[3], data[4])
    assert proba.shape == (len(data[5]), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert result.train_s > 0 and result.peak_memory_bytes > 0


def test_hgb_uses_native_categoricals_and_early_stopping(churn) -> None:  # type: ignore[no-untyped-def]
    pre, data = churn
    result = train_sklearn("hist_gradient_boosting", *data, "binary", 2, {"max_iter": 500}, CFG,
                           cardinalities=pre.cardinalities)  # fmt: skip
    n_num = data[0].shape[1]
    mask = result.estimator.categorical_features
    assert mask.tolist() == [False] * n_num + [True] * len(pre.cardinalities)
    assert result.estimator.n_iter_ < 500  # stopped on the validation split


def test_hgb_high_cardinality_falls_back_to_ordinal(churn) -> None:  # type: ignore[no-untyped-def]
    pre, data = churn
    cards = [cards + 300 for cards in pre.cardinalities]
    result = train_sklearn("hist_gradient_boosting", *data, "binary", 2, HGB, CFG, cardinalities=cards)
    assert result.estimator.categorical_features is None


def test_linear_one_hot_encodes_inside_its_pipeline(churn) -> None:  # type: ignore[no-untyped-def]
    pre, data = churn
    result = train_sklearn("linear", *data, "binary", 2, {"C": 0.5}, CFG, cardinalities=pre.cardinalities)
    encoder = result.estimator.named_steps["encode"].named_transformers_["onehot"]
    assert [len(c) for c in encoder.categories_] == pre.cardinalities
    # an index never seen in training (unknown bucket unused) still predicts
    xc = data[4].copy()
    xc[:, 0] = 0
    assert np.isfinite(predict_sklearn(result.estimator, data[3], xc, "binary")).all()


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "linear"])
def test_multiclass_and_regression(family: str) -> None:
    classes = np.array(["high", "low", "mid"])
    _, data = arrays(multiclass_frame(600), ["x", "z", "color"], "label", classes)
    result = train_sklearn(family, *data, "multiclass", 3, HGB if family != "linear" else {}, CFG)
    assert result.predict_output(data[3], data[4]).shape == (len(data[5]), 3)
    assert result.val_metrics["accuracy"] > 0.6
    _, data = arrays(regression_frame(600), ["a", "b", "kind"], "y")
    result = train_sklearn(family, *data, "regression", 0, HGB if family != "linear" else {}, CFG)
    assert result.predict_output(data[3], data[4]).shape == (len(data[5]),)
    assert result.val_metrics["rmse"] < 0.5 * float(np.std(data[5]))


def test_hgb_same_seed_same_predictions(churn) -> None:  # type: ignore[no-untyped-def]
    _, data = churn
    params = {"max_iter": 20, "early_stopping": False}
    a = train_sklearn("hist_gradient_boosting", *data, "binary", 2, params, CFG)
    b = train_sklearn("hist_gradient_boosting", *data, "binary", 2, params, CFG)
    np.testing.assert_array_equal(a.predict_output(data[3], data[4]), b.predict_output(data[3], data[4]))


def test_params_are_checked() -> None:
    assert resolve_params("linear", {"C": 2})["C"] == 2
    with pytest.raises(ConfigError, match="unknown hist_gradient_boosting params: depth"):
        resolve_params("hist_gradient_boosting", {"depth": 3})
    with pytest.raises(ConfigError, match="unknown scikit-learn family 'xgb'"):
        resolve_params("xgb", {})


def test_design_matrix_appends_categorical_indices() -> None:
    x = design_matrix(np.array([[0.5]], dtype=np.float32), np.array([[3, 1]]))
    assert x.tolist() == [[0.5, 3.0, 1.0]] and x.dtype == np.float64


def test_hgb_on_a_float32_matrix_is_the_float64_model(churn, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Half the input memory for HistGradientBoosting, and not a bit of difference in the model."""
    from refit.training import sklearn_models

    pre, data = churn
    params = {"max_iter": 40, "early_stopping": True}
    fit32 = train_sklearn("hist_gradient_boosting", *data, "binary", 2, params, CFG, cardinalities=pre.cardinalities)
    assert sklearn_models._matrix_dtype(fit32.estimator) is np.float32  # the path under test
    assert (
        sklearn_models._matrix_dtype(sklearn_models._build("linear", "binary", resolve_params("linear", {}), 2, [3], 0))
        is np.float64
    )
    monkeypatch.setattr(sklearn_models, "_matrix_dtype", lambda estimator: np.float64)
    fit64 = train_sklearn("hist_gradient_boosting", *data, "binary", 2, params, CFG, cardinalities=pre.cardinalities)
    assert fit32.estimator.n_iter_ == fit64.estimator.n_iter_
    np.testing.assert_array_equal(fit32.predict_output(data[3], data[4]), fit64.predict_output(data[3], data[4]))
    assert fit32.val_metrics == fit64.val_metrics
    assert design_matrix(data[0], data[1], np.float32).astype(np.float64).tolist() == design_matrix(*data[:2]).tolist()
