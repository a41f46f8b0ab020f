"""Drift and performance decay of a production window against the model's reference data.

Evidently runs behind :mod:`refit.compat.evidently`, the only module that imports it (lazily,
inside the functions that run it: the import costs seconds and most callers only need the
result types or the history). This module returns our own typed results, so an Evidently
upgrade changes that module and nothing else.

How a check runs:

1. Both frames are cut to a bounded sample (``cfg.sample_size`` rows each), drawn with a seed
   and stratified by ``cfg.stratify_by`` when it is set (24 equal time buckets for a datetime
   column, the values of any other column), so a million-row window costs what 20,000 rows
   cost and every hour (or segment) keeps its share of the sample.
2. Every column gets a kind (categorical: strings, booleans, declared columns, whole numbers
   with few values) and an explicit method (``cfg.num_method`` / ``cfg.cat_method``,
   overridden by ``cfg.column_methods``; a column constant in the reference: the bounded
   new-value test). Evidently's automatic choice depends on the row count, so it is never used.
3. :func:`check_drift`, the one entry point, scores each column. ``threshold_mode:
   calibrated`` (default): the score of :func:`refit.drift_null.score_counts` (Evidently's stat
   test) gets a p-value from the null distribution of that score for a window of the same size
   drawn from the reference (cached per champion and size bucket, :class:`StoreNullCache`),
   and Holm across the features at ``cfg.alpha`` decides. ``fixed``: Evidently's stat tests at
   the configured thresholds and the drift-share rule.
4. :func:`render_report` renders Evidently's ``DataDriftPreset`` report of the same samples at
   the thresholds the verdict used, only when the report is stored (it is most of a check's
   time); the flow stores it when the decision changes (``refit.monitoring.record_drift_check``).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd

from refit import drift_null
from refit.compat import evidently as evidently_compat
from refit.compat.evidently import ColumnKind
from refit.config import DriftConfig, RetentionConfig
from refit.data import run_stamp, stamp_time
from refit.errors import ConfigError, DataError
from refit.io.base import Store
from refit.io.layout import LAYOUT
from refit.jsonable import finite_or_none
from refit.records import Record

#: Strata of a datetime ``stratify_by`` column: equal-width buckets over the frame's span.
TIME_BUCKETS = 24
#: Strata of a numeric, non-datetime ``stratify_by`` column: quantile bins.
NUMERIC_STRATA = 10
#: Mixed into the sampling seed. Without it ``default_rng([seed, 0])`` would replay the
#: stream of a data generator seeded ``[seed, 0, 0]`` (numpy pads entropy with zeros), and a
#: sample of rows with the smallest keys would pick rows by the value that stream drew.
_SAMPLING_TAG = 0x64726966

#: Per column, and per run, fields of a history row (see ``read_drift_history``).
_HISTORY_COLUMN_FIELDS = ["column", "method", "score", "threshold", "p_value", "drifted"]
_HISTORY_RUN_FIELDS = [
    "drift_share",
    "drift_detected",
    "threshold_mode",
    "reference_sample_rows",
    "current_sample_rows",
]
_HISTORY_COLUMNS = [
    "at",
    "run_id",
    "role",
    *_HISTORY_COLUMN_FIELDS,
    "ratio",
    *_HISTORY_RUN_FIELDS,
    "decision",
    "decision_reason",
    "decay_detected",
]


class ColumnDrift(Record):
    """The drift test of one column.

    ``score`` is a p-value for tests (drift when below ``threshold``) and a distance for
    distances (drift when at or above it); None when the column could not be tested.
    ``n_reference`` / ``n_current`` count the non-missing sampled values the test saw.

    Calibrated checks also carry ``p_value`` (the share of null scores at least as extreme,
    +1 smoothed), ``level`` (the p-value Holm needed at this column's rank: the threshold is
    the score at that level of the null), ``null_draws`` and ``window_bucket`` (the window
    size the null was drawn for). ``drifted`` is then Holm's verdict.
    """

    column: str
    kind: ColumnKind
    method: str
    score: float | None
    threshold: float | None
    drifted: bool
    n_reference: int
    n_current: int
    note: str | None = None
    p_value: float | None = None
    level: float | None = None
    null_draws: int | None = None
    window_bucket: int | None = None

    @property
    def ratio(self) -> float | None:
        """How far past its threshold the score is: 1.0 is the line, above it drift."""
        return score_ratio(self.method, self.score, self.threshold)


def score_ratio(method: str, score: float | None, threshold: float | None) -> float | None:
    """Score over threshold for distances, threshold over score for p-values (both: > 1 drifts)."""
    if score is None or threshold is None:
        return None
    if method in drift_null.P_VALUE_METHODS:
        return float(threshold / score) if score > 0 else (float("inf") if threshold > 0 else 0.0)
    if threshold == 0:
        return float("inf") if score > 0 else 0.0
    return float(score / threshold)


class DriftResult(Record):
    """Drift of one window: per feature, the dataset verdict, and the prediction's drift.

    ``drift_share`` is the share of drifted features among those judged: a feature with no
    values in the current sample (while the reference has some) counts as drifted, one with
    no reference values is reported but not judged. ``drift_detected`` is
    ``drift_share >= drift_share_threshold``, Evidently's rule. The prediction's drift is
    reported apart and does not count towards the share.

    With ``threshold_mode`` ``calibrated`` a window drifts when Holm rejects any judged feature
    at ``alpha`` (``drift_share_threshold`` is then one column's share, ``1 / n_columns``).
    """

    columns: list[ColumnDrift]
    n_columns: int
    n_drifted: int
    drift_share: float
    drift_share_threshold: float
    drift_detected: bool
    prediction: ColumnDrift | None
    reference_rows: int
    current_rows: int
    reference_sample_rows: int
    current_sample_rows: int
    sample_size: int
    stratified_by: str | None
    seed: int
    engine: str
    threshold_mode: str = "fixed"
    alpha: float | None = None

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def prediction_drifted(self) -> bool:
        return self.prediction is not None and self.prediction.drifted


@dataclass(frozen=True)
class DriftCheck:
    """A drift result and Evidently's HTML report of the same run (None when not asked for).

    ``plan`` keeps the samples and thresholds, so :func:`render_report` can render the report of
    this very check later (only when it is needed: it costs most of a check's time)."""

    result: DriftResult
    html: str | None
    plan: _Plan | None = field(default=None, repr=False, compare=False)


class NullCache(Protocol):
    """Where null distributions are kept between checks (per champion, by window size bucket)."""

    def get(self, bucket: int, key: str) -> np.ndarray | None: ...

    def put(self, bucket: int, key: str, null: np.ndarray) -> None: ...

    def flush(self) -> None: ...


class MemoryNullCache:
    """Nulls kept in this process only (tests, benchmarks, notebooks)."""

    def __init__(self) -> None:
        self._nulls: dict[tuple[int, str], np.ndarray] = {}

    def get(self, bucket: int, key: str) -> np.ndarray | None:
        return self._nulls.get((bucket, key))

    def put(self, bucket: int, key: str, null: np.ndarray) -> None:
        self._nulls[(bucket, key)] = null

    def flush(self) -> None:
        return None


class StoreNullCache:
    """Nulls of one champion version in the store (``LAYOUT.drift_calibration``), one file per size
    bucket: computed on the first check that needs them, read by every later one."""

    def __init__(self, store: Store, model: str, version: int) -> None:
        self.store, self.model, self.version = store, model, version
        self._loaded: dict[int, dict[str, np.ndarray]] = {}
        self._dirty: set[int] = set()

    def _bucket(self, bucket: int) -> dict[str, np.ndarray]:
        if bucket not in self._loaded:
            key = LAYOUT.drift_calibration(self.model, self.version, bucket)
            nulls: dict[str, np.ndarray] = {}
            if self.store.exists(key):
                with np.load(io.BytesIO(self.store.get_bytes(key)), allow_pickle=False) as data:
                    names = json.loads(bytes(data["__keys__"]).decode())
                    nulls = {name: np.asarray(data[f"n{i}"]) for i, name in enumerate(names)}
            self._loaded[bucket] = nulls
        return self._loaded[bucket]

    def get(self, bucket: int, key: str) -> np.ndarray | None:
        return self._bucket(bucket).get(key)

    def put(self, bucket: int, key: str, null: np.ndarray) -> None:
        self._bucket(bucket)[key] = null
        self._dirty.add(bucket)

    def flush(self) -> None:
        for bucket in sorted(self._dirty):
            nulls = self._loaded[bucket]
            names = sorted(nulls)
            buf = io.BytesIO()
            arrays = {f"n{i}": nulls[name] for i, name in enumerate(names)}
            arrays["__keys__"] = np.frombuffer(json.dumps(names).encode(), dtype=np.uint8)
            np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
            self.store.put_bytes(LAYOUT.drift_calibration(self.model, self.version, bucket), buf.getvalue())
        self._dirty.clear()


_T = TypeVar("_T")


class ReferenceCache:
    """The reference side of checks against one reference frame, kept for every later check in
    this process (a replay, a benchmark: many windows against one champion): its seeded sample,
    each column's cleaned values and counts, and the digests the nulls are keyed by. Bound to one
    frame object (another frame starts it over); the frame must not change in place meanwhile.
    A check with it gives the result a check without it gives."""

    def __init__(self) -> None:
        self._frame: pd.DataFrame | None = None
        self._entries: dict[tuple[Any, ...], Any] = {}

    def get(self, frame: pd.DataFrame, key: tuple[Any, ...], make: Callable[[], _T]) -> _T:
        if self._frame is not frame:
            self._frame, self._entries = frame, {}
        if key not in self._entries:
            self._entries[key] = make()
        found: _T = self._entries[key]
        return found


# --------------------------------------------------------------------------------------------
# Sampling


def _strata_codes(values: pd.Series) -> np.ndarray:
    """Integer stratum per row: time buckets, quantile bins, or the values themselves."""
    if pd.api.types.is_datetime64_any_dtype(values):
        ns = values.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        missing = values.isna().to_numpy()
        if missing.all():
            return np.zeros(len(values), dtype=np.int64)
        lo, hi = ns[~missing].min(), ns[~missing].max()
        width = max((hi - lo) / TIME_BUCKETS, 1.0)
        codes = np.minimum(((ns - lo) / width).astype(np.int64), TIME_BUCKETS - 1)
        return np.where(missing, TIME_BUCKETS, codes)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique(dropna=True) > NUMERIC_STRATA:
        binned = pd.qcut(values, NUMERIC_STRATA, labels=False, duplicates="drop")
        return np.asarray(binned.fillna(-1), dtype=np.int64) + 1
    codes, _ = pd.factorize(values, use_na_sentinel=False)
    return np.asarray(codes, dtype=np.int64)


def stratified_sample_positions(
    n_rows: int, size: int, rng: np.random.Generator, strata: np.ndarray | None = None
) -> np.ndarray:
    """Sorted row positions of a sample of ``size`` rows (all rows when there are fewer).

    Each stratum gets its proportional share (largest remainders round it to exactly
    ``size``); rows inside a stratum are drawn uniformly without replacement.
    """
    if size >= n_rows:
        return np.arange(n_rows)
    if strata is None:  # one stratum: Floyd's draw of ``size`` rows, no sort of every row's key
        return np.sort(rng.choice(n_rows, size=size, replace=False, shuffle=False))
    codes = strata
    _, codes = np.unique(codes, return_inverse=True)
    counts = np.bincount(codes)
    quota = counts * (size / n_rows)
    take = np.floor(quota).astype(np.int64)
    short = size - int(take.sum())
    if short > 0:
        # Stable order: the largest fractional parts first, ties by stratum.
        take[np.argsort(-(quota - take), kind="stable")[:short]] += 1
    # Random keys in [code, code + 1): one argsort groups by stratum and shuffles inside.
    order = np.argsort(codes + rng.random(n_rows), kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    sorted_codes = codes[order]
    rank = np.arange(n_rows) - starts[sorted_codes]
    return np.sort(order[rank < take[sorted_codes]])


def _rng(seed: int, role: int) -> np.random.Generator:
    return np.random.default_rng([_SAMPLING_TAG, seed, role])


def _sample(frame: pd.DataFrame, columns: Sequence[str], cfg: DriftConfig, rng: np.random.Generator) -> pd.DataFrame:
    """The sampled rows of ``columns`` only (the rest of a wide frame is never copied)."""
    strata = None
    if cfg.stratify_by is not None and len(frame) > cfg.sample_size:
        if cfg.stratify_by not in frame.columns:
            raise DataError(f"stratify_by column {cfg.stratify_by!r} is not in the frame")
        strata = _strata_codes(frame[cfg.stratify_by])
    positions = stratified_sample_positions(len(frame), cfg.sample_size, rng, strata)
    if len(positions) == len(frame):
        return pd.DataFrame({c: frame[c] for c in columns})
    return pd.DataFrame({c: frame[c].take(positions) for c in columns})


# --------------------------------------------------------------------------------------------
# Column preparation


def _refuse_dates(values: pd.Series, column: str) -> None:
    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_timedelta64_dtype(values):
        raise DataError(f"column {column!r} is a date or time; drift is checked on features only")


def column_kind(values: pd.Series, column: str, cfg: DriftConfig) -> ColumnKind:
    """Categories: strings and booleans, columns the config declares, and whole numbers with at
    most ``cfg.categorical_max_values`` distinct values (0/1 flags, a count of devices): a
    distance over two values says less than their shares do."""
    _refuse_dates(values, column)
    if column in cfg.categorical_columns:
        return "categorical"
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return "categorical"
    present = values.dropna()
    if pd.api.types.is_float_dtype(present):
        present = present[np.isfinite(present.to_numpy(dtype=np.float64))]
        whole = bool((present == np.floor(present)).all())
    else:
        whole = True
    if whole and present.nunique() <= cfg.categorical_max_values:
        return "categorical"
    return "numerical"


def reference_kinds(
    reference: pd.DataFrame,
    columns: Sequence[str],
    cfg: DriftConfig,
    inherited: Mapping[str, ColumnKind] | None = None,
) -> dict[str, ColumnKind]:
    """The kind of each column for every check of one champion, decided once from its whole
    reference (:func:`column_kind`), a column ``inherited`` from the previous champion keeping
    its kind: a count with 10 values in one version's reference and 11 in the next stays what it
    was, so its scores stay one test across versions (the history plot, the thresholds).
    Columns the config declares categorical are categorical whatever was inherited."""
    out: dict[str, ColumnKind] = {}
    for column in dict.fromkeys(columns):
        if column not in reference.columns:
            raise DataError(f"column {column!r} is not in the reference")
        if column in cfg.categorical_columns:
            out[column] = "categorical"
        elif inherited is not None and column in inherited:
            out[column] = inherited[column]
        else:
            out[column] = column_kind(reference[column], column, cfg)
    return out


def _clean(values: pd.Series, kind: ColumnKind) -> pd.Series:
    """Plain dtypes Evidently handles: float64 (inf as NaN) or object."""
    if kind == "numerical":
        out = values.astype("float64").replace([np.inf, -np.inf], np.nan)
    else:
        out = values.astype(object).where(values.notna(), None)
    return out.reset_index(drop=True)


def _method(column: str, kind: ColumnKind, cfg: DriftConfig, constant: bool) -> str:
    if column in cfg.column_methods:
        return cfg.column_methods[column]
    if constant:
        return drift_null.NEW_VALUE  # a bounded score: a distance over a zero spread is not
    return cfg.num_method if kind == "numerical" else cfg.cat_method


def _threshold(column: str, kind: ColumnKind, cfg: DriftConfig) -> float | None:
    if column in cfg.column_thresholds:
        return cfg.column_thresholds[column]
    return cfg.num_threshold if kind == "numerical" else cfg.cat_threshold


def _check_method(column: str, kind: ColumnKind, method: str, cfg: DriftConfig) -> float:
    """The method's default threshold; ConfigError when no test of that name can judge the column."""
    if cfg.threshold_mode == "calibrated" and not drift_null.scored(method, kind):
        known = ", ".join(m for m, kinds in drift_null.SCORED.items() if kind in kinds and m != drift_null.NEW_VALUE)
        raise ConfigError(
            f"drift method {method!r} for {kind} column {column!r}: threshold_mode calibrated scores {known}; "
            "use one of those or drift.threshold_mode: fixed"
        )
    if method == drift_null.NEW_VALUE:
        if kind != "categorical":
            raise ConfigError(f"drift method {method!r} for {kind} column {column!r}: categorical columns only")
        return cfg.new_value_threshold
    if cfg.threshold_mode == "calibrated":
        return math.nan  # the threshold comes from the null; no Evidently import on this path
    try:
        return evidently_compat.default_threshold(method, kind)
    except ValueError as exc:
        raise ConfigError(f"drift method {method!r} for {kind} column {column!r}: {exc}") from None


@dataclass(frozen=True)
class _Plan:
    """What to test: the sampled frames and, per column, its kind, method and threshold."""

    reference: pd.DataFrame
    current: pd.DataFrame
    kinds: dict[str, ColumnKind]
    methods: dict[str, str]
    thresholds: dict[str, float]
    features: list[str]  # testable features, in order
    prediction: str | None  # the prediction column when testable
    untestable: dict[str, ColumnDrift]  # columns decided without Evidently (no values)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # non-missing (reference, current)
    #: Reference-side values by key, from the check's ReferenceCache when it has one.
    memo: Callable[[tuple[Any, ...], Callable[[], Any]], Any] = field(default=lambda key, make: make())


def _plan(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    prediction_column: str | None,
    cfg: DriftConfig,
    seed: int,
    given_kinds: Mapping[str, ColumnKind] | None = None,
    cache: ReferenceCache | None = None,
) -> _Plan:
    """What the check will compare: the columns and their kinds (``given_kinds`` where given, else
    from the reference sample), each column's method and threshold, and the seeded samples of
    both frames. One function: it is a sequence of input checks (each a one-line error naming the
    column), every step feeding the next."""
    if len(reference) == 0:
        raise DataError("the reference frame is empty")
    if len(current) == 0:
        raise DataError("the current window is empty")
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise DataError(f"columns missing from reference or current: {missing}")
    if not columns:
        raise DataError("no columns to check for drift")

    wanted = list(dict.fromkeys(columns))
    pred = None
    if (
        prediction_column is not None
        and prediction_column not in wanted
        and prediction_column in reference.columns
        and prediction_column in current.columns
        and reference[prediction_column].notna().any()
        and current[prediction_column].notna().any()
    ):
        pred = prediction_column

    keep = [*wanted, *([pred] if pred else [])]
    sampled = ("sample", tuple(keep), cfg.sample_size, cfg.stratify_by, seed)

    def memo(key: tuple[Any, ...], make: Callable[[], _T]) -> _T:
        return cache.get(reference, (*sampled, *key), make) if cache is not None else make()

    ref_s = memo((), lambda: _sample(reference, keep, cfg, _rng(seed, 1)))
    cur_s = _sample(current, keep, cfg, _rng(seed, 2))

    kinds: dict[str, ColumnKind] = {}
    methods: dict[str, str] = {}
    thresholds: dict[str, float] = {}
    ref_cols: dict[str, pd.Series] = {}
    cur_cols: dict[str, pd.Series] = {}
    features: list[str] = []
    untestable: dict[str, ColumnDrift] = {}
    counts: dict[str, tuple[int, int]] = {}
    for column in keep:
        if given_kinds is not None and column in given_kinds and column not in cfg.categorical_columns:
            _refuse_dates(ref_s[column], column)
            kind = given_kinds[column]
        else:
            kind = column_kind(ref_s[column], column, cfg)
        _refuse_dates(current[column], column)
        if kind == "numerical" and not (
            pd.api.types.is_numeric_dtype(current[column]) and pd.api.types.is_numeric_dtype(ref_s[column])
        ):
            kind = "categorical"  # e.g. numbers in reference, strings in current
        constant = column != pred and memo(("nunique", column), partial(_distinct, ref_s[column])) == 1
        if constant:
            kind = "categorical"
        method = _method(column, kind, cfg, constant)
        default = _check_method(column, kind, method, cfg)
        threshold = _threshold(column, kind, cfg)
        ref_col, n_ref = memo(("clean", column, kind), partial(_clean_counted, ref_s[column], kind))
        cur_col = _clean(cur_s[column], kind)
        n_cur = int(cur_col.notna().sum())
        if column == pred and (n_ref == 0 or n_cur == 0):
            pred = None  # too sparse to be in the sample: no prediction drift this time
            continue
        if n_ref == 0 or n_cur == 0:
            # Evidently refuses an empty column. No values in the current window while the
            # reference has some is a change worth flagging; no reference values is not testable.
            fixed = threshold if threshold is not None else default
            untestable[column] = ColumnDrift(
                column=column,
                kind=kind,
                method=method,
                score=None,
                threshold=None if math.isnan(fixed) else fixed,
                drifted=n_ref > 0,
                n_reference=n_ref,
                n_current=n_cur,
                note="no values in the current sample" if n_ref else "no values in the reference sample",
            )
            continue
        kinds[column], methods[column] = kind, method
        counts[column] = (n_ref, n_cur)
        thresholds[column] = threshold if threshold is not None else default
        ref_cols[column], cur_cols[column] = ref_col, cur_col
        if column != pred:
            features.append(column)
    return _Plan(
        reference=pd.DataFrame(ref_cols),
        current=pd.DataFrame(cur_cols),
        kinds=kinds,
        methods=methods,
        thresholds=thresholds,
        features=features,
        prediction=pred,
        untestable=untestable,
        counts=counts,
        memo=memo,
    )


def _distinct(values: pd.Series) -> int:
    return int(values.nunique(dropna=True))


def _clean_counted(values: pd.Series, kind: ColumnKind) -> tuple[pd.Series, int]:
    cleaned = _clean(values, kind)
    return cleaned, int(cleaned.notna().sum())


# --------------------------------------------------------------------------------------------
# Verdicts


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
    """What a column's null depends on: its reference values, test and number of draws."""

    def digest() -> tuple[int, str]:
        ref = plan.reference[column].dropna()
        if plan.kinds[column] == "numerical":
            content = np.sort(ref.to_numpy(dtype=np.float64)).tobytes()
        else:
            counts = ref.value_counts()
            content = json.dumps(sorted(zip(map(repr, counts.index), counts.tolist(), strict=True))).encode()
        return len(ref), hashlib.sha256(content).hexdigest()[:16]

    n, content = plan.memo(("digest", column, plan.kinds[column]), digest)
    return f"{column}|{plan.kinds[column]}|{plan.methods[column]}|{n}|{draws}|{content}"


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


def _by_evidently(plan: _Plan) -> list[str]:
    """The tested columns Evidently scores (it has no new-value test)."""
    tested = [*plan.features, *([plan.prediction] if plan.prediction else [])]
    return [c for c in tested if plan.methods[c] != drift_null.NEW_VALUE]


def _assemble(
    plan: _Plan,
    per_column: Mapping[str, _Verdict],
    columns: Sequence[str],
    cfg: DriftConfig,
    seed: int,
    reference_rows: int,
    current_rows: int,
) -> DriftResult:
    def tested(column: str) -> ColumnDrift:
        v = per_column[column]
        return ColumnDrift(
            column=column,
            kind=plan.kinds[column],
            method=plan.methods[column],
            score=finite_or_none(v.score),
            threshold=v.threshold if np.isfinite(v.threshold) else None,
            drifted=v.drifted,
            n_reference=plan.counts[column][0],
            n_current=plan.counts[column][1],
            p_value=v.p_value,
            level=v.level,
            null_draws=v.draws,
            window_bucket=v.bucket,
        )

    results: list[ColumnDrift] = []
    for column in dict.fromkeys(columns):
        results.append(plan.untestable[column] if column in plan.untestable else tested(column))
    judged = [c for c in results if c.score is not None or c.drifted]
    n_drifted = sum(c.drifted for c in judged)
    share = n_drifted / len(judged) if judged else 0.0
    calibrated = cfg.threshold_mode == "calibrated"
    # calibrated: any column Holm rejects (the share of one column); fixed: Evidently's share rule
    share_threshold = (1.0 / len(judged) if judged else 1.0) if calibrated else cfg.drift_share
    return DriftResult(
        columns=results,
        n_columns=len(judged),
        n_drifted=n_drifted,
        drift_share=share,
        drift_share_threshold=share_threshold,
        drift_detected=bool(judged) and (n_drifted > 0 if calibrated else share >= cfg.drift_share),
        prediction=tested(plan.prediction) if plan.prediction else None,
        reference_rows=reference_rows,
        current_rows=current_rows,
        reference_sample_rows=len(plan.reference),
        current_sample_rows=len(plan.current),
        sample_size=cfg.sample_size,
        stratified_by=cfg.stratify_by,
        seed=seed,
        engine=evidently_compat.engine_version(),
        threshold_mode=cfg.threshold_mode,
        alpha=cfg.alpha if calibrated else None,
    )


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    prediction_column: str | None,
    cfg: DriftConfig,
    seed: int,
    *,
    report: bool,
    nulls: NullCache | None = None,
    kinds: Mapping[str, ColumnKind] | None = None,
    reference_cache: ReferenceCache | None = None,
) -> DriftCheck:
    """Drift of ``current`` against ``reference``, and Evidently's HTML report when asked for.

    ``cfg.threshold_mode`` ``calibrated`` (the default): each column's score (Evidently's stat
    test, computed by :mod:`refit.drift_null`) gets a p-value from the null distribution of that
    score for a window of its size drawn from the reference; Holm across the features at
    ``cfg.alpha`` decides. ``fixed``: Evidently's stat tests at the configured thresholds and
    the drift-share rule. ``report`` only adds the HTML (:func:`render_report`); the result is
    the same either way.

    Args:
        reference: What the model was trained on (or a sample of it).
        current: The production window.
        columns: Feature columns to test; they decide the dataset verdict.
        prediction_column: Tested too when both frames have it with some values; it does not
            count towards the verdict.
        cfg: Mode, alpha, methods, thresholds, drift share, sample size and stratification.
        seed: Seeds the samples and the null draws: same frames and seed, same result.
        report: Also render Evidently's ``DataDriftPreset`` report of the same samples, with
            the thresholds the verdict used.
        nulls: Where null distributions are kept between checks (the flow: the store, per
            champion); None computes them for this call only.
        kinds: Each column's kind, fixed for a champion (:func:`reference_kinds`, stored at
            promotion); None decides them from this reference sample.
        reference_cache: Keeps the reference side (sample, cleaned columns, null digests) for the
            next check against the same frame; the result is the same with or without it.

    Raises:
        DataError: empty frames, missing or date-time columns.
        ConfigError: a method Evidently does not know for the column's type, or one
            calibration cannot score.
    """
    plan = _plan(reference, current, columns, prediction_column, cfg, seed, kinds, reference_cache)
    if not (plan.features or plan.prediction):
        per_column: dict[str, _Verdict] = {}
    elif cfg.threshold_mode == "calibrated":
        per_column = _calibrated(plan, cfg, seed, nulls if nulls is not None else MemoryNullCache())
    else:
        evidently_cols = _by_evidently(plan)
        found = (
            evidently_compat.run_stattests(
                plan.reference[evidently_cols],
                plan.current[evidently_cols],
                plan.kinds,
                plan.methods,
                plan.thresholds,
            )
            if evidently_cols
            else {}
        )
        per_column = _fixed(plan, found)
    result = _assemble(plan, per_column, columns, cfg, seed, len(reference), len(current))
    check = DriftCheck(result=result, html=None, plan=plan)
    if report:
        check = DriftCheck(result=result, html=render_report(check), plan=plan)
    return check


def render_report(check: DriftCheck, header: str = "") -> str:
    """Evidently's ``DataDriftPreset`` report of the check's own samples, each column at the
    threshold the verdict used (calibrated or fixed), with ``header`` (HTML) above it.

    In calibrated mode the preset's dataset verdict is "any column drifted" (its share set to
    one column's), so it agrees with refit's unless Holm's step-down stopped before a column
    whose score crossed its threshold (that column is then not drifted in refit's result)."""
    plan = check.plan
    if plan is None:
        raise ValueError("this drift check kept no samples to render a report from")
    evidently_cols = _by_evidently(plan)
    if not evidently_cols:
        return _with_header("<html><body>No testable columns.</body></html>", header)
    by_name = {c.column: c for c in check.result.columns}
    if check.result.prediction is not None:
        by_name[check.result.prediction.column] = check.result.prediction
    thresholds = {}
    for column in evidently_cols:
        t = by_name[column].threshold
        thresholds[column] = float(t) if t is not None else float(np.finfo(np.float64).max)
    features = [c for c in plan.features if c in evidently_cols]
    share = check.result.drift_share_threshold
    if check.result.threshold_mode == "calibrated" and features:
        share = np.nextafter(1.0 / len(features), 0.0)  # any drifted column, as refit decides
    _, html = evidently_compat.render_drift_report(
        plan.reference[evidently_cols],
        plan.current[evidently_cols],
        plan.kinds,
        plan.methods,
        thresholds,
        features,
        plan.prediction if plan.prediction in evidently_cols else None,
        float(share),
    )
    return _with_header(html, header)


def _with_header(html: str, header: str) -> str:
    if not header:
        return html
    at = html.lower().find("<body")
    if at < 0:
        return header + html
    close = html.index(">", at) + 1
    return html[:close] + header + html[close:]


# --------------------------------------------------------------------------------------------
# History


def append_drift_history(
    store: Store, model: str, result: DriftResult, at: datetime, extra: Mapping[str, Any] | None = None
) -> str:
    """Store one run's result under ``drift/<model>/history/<timestamp>-<id>.json``.

    One object per run (never a read-modify-write), so concurrent checks cannot lose one.
    The timestamp leads the key, so listing order is time order. ``extra`` (the decision, the
    decay table, the report's key) is stored beside the result. Returns the key.
    """
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    at = at.astimezone(UTC)
    run_id = uuid.uuid4().hex[:12]
    key = f"{LAYOUT.drift_history(model)}{run_stamp(at)}-{run_id}.json"
    body = {"at": at.isoformat(), "run_id": run_id, "model": model, "result": result.model_dump(mode="json")}
    body.update(dict(extra or {}))
    store.put_if_absent(key, json.dumps(body, sort_keys=True, default=str).encode())
    return key


def latest_drift_record(store: Store, model: str) -> dict[str, Any] | None:
    """The last stored check of ``model`` (its JSON body), or None before the first."""
    keys = [k for k in store.list(LAYOUT.drift_history(model)) if k.endswith(".json")]
    if not keys:
        return None
    body: dict[str, Any] = json.loads(store.get_bytes(keys[-1]))
    return body


def _report_time(key: str) -> datetime | None:
    """When a report was made, from its key (``LAYOUT.drift_report``'s run stamp)."""
    return stamp_time(key.rsplit("/", 1)[-1].removesuffix(".html"))


def prune_reports(store: Store, model: str, cfg: RetentionConfig, now: datetime) -> list[str]:
    """Remove HTML reports beyond ``cfg.drift_reports``, older than ``cfg.drift_reports_days``
    (before ``now``, the check's own clock) or past ``cfg.drift_reports_max_mb`` in all, oldest
    first. Check results (JSON) are never removed here. Returns the removed keys."""
    reports = sorted(k for k in store.list(LAYOUT.drift_reports(model)) if k.endswith(".html"))
    cutoff = now.astimezone(UTC).timestamp() - cfg.drift_reports_days * 86_400
    keep: list[str] = []
    removed: list[str] = []
    total = 0
    cap = cfg.drift_reports_max_mb * 1_000_000
    for key in reversed(reports):  # newest first
        when = _report_time(key)
        too_old = when is not None and when.timestamp() < cutoff
        size = store.size(key) if not too_old and len(keep) < cfg.drift_reports else 0
        if too_old or len(keep) >= cfg.drift_reports or (keep and total + size > cap):
            store.delete(key)
            removed.append(key)
            continue
        keep.append(key)
        total += size
    return removed


def read_drift_history(store: Store, model: str) -> pd.DataFrame:
    """Every stored run of ``model``, one row per (run, column), in time order.

    Columns: ``at`` (UTC), ``run_id``, ``column``, ``role`` (feature or prediction),
    ``method``, ``score``, ``threshold``, ``p_value``, ``drifted``, ``ratio`` (score over
    threshold: 1.0 is the line), the run's ``drift_share``, ``drift_detected``, mode and sample
    sizes, and the decision stored with it (``decision``, ``decision_reason``, ``decay_detected``).
    """
    rows: list[dict[str, Any]] = []
    for key in store.list(LAYOUT.drift_history(model)):
        if not key.endswith(".json"):
            continue
        # Read as plain JSON, not as DriftResult: old records stay readable when it grows.
        body = json.loads(store.get_bytes(key))
        result = body["result"]
        decision = body.get("decision") or {}
        run = {
            "at": body["at"],
            "run_id": body["run_id"],
            **{k: result.get(k) for k in _HISTORY_RUN_FIELDS},
            "decision": decision.get("action"),
            "decision_reason": decision.get("reason"),
            "decay_detected": decision.get("decay_detected"),
        }
        tested = [(c, "feature") for c in result["columns"]]
        if result.get("prediction") is not None:
            tested.append((result["prediction"], "prediction"))
        for col, role in tested:
            ratio = score_ratio(col.get("method", ""), col.get("score"), col.get("threshold"))
            rows.append({**run, "role": role, **{k: col.get(k) for k in _HISTORY_COLUMN_FIELDS}, "ratio": ratio})
    frame = pd.DataFrame(rows, columns=_HISTORY_COLUMNS)
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    for name in ("score", "threshold", "p_value", "ratio"):
        frame[name] = frame[name].astype("float64")
    return frame.sort_values(["at", "run_id", "role", "column"], kind="stable").reset_index(drop=True)


#: The plot's score/threshold axis is clipped to this range (log scale): a far-off score
#: cannot flatten the others.
_RATIO_CLIP = (0.01, 100.0)


def plot_drift_history(history: pd.DataFrame, title: str | None = None) -> bytes:
    """PNG of each column's score over its threshold across windows (1.0 is the line; log scale,
    clipped to 0.01..100), window time on x, drifted points marked, and the decisions below.

    Uses matplotlib's Agg canvas directly, so it never touches the global backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 7), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[4, 1])
    if history.empty:
        top.text(0.5, 0.5, "no drift history yet", ha="center", va="center", transform=top.transAxes)
    else:
        columns = sorted(history["column"].astype(str).unique())
        colours = [f"C{i}" for i in range(10)]
        styles = ["-", "--", ":"]
        for i, column in enumerate(columns):
            rows = history[history["column"] == column].sort_values("at")
            ratio = rows["ratio"].clip(*_RATIO_CLIP)
            top.plot(
                rows["at"],
                ratio,
                linestyle=styles[(i // 10) % len(styles)],
                color=colours[i % 10],
                marker=".",
                linewidth=1,
                label=column,
            )
            hits = rows["drifted"].astype(bool).to_numpy()
            top.scatter(rows["at"][hits], ratio[hits], marker="x", s=50, color=colours[i % 10], zorder=3)
        top.axhline(1.0, color="black", linewidth=1.5)
        top.set_yscale("log")
        top.set_ylim(*_RATIO_CLIP)
        top.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        runs = history.drop_duplicates("run_id").sort_values("at")
        bottom.plot(runs["at"], runs["drift_share"], color="grey", linewidth=1)
        markers = {"trigger": ("^", "red"), "suppress": ("v", "orange"), "none": ("o", "green")}
        for action, (marker, colour) in markers.items():
            these = runs[runs["decision"] == action]
            if len(these):
                bottom.scatter(these["at"], these["drift_share"], marker=marker, color=colour, s=40, label=action)
        unknown = runs[runs["decision"].isna()]
        if len(unknown):
            bottom.scatter(unknown["at"], unknown["drift_share"], marker="o", color="grey", s=15, label="(no decision)")
        bottom.set_ylim(-0.05, 1.05)
        bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    top.set_ylabel("score / threshold (x: drifted)")
    bottom.set_ylabel("share drifted")
    bottom.set_xlabel("window end (UTC)")
    top.set_title(title or "Drift history")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
