"""Hyper-parameter search over the configured families; the best trial becomes the candidate.

A candidate's ``params`` mix three kinds of values: a list is a grid of values, a mapping
``{low, high[, log][, int]}`` is a range (random and optuna search), anything else is fixed. ``grid``
search walks the grid in a fixed order (keys sorted, values as written) up to ``budget``
trials; ``random`` draws ``budget`` configurations from a generator seeded by the run seed;
``optuna`` asks a seeded TPE sampler for up to ``budget`` (and within ``time_budget_s``), pruning
torch trials on their per-epoch validation metric (:mod:`refit.training.optuna_search`), in a
study of its own or, with ``training.search_storage``, one shared by every worker of the search.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch

from refit.config import CandidateSpec, PipelineConfig, TrainingConfig
from refit.errors import ConfigError, DataError
from refit.io.base import Store
from refit.metrics import Metric, Task, get_metric
from refit.model import FittedModel, frame_dtypes
from refit.preprocessing import Preprocessor, infer_columns
from refit.training.checkpoint import CheckpointSink
from refit.training.common import TrainingError, fingerprint_arrays, run_key

_RANGE_KEYS = {"low", "high", "log", "int"}
_RUN_SETTINGS = ("seed", "max_epochs", "batch_size", "patience", "mixed_precision", "max_grad_norm")


def is_range(value: Any) -> bool:
    """Whether a candidate's param is a range ``{low, high[, log][, int]}`` (not a grid or a fixed value)."""
    return isinstance(value, dict) and {"low", "high"} <= set(value) and set(value) <= _RANGE_KEYS


@dataclass(frozen=True)
class ParamRange:
    """A range param, read once for every search that draws from it (random, optuna).

    An integer range holds the integers within its bounds (``ceil(low)`` to ``floor(high)``).
    """

    low: float
    high: float
    log: bool
    integer: bool

    @classmethod
    def of(cls, value: Any) -> ParamRange | None:
        """The range ``value`` describes, or None when it is a grid or a fixed value."""
        if not is_range(value):
            return None
        integer = bool(value.get("int"))
        low, high = float(value["low"]), float(value["high"])
        if integer:
            low, high = float(math.ceil(low)), float(math.floor(high))
        return cls(low=low, high=high, log=bool(value.get("log")), integer=integer)


def search_seed(seed: int, family: str, *more: int) -> np.random.SeedSequence:
    """The search's one seeding scheme: the run seed and the family, then what one draw adds.

    Random search draws a family's trials from ``default_rng(search_seed(seed, family))``;
    Optuna's sampler is seeded per trial from ``search_seed(seed, family, trial_number)``, so
    one worker repeats its study and workers sharing a study never draw the same start-up trial.
    """
    return np.random.SeedSequence([seed, _family_salt(family), *more])


def expand_params(spec: CandidateSpec, seed: int) -> list[dict[str, Any]]:
    """The trial configurations of one candidate, in a deterministic order."""
    params = dict(spec.params)
    for name, value in params.items():
        if isinstance(value, dict) and not is_range(value):
            raise ConfigError(f"{spec.family}.params.{name}: a mapping must be a range {{low, high[, log][, int]}}")
        if is_range(value):
            if value["low"] > value["high"]:
                raise ConfigError(f"{spec.family}.params.{name}: low must not exceed high")
            if value.get("log") and value["low"] <= 0:
                raise ConfigError(f"{spec.family}.params.{name}: a log range needs low > 0")
        if isinstance(value, list) and not value:
            raise ConfigError(f"{spec.family}.params.{name}: an empty list has nothing to try")
    names = sorted(params)
    ranges = [n for n in names if is_range(params[n])]
    grid_axes = [params[n] if isinstance(params[n], list) else [params[n]] for n in names]

    if spec.search == "optuna":
        # The study asks as it goes; one configuration (ranges at their low end) checks the names.
        return [{n: _low(params[n]) for n in names}]
    if spec.search == "grid":
        if ranges:
            raise ConfigError(
                f"{spec.family}.params.{', '.join(ranges)}: ranges need search: random (grid takes lists)"
            )
        combos = itertools.islice(itertools.product(*grid_axes), spec.budget)
        return [dict(zip(names, combo, strict=True)) for combo in combos]

    # Random search: without ranges and with a grid no larger than the budget, the grid is the answer.
    if not ranges and math.prod(len(a) for a in grid_axes) <= spec.budget:
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid_axes)]
    rng = np.random.default_rng(search_seed(seed, spec.family))
    trials: list[dict[str, Any]] = []
    seen: set[str] = set()
    attempts = 0
    while len(trials) < spec.budget and attempts < spec.budget * 50:
        attempts += 1
        trial = {name: _draw(params[name], rng) for name in names}
        key = run_key(trial)
        if key in seen:
            continue
        seen.add(key)
        trials.append(trial)
    return trials


def _low(value: Any) -> Any:
    if isinstance(value, list):
        return value[0]
    bounds = ParamRange.of(value)
    if bounds is not None:
        return int(bounds.low) if bounds.integer else bounds.low
    return value


def _family_salt(family: str) -> int:
    return int(run_key(family)[:8], 16)


def _draw(value: Any, rng: np.random.Generator) -> Any:
    if isinstance(value, list):
        return value[int(rng.integers(len(value)))]
    bounds = ParamRange.of(value)
    if bounds is None:
        return value
    low, high = bounds.low, bounds.high
    if bounds.integer:
        if bounds.log:
            return int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
        return int(rng.integers(int(low), int(high) + 1))
    if bounds.log:
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))


@dataclass
class Trial:
    """One trained configuration and how it scored on the validation split."""

    index: int
    family: str
    params: dict[str, Any]
    status: str  # "ok" | "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    primary: float | None = None
    train_s: float = 0.0
    wall_s: float = 0.0
    run_key: str = ""
    resolved_params: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    best_epoch: int | None = None
    resumed_from_epoch: int | None = None
    samples_per_s: float | None = None
    error: str | None = None
    #: Per-epoch (torch) or final (scikit-learn) train/validation metrics, for charts.
    history: list[dict[str, Any]] = field(default_factory=list)
    peak_memory_bytes: int | None = None
    device: str | None = None
    #: Optuna's record of the trial (number, state) when the family used ``search: optuna``.
    study: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    """Every trial, and the best one as a fitted model."""

    best: FittedModel
    best_trial: Trial
    trials: list[Trial]
    task: Task
    primary_metric: str
    higher_is_better: bool
    data_fingerprint: str


@dataclass
class PreparedData:
    """Preprocessed training and validation arrays plus what it took to make them."""

    preprocessor: Preprocessor
    task: Task
    classes: list[Any] | None
    x_num: np.ndarray
    x_cat: np.ndarray
    y: np.ndarray
    x_num_val: np.ndarray
    x_cat_val: np.ndarray
    y_val: np.ndarray
    feature_columns: list[str]
    feature_dtypes: dict[str, str]
    fingerprint: str


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def prepare_data(train_df: pd.DataFrame, val_df: pd.DataFrame, config: PipelineConfig) -> PreparedData:
    """Fit preprocessing on the training split and encode both splits and the target."""
    target = config.dataset.target
    features = config.feature_columns
    for name, df in (("training", train_df), ("validation", val_df)):
        if target not in df.columns:
            raise DataError(f"{name} frame has no target column {target!r}")
        if len(df) == 0:
            raise DataError(f"{name} frame is empty")
        if df[target].isna().any():
            raise DataError(f"{name} frame has {int(df[target].isna().sum())} missing target values")
    numeric, categorical = infer_columns(train_df, features)
    pre = Preprocessor.fit(train_df, numeric, categorical)
    x_num, x_cat = pre.transform(train_df)
    x_num_val, x_cat_val = pre.transform(val_df)
    classes: list[Any] | None = None
    task = config.dataset.task
    if task == "regression":
        try:
            y = train_df[target].to_numpy(dtype=np.float64)
            y_val = val_df[target].to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"regression target {target!r} must be numeric") from None
        if not (np.isfinite(y).all() and np.isfinite(y_val).all()):
            raise DataError(f"regression target {target!r} has infinite values")
    else:
        positive = config.dataset.positive_class
        if task == "binary" and positive is None:
            _check_binary_labels(target, train_df[target], val_df[target])
        if task == "multiclass":  # the declared order (dataset.classes), else sorted
            labels = config.dataset.class_order(train_df[target])
        else:
            labels = sorted(pd.unique(train_df[target]), key=lambda v: (str(type(v)), v))
        if task == "binary" and positive is not None:
            labels = _negative_then_positive(target, labels, positive)
        classes = [_plain(v) for v in labels]
        if len(classes) < 2:
            raise DataError(f"target {target!r} has a single class in the training split: {classes}")
        index = pd.Index(labels)
        y = index.get_indexer(train_df[target]).astype(np.int64)
        y_val = index.get_indexer(val_df[target]).astype(np.int64)
        if (y_val < 0).any():
            unseen = sorted({str(v) for v in val_df[target][y_val < 0]})
            raise DataError(f"validation split has target classes not in training: {', '.join(unseen)}")
    fingerprint = run_key(pre.to_dict(), classes, fingerprint_arrays(x_num, x_cat, y, x_num_val, x_cat_val, y_val))
    return PreparedData(
        preprocessor=pre,
        task=task,
        classes=classes,
        x_num=x_num,
        x_cat=x_cat,
        y=y,
        x_num_val=x_num_val,
        x_cat_val=x_cat_val,
        y_val=y_val,
        feature_columns=list(features),
        feature_dtypes=frame_dtypes(train_df, features),
        fingerprint=fingerprint,
    )


def _negative_then_positive(target: str, labels: list[Any], positive: str) -> list[Any]:
    """String labels in the order every binary head and metric assumes: negative, then
    ``dataset.positive_class`` (so "No" may be the positive one of "No"/"Yes")."""
    if positive not in [str(v) for v in labels] or len(labels) != 2:
        shown = ", ".join(map(str, labels[:5]))
        raise DataError(f"a binary task with positive_class {positive!r} needs two labels in {target!r}, one of them "
                        f"{positive!r}; got: {shown}")  # fmt: skip
    return sorted(labels, key=lambda v: str(v) == positive)


def _check_binary_labels(target: str, *columns: pd.Series) -> None:
    """The gate judges 0/1 (or boolean) labels only: refuse others before any training."""
    for column in columns:
        if column.dtype == bool:
            continue
        values = pd.unique(column)
        if not set(values.tolist()) <= {0, 1}:
            shown = ", ".join(sorted(map(str, values))[:5])
            raise DataError(f"a binary task needs 0/1 (or boolean) labels in {target!r}, got: {shown}")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def select_candidate(
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    config: PipelineConfig,
    store: Store | None,
    run_prefix: str,
    device: torch.device,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> SearchResult:
    """:func:`search_candidates` on the training and validation splits (features + target)."""
    return search_candidates(prepare_data(train_df, val_df, config), config, store, run_prefix, device, on_epoch)


def search_candidates(
    data: PreparedData,
    config: PipelineConfig,
    store: Store | None,
    run_prefix: str,
    device: torch.device,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> SearchResult:
    """Train every trial of every configured family; return all trials and the best model.

    Args:
        data: Both splits, encoded (:func:`prepare_data`). The frames need not be kept: on
            big data, dropping them before the search halves the peak memory.
        config: The run's config (dataset, training.candidates, seed, epochs ...).
        store: Where MLP checkpoints go (``<run_prefix>/checkpoints/<run_key>/``); None: none.
        run_prefix: The run's folder in the store.
        device: The torch device for the MLP (scikit-learn families run on the CPU).
        on_epoch: Per-epoch MLP progress, with ``family`` and ``trial`` added.

    The best trial is the best on the gate's ``primary_metric`` (the metric that will judge
    the candidate against the champion); ties go to the earlier trial (config order, then
    trial order).
    """
    cfg = config.training
    metric = get_metric(config.gate.primary_metric)
    # What makes two trials of the same family and params the same run (so a rerun resumes).
    run_settings = {name: getattr(cfg, name) for name in _RUN_SETTINGS}
    # Expand and check every trial before training any: a typo fails in seconds, not hours.
    plan = {id(spec): expand_params(spec, cfg.seed) for spec in cfg.candidates}
    _check_plan([(spec, params) for spec in cfg.candidates for params in plan[id(spec)]], cfg)
    search = _Search(data, cfg, metric, run_settings, store, run_prefix, device, on_epoch)
    for spec in cfg.candidates:
        if spec.search == "optuna":
            _search_optuna(search, config, spec)
        else:
            for params in plan[id(spec)]:
                search.fit(spec, params, None)
    if search.best is None:
        raise _no_usable_model(search.trials, metric.name, data.task)
    return SearchResult(
        best=_fitted(search.best_result, search.best, data, config),
        best_trial=search.best,
        trials=search.trials,
        task=data.task,
        primary_metric=metric.name,
        higher_is_better=metric.higher_is_better,
        data_fingerprint=data.fingerprint,
    )


@dataclass
class _Search:
    """One search's trials as they are trained, in order, and the best so far with its result."""

    data: PreparedData
    cfg: TrainingConfig
    metric: Metric  # the gate's primary metric
    run_settings: dict[str, Any]
    store: Store | None
    run_prefix: str
    device: torch.device
    on_epoch: Callable[[dict[str, Any]], None] | None
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None
    best_result: Any = None

    def fit(self, spec: CandidateSpec, params: dict[str, Any], hook: Callable[[dict[str, Any]], None] | None) -> Trial:
        """Train one trial (recorded failed or pruned rather than raised, when it is either)."""
        index = len(self.trials)
        key = run_key(self.data.fingerprint, spec.family, params, self.run_settings)
        start = time.perf_counter()
        trial = Trial(index=index, family=spec.family, params=params, status="ok", run_key=key)
        self.trials.append(trial)
        sink = None
        if spec.family == "torch_mlp" and self.store is not None and self.cfg.checkpoint:
            sink = CheckpointSink(self.store, _join(self.run_prefix, "checkpoints", key))
        callback = _callbacks(self.on_epoch, hook, spec.family, index, trial)
        try:
            result = _fit(trial, self.data, self.cfg, self.device, sink, callback)
        except TrainingError as exc:
            trial.status, trial.error = "failed", str(exc)
            trial.wall_s = time.perf_counter() - start
            return trial
        except Exception as exc:
            from refit.training.optuna_search import TrialPruned

            if not isinstance(exc, TrialPruned):
                raise
            trial.status, trial.epochs, trial.wall_s = "pruned", exc.epoch, time.perf_counter() - start
            if sink is not None:  # a pruned trial is never resumed: its checkpoints are dead weight
                sink.clear()
            return trial
        trial.metrics = dict(result.val_metrics)
        trial.primary = result.val_metrics.get(self.metric.name)
        trial.train_s, trial.wall_s = result.train_s, time.perf_counter() - start
        trial.resolved_params = dict(result.params)
        trial.samples_per_s = result.samples_per_s
        trial.history = [dict(row) for row in result.history]
        trial.peak_memory_bytes = result.peak_memory_bytes
        trial.device = str(getattr(result, "device", "cpu"))
        if self.metric.is_better(trial.primary, self.best.primary if self.best else None):
            self.best, self.best_result = trial, result
        return trial


def _search_optuna(search: _Search, config: PipelineConfig, spec: CandidateSpec) -> None:
    """The trials of one ``search: optuna`` candidate, in its study (:mod:`refit.training.optuna_search`)."""
    from refit.training.optuna_search import run_study

    cfg, metric = search.cfg, search.metric
    name = _study_name(config, search.data, spec, search.run_settings, metric.name)
    mine, study_best = run_study(
        spec,
        partial(_sampler_seed, cfg.seed, spec.family),
        metric.higher_is_better,
        metric.name,
        partial(search.fit, spec),
        storage=cfg.search_storage,
        study_name=name,
    )
    if study_best is not None and study_best.number not in {t.study["number"] for t in mine if t.study}:
        # Another worker of the shared study ran its best trial: train it here too (the
        # same params, data and seed give the same model), so every worker's candidate is it.
        trial = search.fit(spec, study_best.params, None)
        trial.study = {"sampler": "TPE", "pruner": "median", "number": study_best.number,
                       "state": "COMPLETE", "study": name, "retrained": True}  # fmt: skip


def _no_usable_model(trials: list[Trial], metric: str, task: str) -> TrainingError:
    """What a search in which no trial produced a usable model raises: each trial's problem."""
    problems = "; ".join(f"{t.family}#{t.index}: {t.error or f'validation {metric} is {t.primary}'}" for t in trials)
    hint = " (does the validation split hold every class?)" if task != "regression" else ""
    return TrainingError(f"no trial produced a usable model: {problems}{hint}")


def _sampler_seed(seed: int, family: str, number: int) -> int:
    """Optuna's sampler seed for trial ``number`` of ``family`` (the search's one seeding scheme)."""
    return int(search_seed(seed, family, number).generate_state(1)[0])


def _study_name(
    config: PipelineConfig, data: PreparedData, spec: CandidateSpec, run_settings: dict[str, Any], metric: str
) -> str:
    """The study every worker training ``spec`` on the same data, settings and seed joins."""
    key = run_key(data.fingerprint, spec.model_dump(mode="json"), run_settings, metric)
    return f"{config.dataset.name}-{spec.family}-{key[:16]}"


def _check_plan(plan: list[tuple[CandidateSpec, dict[str, Any]]], cfg: TrainingConfig) -> None:
    """Resolve every trial's params (unknown names raise) before any trial trains."""
    from refit.training.sklearn_models import resolve_params as resolve_sklearn_params
    from refit.training.torch_net import resolve_params as resolve_torch_params

    for spec, params in plan:
        if spec.family == "torch_mlp":
            resolve_torch_params(params, cfg)
        else:
            resolve_sklearn_params(spec.family, params)


def _fit(
    trial: Trial,
    data: PreparedData,
    cfg: TrainingConfig,
    device: torch.device,
    sink: CheckpointSink | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> Any:
    """Train one trial (its family's result; TrainingError if it fails); the MLP's epochs go on ``trial``."""
    from refit.training.sklearn_models import train_sklearn
    from refit.training.torch_mlp import train_torch

    n_classes = len(data.classes) if data.classes else 0
    cards = data.preprocessor.cardinalities
    if trial.family != "torch_mlp":
        return train_sklearn(
            trial.family, data.x_num, data.x_cat, data.y, data.x_num_val, data.x_cat_val,
            data.y_val, data.task, n_classes, trial.params, cfg, cardinalities=cards,
        )  # fmt: skip
    result = train_torch(
        data.x_num, data.x_cat, data.y, data.x_num_val, data.x_cat_val, data.y_val,
        data.task, n_classes, trial.params, cfg, device, sink, on_epoch, cardinalities=cards,
    )  # fmt: skip
    trial.epochs, trial.best_epoch = result.epochs_run, result.best_epoch
    trial.resumed_from_epoch = result.resumed_from_epoch
    return result


def _callbacks(
    progress: Callable[[dict[str, Any]], None] | None,
    hook: Callable[[dict[str, Any]], None] | None,
    family: str,
    index: int,
    trial: Trial,
) -> Callable[[dict[str, Any]], None] | None:
    """The epoch callback of one trial: progress (tagged with family and trial), then the
    search's own hook (Optuna's pruning), which keeps the history of a trial it stops."""
    if progress is None and hook is None:
        return None

    def on_epoch(row: dict[str, Any]) -> None:
        if progress is not None:
            progress({**row, "family": family, "trial": index})
        if hook is not None:
            trial.history.append({k: v for k, v in row.items() if k not in ("max_epochs", "best_epoch", "stopped")})
            hook(row)

    return on_epoch


def _fitted(result: Any, trial: Trial, data: PreparedData, config: PipelineConfig) -> FittedModel:
    info = {
        "family": trial.family,
        "trial": trial.index,
        "run_key": trial.run_key,
        "train_s": result.train_s,
        "wall_s": result.wall_s,
        "samples_per_s": result.samples_per_s,
        "peak_memory_bytes": result.peak_memory_bytes,
        "device": getattr(result, "device", "cpu"),
        "data_fingerprint": data.fingerprint,
        "train_rows": int(len(data.y)),
        "validation_rows": int(len(data.y_val)),
    }
    common: dict[str, Any] = dict(
        family=trial.family,
        task=data.task,
        preprocessor=data.preprocessor,
        feature_columns=data.feature_columns,
        feature_dtypes=data.feature_dtypes,
        classes=data.classes,
        target=config.dataset.target,
        params=dict(result.params),
        history=list(result.history),
        val_metrics=dict(result.val_metrics),
        info=info,
    )
    if trial.family == "torch_mlp":
        info.update(epochs=result.epochs_run, best_epoch=result.best_epoch, data_placement=result.data_placement)
        return FittedModel(
            torch_model=result.model,
            arch=result.arch,
            target_mean=result.target_mean,
            target_std=result.target_std,
            **common,
        )
    return FittedModel(estimator=result.estimator, **common)
