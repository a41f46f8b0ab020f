"""What a check compares: the seeded samples of both frames and, per column, its kind, method
and threshold (or why it cannot be tested)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import pandas as pd

from refit.compat.evidently import ColumnKind
from refit.config import DriftConfig
from refit.drift.caches import ReferenceCache
from refit.drift.kinds import _check_method, _clean, _method, _refuse_dates, _threshold, column_kind
from refit.drift.records import ColumnDrift
from refit.drift.sampling import _rng, _sample
from refit.errors import DataError

_T = TypeVar("_T")


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


#: A check's reference-side store: ``memo(key, make)`` is ``make()``, kept by key when the check
#: has a ReferenceCache.
_Memo = Callable[[tuple[Any, ...], Callable[[], Any]], Any]


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
    both frames. The steps: :func:`_check_inputs`, :func:`_prediction_to_test`, the samples,
    then per column :func:`_decide` (kind, method, threshold) and its cleaned values; a column
    with no values on one side is :func:`_untestable`."""
    _check_inputs(reference, current, columns)
    wanted = list(dict.fromkeys(columns))
    pred = _prediction_to_test(reference, current, wanted, prediction_column)
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
        kind, method, limit = _decide(column, ref_s[column], current[column], column != pred, cfg, given_kinds, memo)
        ref_col, n_ref = memo(("clean", column, kind), partial(_clean_counted, ref_s[column], kind))
        cur_col = _clean(cur_s[column], kind)
        n_cur = int(cur_col.notna().sum())
        if column == pred and (n_ref == 0 or n_cur == 0):
            pred = None  # too sparse to be in the sample: no prediction drift this time
            continue
        if n_ref == 0 or n_cur == 0:
            untestable[column] = _untestable(column, kind, method, limit, n_ref, n_cur)
            continue
        kinds[column], methods[column] = kind, method
        counts[column] = (n_ref, n_cur)
        thresholds[column] = limit
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


def _check_inputs(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str]) -> None:
    """One-line errors for inputs no check can run on: empty frames, missing or no columns."""
    if len(reference) == 0:
        raise DataError("the reference frame is empty")
    if len(current) == 0:
        raise DataError("the current window is empty")
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise DataError(f"columns missing from reference or current: {missing}")
    if not columns:
        raise DataError("no columns to check for drift")


def _prediction_to_test(
    reference: pd.DataFrame, current: pd.DataFrame, wanted: Sequence[str], prediction_column: str | None
) -> str | None:
    """The prediction column when both frames have it with some values and it is not a feature."""
    if (
        prediction_column is not None
        and prediction_column not in wanted
        and prediction_column in reference.columns
        and prediction_column in current.columns
        and reference[prediction_column].notna().any()
        and current[prediction_column].notna().any()
    ):
        return prediction_column
    return None


def _decide(
    column: str,
    ref_values: pd.Series,
    current_values: pd.Series,
    is_feature: bool,
    cfg: DriftConfig,
    given_kinds: Mapping[str, ColumnKind] | None,
    memo: _Memo,
) -> tuple[ColumnKind, str, float]:
    """One column's kind, method and threshold (the configured one, else the method's default).

    ``ref_values``: the column in the reference sample; ``current_values``: in the whole window
    (a date column anywhere in it is refused). A feature constant in the reference sample is
    categorical and gets the bounded new-value test."""
    if given_kinds is not None and column in given_kinds and column not in cfg.categorical_columns:
        _refuse_dates(ref_values, column)
        kind = given_kinds[column]
    else:
        kind = column_kind(ref_values, column, cfg)
    _refuse_dates(current_values, column)
    if kind == "numerical" and not (
        pd.api.types.is_numeric_dtype(current_values) and pd.api.types.is_numeric_dtype(ref_values)
    ):
        kind = "categorical"  # e.g. numbers in reference, strings in current
    constant = is_feature and memo(("nunique", column), partial(_distinct, ref_values)) == 1
    if constant:
        kind = "categorical"
    method = _method(column, kind, cfg, constant)
    default = _check_method(column, kind, method, cfg)
    threshold = _threshold(column, kind, cfg)
    return kind, method, threshold if threshold is not None else default


def _untestable(column: str, kind: ColumnKind, method: str, limit: float, n_ref: int, n_cur: int) -> ColumnDrift:
    """A column with no values on one side. Evidently refuses an empty column. No values in the
    current window while the reference has some is a change worth flagging (drifted); no
    reference values is not testable."""
    return ColumnDrift(
        column=column,
        kind=kind,
        method=method,
        score=None,
        threshold=None if math.isnan(limit) else limit,
        drifted=n_ref > 0,
        n_reference=n_ref,
        n_current=n_cur,
        note="no values in the current sample" if n_ref else "no values in the reference sample",
    )


def _distinct(values: pd.Series) -> int:
    return int(values.nunique(dropna=True))


def _clean_counted(values: pd.Series, kind: ColumnKind) -> tuple[pd.Series, int]:
    cleaned = _clean(values, kind)
    return cleaned, int(cleaned.notna().sum())
