"""scikit-learn families on the same preprocessing output as the MLP.

Every estimator takes one float matrix: ``X_num`` followed by the categorical indices of
``X_cat`` (as floats). HistGradientBoosting treats those trailing columns as categorical
(natively); the linear baseline one-hot encodes them inside its own Pipeline, so the fitted
object is a single sklearn estimator that skops can store without pickle.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits

from refit.config import TrainingConfig
from refit.errors import ConfigError
from refit.training.common import Task, TrainingError, score

FAMILIES = ("hist_gradient_boosting", "linear")

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "hist_gradient_boosting": {
        "learning_rate": 0.1,
        "max_iter": 200,
        "max_leaf_nodes": 31,
        "max_depth": None,
        "min_samples_leaf": 20,
        "l2_regularization": 0.0,
        "max_bins": 255,
        "early_stopping": True,
        "n_iter_no_change": 10,
    },
    "linear": {
        "C": 1.0,  # classification: inverse regularisation of LogisticRegression
        "alpha": 1.0,  # regression: Ridge penalty
        "max_iter": 1000,
    },
}


def resolve_params(family: str, params: dict[str, Any] | None) -> dict[str, Any]:
    if family not in DEFAULT_PARAMS:
        raise ConfigError(f"unknown scikit-learn family {family!r} (known: {', '.join(FAMILIES)})")
    params = dict(params or {})
    known = DEFAULT_PARAMS[family]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"unknown {family} params: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return {**known, **params}


def design_matrix(x_num: np.ndarray, x_cat: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """``[X_num | X_cat as float]``: the one input every scikit-learn family takes.

    ``float32`` loses nothing (``X_num`` is float32 already, category codes are small
    integers): HistGradientBoosting is given float32, half the memory of its input, and makes
    the same float64 values from it as from a float64 matrix.
    """
    n_num = x_num.shape[1]
    out = np.empty((x_num.shape[0], n_num + x_cat.shape[1]), dtype=dtype)
    out[:, :n_num] = x_num  # filled in place: no float64 copy of each part beside the result
    out[:, n_num:] = x_cat
    return out


@dataclass
class SklearnResult:
    """A fitted estimator and how training went."""

    estimator: Any
    family: str
    task: Task
    n_classes: int
    params: dict[str, Any]
    val_metrics: dict[str, float]
    train_s: float
    wall_s: float
    samples_per_s: float
    peak_memory_bytes: int
    history: list[dict[str, Any]] = field(default_factory=list)

    def predict_output(self, x_num: np.ndarray, x_cat: np.ndarray) -> np.ndarray:
        return predict_sklearn(self.estimator, x_num, x_cat, self.task)


def predict_sklearn(estimator: Any, x_num: np.ndarray, x_cat: np.ndarray, task: Task) -> np.ndarray:
    """Probabilities ``[n, K]`` (classification) or values ``[n]`` (regression)."""
    x = design_matrix(x_num, x_cat, _matrix_dtype(estimator))
    if task == "regression":
        return np.asarray(estimator.predict(x), dtype=np.float64)
    return np.asarray(estimator.predict_proba(x), dtype=np.float64)


def _matrix_dtype(estimator: Any) -> type:
    """float32 where the family turns it into exactly the float64 a float64 matrix gives (the
    linear models would fit in float32 instead)."""
    hgb = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
    return np.float32 if isinstance(estimator, hgb) else np.float64


def _build(
    family: str,
    task: Task,
    params: dict[str, Any],
    n_num: int,
    cardinalities: list[int],
    seed: int,
) -> Any:
    n_cat = len(cardinalities)
    if family == "hist_gradient_boosting":
        max_bins = int(params["max_bins"])
        # Native categorical splits need at most max_bins categories; larger vocabularies
        # fall back to ordinal codes.
        mask = [False] * n_num + [card <= max_bins for card in cardinalities]
        kwargs = dict(
            learning_rate=float(params["learning_rate"]),
            max_iter=int(params["max_iter"]),
            max_leaf_nodes=None if params["max_leaf_nodes"] is None else int(params["max_leaf_nodes"]),
            max_depth=None if params["max_depth"] is None else int(params["max_depth"]),
            min_samples_leaf=int(params["min_samples_leaf"]),
            l2_regularization=float(params["l2_regularization"]),
            max_bins=max_bins,
            categorical_features=np.array(mask, dtype=bool) if any(mask) else None,
            early_stopping=bool(params["early_stopping"]),
            n_iter_no_change=int(params["n_iter_no_change"]),
            random_state=seed,
        )
        cls = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
        return cls(**kwargs)
    if task == "regression":
        model: Any = Ridge(alpha=float(params["alpha"]), random_state=seed)
    else:
        model = LogisticRegression(C=float(params["C"]), max_iter=int(params["max_iter"]), random_state=seed)
    if n_cat == 0:
        return Pipeline([("model", model)])
    onehot = OneHotEncoder(
        categories=[np.arange(card, dtype=np.float64) for card in cardinalities],
        handle_unknown="ignore",
        sparse_output=True,
    )
    encode = ColumnTransformer(
        [("onehot", onehot, list(range(n_num, n_num + n_cat)))], remainder="passthrough", sparse_threshold=1.0
    )
    return Pipeline([("encode", encode), ("model", model)])


def train_sklearn(
    family: str,
    x_num: np.ndarray,
    x_cat: np.ndarray,
    y: np.ndarray,
    x_num_val: np.ndarray,
    x_cat_val: np.ndarray,
    y_val: np.ndarray,
    task: Task,
    n_classes: int,
    params: dict[str, Any] | None,
    cfg: TrainingConfig,
    *,
    cardinalities: list[int] | None = None,
    seed: int | None = None,
) -> SklearnResult:
    """Fit ``hist_gradient_boosting`` or ``linear`` and score it on the validation split.

    HistGradientBoosting stops early on the validation split (as the MLP does).
    """
    wall_start = time.perf_counter()
    p = resolve_params(family, params)
    seed = cfg.seed if seed is None else int(seed)
    if cardinalities is None:
        cardinalities = [
            int(max(x_cat[:, j].max(initial=0), x_cat_val[:, j].max(initial=0))) + 1 for j in range(x_cat.shape[1])
        ]
    estimator = _build(family, task, p, x_num.shape[1], cardinalities, seed)
    dtype = _matrix_dtype(estimator)
    x = design_matrix(x_num, x_cat, dtype)
    x_val = design_matrix(x_num_val, x_cat_val, dtype)
    y_fit = y.astype(np.float64) if task == "regression" else y.astype(np.int64)
    y_fit_val = y_val.astype(np.float64) if task == "regression" else y_val.astype(np.int64)
    limit = threadpool_limits(cfg.num_threads) if cfg.num_threads else contextlib.nullcontext()
    start = time.perf_counter()
    try:
        with limit:
            if family == "hist_gradient_boosting" and p["early_stopping"]:
                estimator.fit(x, y_fit, X_val=x_val, y_val=y_fit_val)
            else:
                estimator.fit(x, y_fit)
    except ValueError as exc:
        raise TrainingError(f"{family} failed to fit: {str(exc).splitlines()[0]}") from None
    train_s = time.perf_counter() - start
    output = predict_sklearn(estimator, x_num_val, x_cat_val, task)
    if task != "regression" and output.shape[1] != n_classes:
        raise TrainingError(f"{family} saw {output.shape[1]} classes in training, expected {n_classes}")
    metrics = score(task, y_val, output)
    history = []
    if family == "hist_gradient_boosting":
        n_iter = int(getattr(estimator, "n_iter_", 0))
        history = [{"iteration": n_iter, **{f"val_{k}": v for k, v in metrics.items()}}]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return SklearnResult(
        estimator=estimator,
        family=family,
        task=task,
        n_classes=int(n_classes) if task != "regression" else 0,
        params=p,
        val_metrics=metrics,
        train_s=train_s,
        wall_s=time.perf_counter() - wall_start,
        samples_per_s=len(y) / train_s if train_s > 0 else float("nan"),
        peak_memory_bytes=int(peak if sys.platform == "darwin" else peak * 1024),
        history=history,
    )
