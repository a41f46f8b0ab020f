"""The metrics: one home for each metric's name, the task kinds it judges, its direction and
its function.

Model selection, the promotion gate, registration and decay all name their metric from
``METRICS`` and read its direction there, so a config's ``gate.primary_metric`` means the
same thing at every step. Every metric is computed on a *weights matrix*: ``W`` is
``(rows, k)`` and a metric returns ``(k,)`` values, one per weighting (the bootstrap's
resamples are columns of counts; ``None`` means unweighted). The ``kernel`` says how: from the
rows sorted by score (``auc``, ``ap``) or from weighted per-row sums (``sums``); the
bootstrap's specialised kernels in ``refit.evaluation`` dispatch on it. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

#: What a model learns. ``binary``: 0/1 labels (string labels through ``dataset.positive_class``);
#: ``multiclass``: class indices 0..K-1 into the model's classes (its artifact stores their order),
#: scored from ``(n, K)`` probability matrices; ``regression``: values.
Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = get_args(Task)

Kernel = Literal["auc", "ovr_auc", "ap", "sums"]

#: ``unit``: the metric lives on a scale of its own (AUC, accuracy, log loss, R², MAPE), so one
#: absolute tolerance suits every dataset. ``data``: it is in the target's units (RMSE, MAE),
#: so a tolerance that suits house prices is meaningless for bike counts: it is relative.
Scale = Literal["unit", "data"]

ECE_BINS = 10
#: Rows with |y| at or below this are left out of MAPE.
MAPE_EPS = float(np.finfo(np.float64).eps)
_LOG_EPS = float(np.finfo(np.float64).eps)  # sklearn's log_loss clipping
_THRESHOLD = 0.5  # accuracy and F1 predict the positive class at score >= 0.5


@dataclass(frozen=True)
class Metric:
    """One metric: what it is called, what it judges, which way is better, how it is computed."""

    name: str
    label: str  # for reports
    tasks: tuple[Task, ...]
    higher_is_better: bool
    kernel: Kernel
    scale: Scale = "unit"
    #: The task kinds whose gate uses this metric when the config names none.
    default_for: tuple[Task, ...] = ()

    def values(self, y: np.ndarray, s: np.ndarray, W: np.ndarray) -> np.ndarray:
        """``(k,)`` values on checked arrays (labels, scores, ``(n, k)`` weights)."""
        if len(y) == 0:
            return np.full(W.shape[1], np.nan)
        return _KERNELS[self.kernel](self.name, y, s, W)

    def task_of(self, score: Any) -> Task:
        """The task whose inputs ``score`` looks like: log loss and accuracy judge binary
        (one probability per row) and multiclass (an ``(n, K)`` matrix, K > 2) alike."""
        if len(self.tasks) == 1:
            return self.tasks[0]
        shape = np.shape(score)
        multi = len(shape) == 2 and (shape[1] > 2 or "binary" not in self.tasks)
        return "multiclass" if multi and "multiclass" in self.tasks else self.tasks[0]

    def is_better(self, candidate: float | None, incumbent: float | None) -> bool:
        """Strictly better (NaN is never better; anything beats no incumbent or a NaN one)."""
        if candidate is None or math.isnan(candidate):
            return False
        if incumbent is None or math.isnan(incumbent):
            return True
        return candidate > incumbent if self.higher_is_better else candidate < incumbent


_BINARY: tuple[Task, ...] = ("binary",)
_MULTICLASS: tuple[Task, ...] = ("multiclass",)
_CLASSES: tuple[Task, ...] = ("binary", "multiclass")
_REGRESSION: tuple[Task, ...] = ("regression",)

#: Every metric refit computes, by name.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("roc_auc", "ROC AUC", _BINARY, True, "auc", default_for=_BINARY),
        Metric("macro_roc_auc", "macro ROC AUC (one-vs-rest)", _MULTICLASS, True, "ovr_auc", default_for=_MULTICLASS),
        Metric("pr_auc", "PR AUC", _BINARY, True, "ap"),
        Metric("log_loss", "log loss", _CLASSES, False, "sums"),
        Metric("accuracy", "accuracy", _CLASSES, True, "sums"),
        Metric("f1", "F1", _BINARY, True, "sums"),
        Metric("brier", "Brier score", _BINARY, False, "sums"),
        Metric("ece", "ECE", _BINARY, False, "sums"),
        Metric("rmse", "RMSE", _REGRESSION, False, "sums", "data", default_for=_REGRESSION),
        Metric("mae", "MAE", _REGRESSION, False, "sums", "data"),
        Metric("r2", "R²", _REGRESSION, True, "sums"),
        Metric("mape", "MAPE", _REGRESSION, False, "sums"),
    )
}


def get_metric(name: str) -> Metric:
    """The metric called ``name``; a one-line ValueError naming the known ones otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


#: The metric a gate uses when the config names none (each metric's ``default_for``): the one
#: users of each task kind expect.
DEFAULT_METRIC: dict[str, str] = {task: m.name for m in METRICS.values() for task in m.default_for}


#: The gate's and decay's thresholds a config leaves unset, by the primary metric's scale: the
#: one home of these defaults. Absolute values are in the metric's units; ``relative`` ones are
#: fractions of the champion's (or the registered) value. A unit-scale metric keeps the familiar
#: AUC-sized numbers; a data-scale one (RMSE, MAE) is judged relative to the champion's error,
#: so an honest RMSE gain of 2.8 on a target of hundreds is no "leakage".
TOLERANCE_DEFAULTS: dict[Scale, dict[str, float | None]] = {
    "unit": {
        "max_segment_regression": 0.02,
        "max_relative_segment_regression": None,
        "max_improvement": 0.2,
        "max_relative_improvement": None,
        "decay_tolerance": 0.05,
        "decay_relative_tolerance": None,
    },
    "data": {
        "max_segment_regression": None,
        "max_relative_segment_regression": 0.05,
        "max_improvement": None,
        "max_relative_improvement": 0.8,
        "decay_tolerance": None,
        "decay_relative_tolerance": 0.10,
    },
}


def tolerance_defaults(metric: str) -> dict[str, float | None]:
    """The thresholds :data:`TOLERANCE_DEFAULTS` gives ``metric``'s scale."""
    return dict(TOLERANCE_DEFAULTS[get_metric(metric).scale])


def combined_tolerance(absolute: float | None, relative: float | None, base: float | None) -> float:
    """The loss tolerated: the larger of an absolute tolerance and a fraction of ``|base|``
    (a missing one counts as 0)."""
    rel = 0.0 if relative is None or base is None or math.isnan(base) else relative * abs(base)
    return max(0.0 if absolute is None else absolute, rel)


def metrics_for(task: str) -> tuple[str, ...]:
    """The metrics that judge ``task`` (empty for a task no metric judges yet)."""
    return tuple(m.name for m in METRICS.values() if task in m.tasks)


def check_task_metric(task: str, metric: str) -> None:
    """A one-line ValueError unless ``metric`` judges ``task``."""
    m = get_metric(metric)
    if task in m.tasks:
        return
    usable = metrics_for(task)
    if not usable:
        raise ValueError(f"no metric judges a {task} task yet")
    raise ValueError(f"{metric} does not judge a {task} task; choose from {', '.join(usable)}")


# --------------------------------------------------------------------------------------------
# Inputs


def _as_labels(task: str, y: Any, n_classes: int | None = None) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {arr.shape}")
    if task == "regression":
        out = arr.astype(np.float64)
        if not np.isfinite(out).all():
            raise ValueError("y has NaN or infinite values")
        return out
    if task == "multiclass":
        return _class_indices(arr, n_classes)
    if task != "binary":
        raise ValueError(f"no metric judges a {task!r} task")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    values = pd.unique(arr)
    if not set(values.tolist()) <= {0, 1}:
        raise ValueError(f"a binary task needs 0/1 labels, got values {sorted(map(str, values))[:5]}")
    return arr.astype(np.uint8)


def _class_indices(arr: np.ndarray, n_classes: int | None) -> np.ndarray:
    """Multiclass labels as they reach a metric: indices 0..K-1 into the scores' columns
    (:func:`align_classes` maps class labels to them)."""
    if arr.dtype.kind not in "iuf" or (len(arr) and not np.all(np.mod(arr, 1) == 0)):
        raise ValueError(
            "a multiclass metric needs class indices 0..K-1 (map class labels with refit.metrics.align_classes)"
        )
    out = arr.astype(np.intp)
    if len(out) and (out.min() < 0 or (n_classes is not None and out.max() >= n_classes)):
        raise ValueError(f"class indices must lie in 0..{(n_classes or 0) - 1}, got {out.min()}..{out.max()}")
    return out


def _as_scores(task: str, score: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(score, dtype=np.float64)
    if task == "binary" and arr.ndim == 2 and arr.shape[1] == 2:
        arr = arr[:, 1]  # predict_proba output: the positive class
    if task == "multiclass":
        if arr.ndim != 2 or len(arr) != n or arr.shape[1] < 2:
            raise ValueError(
                f"{name} must be an (n, K) probability matrix with n={n} and K >= 2, got shape {arr.shape}"
            )
    elif arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{name} must have one value per row ({n}), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return arr


def checked_inputs(task: str, y: Any, *scores: Any, names: tuple[str, ...] = ()) -> tuple[np.ndarray, list[np.ndarray]]:
    """Labels and scores as every metric reads them, checked: one row each, and for multiclass
    the same K columns in every score matrix and indices below K."""
    names = names or tuple(f"score {i + 1}" for i in range(len(scores)))
    n = len(np.asarray(y))
    mats = [_as_scores(task, s, n, name) for s, name in zip(scores, names, strict=True)]
    n_classes = None
    if task == "multiclass" and mats:
        widths = {m.shape[1] for m in mats}
        if len(widths) > 1:
            raise ValueError(f"the score matrices have different numbers of classes {sorted(widths)}: align them first")
        n_classes = widths.pop()
    return _as_labels(task, y, n_classes), mats


def class_key(value: Any) -> str:
    """How a class label is matched between data and a model's stored classes: by its text, so
    the int 1 of a parquet file and the 1 of ``model.json`` are one class."""
    return str(value.item() if isinstance(value, np.generic) else value)


def align_classes(
    labels: Any, outputs: Sequence[tuple[Sequence[Any], Any]], order: Sequence[Any] | None = None
) -> tuple[list[Any], np.ndarray, list[np.ndarray]]:
    """Multiclass labels and models' probabilities in one class order, for comparing them.

    Each model's probability columns are in its own class order (``classes`` of its artifact).
    The common order is the first model's classes, then those only a later model knows, then
    labels no model knows (sorted by text); a model gives probability 0 to a class it lacks, so
    a new class in production counts against it instead of being dropped.

    Args:
        labels: Class labels, one per row; missing ones (None/NaN) become NaN indices.
        outputs: ``(classes, (n, K) probabilities)`` of each model.
        order: A declared class order (``dataset.classes``): the classes it names come first,
            in its order, the others after them as above. The set of classes is the same.

    Returns:
        The classes, the labels as float indices into them (NaN where missing), and each
        model's ``(n, len(classes))`` probabilities.
    """
    raw = pd.Series(np.asarray(labels, dtype=object))
    present = raw.notna().to_numpy()
    classes: list[Any] = []
    column: dict[str, int] = {}
    for model_classes, _ in outputs:
        for c in model_classes:
            if class_key(c) not in column:
                column[class_key(c)] = len(classes)
                classes.append(c.item() if isinstance(c, np.generic) else c)
    keys = raw[present].map(class_key)
    for key in sorted(set(keys) - set(column)):
        column[key] = len(classes)
        classes.append(raw[present][keys == key].iloc[0])
    if order is not None:
        rank = {class_key(c): i for i, c in enumerate(order)}
        classes = sorted(classes, key=lambda c: rank.get(class_key(c), len(rank)))  # stable for the rest
        column = {class_key(c): i for i, c in enumerate(classes)}
    y = np.full(len(raw), np.nan)
    y[present] = keys.map(column).to_numpy(dtype=np.float64)
    mats = []
    for model_classes, proba in outputs:
        p = np.asarray(proba, dtype=np.float64)
        if p.ndim != 2 or p.shape != (len(raw), len(model_classes)):
            raise ValueError(
                f"probabilities must be (rows, classes) = ({len(raw)}, {len(model_classes)}), got shape {p.shape}"
            )
        out = np.zeros((len(raw), len(classes)))
        out[:, [column[class_key(c)] for c in model_classes]] = p
        mats.append(out)
    return classes, y, mats


def _as_weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.ones((n, 1))
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = w[:, None]
    if w.ndim != 2 or w.shape[0] != n:
        raise ValueError(f"weights must be (n,) or (n, k) with n={n}, got shape {w.shape}")
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("weights must be finite and non-negative")
    return w


# --------------------------------------------------------------------------------------------
# Metrics on a weights matrix: W is (rows, resamples); every function returns (resamples,).
# Ratio metrics are NaN where undefined (e.g. a resample with no positives).


def _tie_starts(sorted_scores: np.ndarray) -> np.ndarray:
    if len(sorted_scores) == 0:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])


def _auc_sorted(y_s: np.ndarray, starts: np.ndarray, W_s: np.ndarray) -> np.ndarray:
    """Weighted ROC AUC, rows sorted by ascending score; tied pairs count one half."""
    Wp = W_s * y_s[:, None]
    Wn = W_s - Wp
    Pg = np.add.reduceat(Wp, starts, axis=0)
    Ng = np.add.reduceat(Wn, starts, axis=0)
    below = _cumsum_rows(Ng, np.float64) - Ng
    num = (Pg * (below + 0.5 * Ng)).sum(axis=0)
    den = Pg.sum(axis=0) * Ng.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _ap_sorted(y_s: np.ndarray, starts: np.ndarray, W_s: np.ndarray) -> np.ndarray:
    """Average precision (sklearn's step-wise definition), rows sorted by descending score."""
    Wp = W_s * y_s[:, None]
    TPg = np.add.reduceat(Wp, starts, axis=0)
    Ag = np.add.reduceat(W_s, starts, axis=0)
    TP = _cumsum_rows(TPg, np.float64)
    A = _cumsum_rows(Ag, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(A > 0, TP / np.where(A > 0, A, 1.0), 0.0)
        total = TP[-1]
        return np.where(total > 0, (TPg * precision).sum(axis=0) / np.where(total > 0, total, 1.0), np.nan)


def _sum_features(metric: str, y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-row columns whose weighted sums determine the metric, and ECE's bin of each row.

    Multiclass (``s`` an ``(n, K)`` matrix, ``y`` class indices): log loss is the clipped
    probability of the true class, accuracy the argmax (first of tied maxima) against it.
    """
    if s.ndim == 2:
        rows = np.arange(len(y))
        yi = y.astype(np.intp)
        one2 = np.ones(len(y))
        if metric == "log_loss":
            return np.column_stack([one2, -np.log(np.clip(s[rows, yi], _LOG_EPS, 1 - _LOG_EPS))]), None
        if metric == "accuracy":
            return np.column_stack([one2, (np.argmax(s, axis=1) == yi).astype(np.float64)]), None
        raise ValueError(f"{metric!r} does not judge a multiclass task")
    one = np.ones_like(s)
    if metric == "log_loss":
        p = np.clip(s, _LOG_EPS, 1 - _LOG_EPS)
        return np.column_stack([one, -(y * np.log(p) + (1 - y) * np.log1p(-p))]), None
    if metric == "brier":
        return np.column_stack([one, (s - y) ** 2]), None
    if metric in ("accuracy", "f1"):
        pred = (s >= _THRESHOLD).astype(np.float64)
        yf = y.astype(np.float64)
        if metric == "accuracy":
            return np.column_stack([one, (pred == yf).astype(np.float64)]), None
        return np.column_stack([pred * yf, pred * (1 - yf), (1 - pred) * yf]), None
    if metric == "ece":
        bins = np.minimum((np.clip(s, 0.0, 1.0) * ECE_BINS).astype(np.intp), ECE_BINS - 1)
        return np.column_stack([one, s, y.astype(np.float64)]), bins
    err = s - y
    if metric == "rmse":
        return np.column_stack([one, err**2]), None
    if metric == "mae":
        return np.column_stack([one, np.abs(err)]), None
    if metric == "r2":
        return np.column_stack([one, y, y**2, err**2]), None
    if metric == "mape":
        ok = np.abs(y) > MAPE_EPS
        ape = np.where(ok, np.abs(err) / np.where(ok, np.abs(y), 1.0), 0.0)
        return np.column_stack([ok.astype(np.float64), ape]), None
    raise ValueError(f"{metric!r} is not a sum-based metric")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _finalize(metric: str, S: np.ndarray) -> np.ndarray:
    """Metric from weighted sums S of shape (bins, features, resamples)."""
    if metric == "ece":
        total = S[:, 0].sum(axis=0)
        return _ratio(np.abs(S[:, 2] - S[:, 1]).sum(axis=0), total)
    S = S.sum(axis=0)
    if metric in ("log_loss", "brier", "accuracy", "mae", "mape"):
        return _ratio(S[1], S[0])
    if metric == "rmse":
        return np.asarray(np.sqrt(_ratio(S[1], S[0])))
    if metric == "f1":
        tp, fp, fn = S
        return _ratio(2 * tp, 2 * tp + fp + fn)
    if metric == "r2":
        w, sy, syy, sse = S
        sst = syy - _ratio(sy**2, w)
        tol = 1e-12 * np.maximum(syy, 1e-300)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((w > 0) & (sst > tol), 1 - sse / np.where(sst > tol, sst, 1.0), np.nan)
    raise ValueError(f"{metric!r} is not a sum-based metric")


def _sums(F: np.ndarray, bins: np.ndarray | None, W: np.ndarray) -> np.ndarray:
    if bins is None:
        return np.asarray(F.T @ W)[None]
    S = np.zeros((ECE_BINS, F.shape[1], W.shape[1]))
    for b in np.unique(bins):
        rows = bins == b
        S[b] = F[rows].T @ W[rows]
    return S


def _auc(name: str, y: np.ndarray, s: np.ndarray, W: np.ndarray) -> np.ndarray:
    order = np.argsort(s, kind="stable")
    return _auc_sorted(y[order], _tie_starts(s[order]), W[order])


def _ovr_auc(name: str, y: np.ndarray, s: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Macro one-vs-rest ROC AUC: each class's AUC against the rest, averaged over the classes
    a weighting leaves defined (those with rows in and out of the class). With every class
    present this is sklearn's ``roc_auc_score(multi_class="ovr", average="macro")``; a segment
    or resample without some class is judged on the others instead of being undefined."""
    per_class = np.stack([_auc(name, (y == k).astype(np.uint8), s[:, k], W) for k in range(s.shape[1])])
    return macro_mean(per_class)


def macro_mean(per_class: np.ndarray) -> np.ndarray:
    """The mean over axis 0 of the finite values (NaN where none is)."""
    finite = np.isfinite(per_class)
    count = finite.sum(axis=0)
    total = np.where(finite, per_class, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _ap(name: str, y: np.ndarray, s: np.ndarray, W: np.ndarray) -> np.ndarray:
    order = np.argsort(-s, kind="stable")
    return _ap_sorted(y[order], _tie_starts(-s[order]), W[order])


def _sum_metric(name: str, y: np.ndarray, s: np.ndarray, W: np.ndarray) -> np.ndarray:
    F, bins = _sum_features(name, y.astype(np.float64), s)
    return _finalize(name, _sums(F, bins, W))


_KERNELS: dict[Kernel, Callable[[str, np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "auc": _auc,
    "ovr_auc": _ovr_auc,
    "ap": _ap,
    "sums": _sum_metric,
}


def metric_values(
    metric: str, y_true: Any, y_score: Any, weights: Any = None, *, task: Task | None = None
) -> np.ndarray:
    """One metric under many weightings at once.

    Args:
        metric: A name from ``METRICS``.
        y_true: Labels (0/1; class indices for multiclass) or values.
        y_score: Positive-class probabilities (binary), ``(n, K)`` probabilities (multiclass)
            or predictions.
        weights: ``(n,)`` or ``(n, k)``: each column is one weighting (a bootstrap resample is
            a column of counts). None means unweighted.
        task: The task judged (default: the one ``y_score``'s shape fits, see ``Metric.task_of``).

    Returns:
        ``(k,)`` metric values; NaN where a column leaves the metric undefined.
    """
    m = get_metric(metric)
    task = task or m.task_of(y_score)
    check_task_metric(task, metric)
    y, (s,) = checked_inputs(task, y_true, y_score, names=("y_score",))
    return m.values(y, s, _as_weights(weights, len(y)))


def metric_value(metric: str, y_true: Any, y_score: Any, *, task: Task | None = None) -> float | None:
    """One unweighted metric value; None where the data leave it undefined."""
    value = float(metric_values(metric, y_true, y_score, task=task)[0])
    return value if math.isfinite(value) else None


def compute_metrics(task: Task, y_true: Any, y_score: Any, weights: Any = None) -> dict[str, float | None]:
    """All metrics of a task (see ``metrics_for``), optionally weighted per row.

    Binary: ``y_score`` is the positive-class probability; accuracy and F1 predict positive at
    ``score >= 0.5``; ECE is the 10-bin calibration error of that probability. Multiclass:
    ``y_true`` holds class indices into the columns of the ``(n, K)`` ``y_score``. MAPE uses only
    rows with ``|y| > MAPE_EPS``. A metric that is undefined on the data (one class only, no
    usable MAPE row, constant ``y`` for R²) is None.
    """
    names = metrics_for(task)
    if not names:
        raise ValueError(f"no metric judges a {task!r} task")
    y, (s,) = checked_inputs(task, y_true, y_score, names=("y_score",))
    w = _as_weights(None if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1), len(y))
    out: dict[str, float | None] = {}
    with one_blas_thread():
        for name in names:
            value = float(METRICS[name].values(y, s, w)[0])
            out[name] = value if math.isfinite(value) else None
    return out


def one_blas_thread() -> Any:
    """Our matmuls are small and many: BLAS's own threads only fight over the cores (we measured
    100x slowdowns on a busy 2-core machine). The bootstrap parallelises over resamples instead."""
    return threadpool_limits(limits=1, user_api="blas")


def _cumsum_rows(X: np.ndarray, dtype: Any, block: int = 32) -> np.ndarray:
    """Inclusive cumulative sum down the rows, vectorised across columns.

    numpy's own ``cumsum(axis=0)`` walks each column separately and is several times slower.
    """
    n_rows = X.shape[0]
    if n_rows < 2 * block:
        return np.cumsum(X, axis=0, dtype=dtype)
    nb = -(-n_rows // block)
    Y = np.zeros((nb * block,) + X.shape[1:], dtype=dtype)
    Y[:n_rows] = X
    Z = Y.reshape(nb, block, *X.shape[1:])
    for i in range(1, block):
        np.add(Z[:, i], Z[:, i - 1], out=Z[:, i])
    totals = Z[:, -1].copy()
    Z += (np.cumsum(totals, axis=0) - totals)[:, None]
    return Y[:n_rows]
