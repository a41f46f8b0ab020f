"""Column preparation: each column's kind (categorical or numerical), cleaned values, method
and threshold."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from refit.compat import evidently as evidently_compat
from refit.compat.evidently import ColumnKind
from refit.config import DriftConfig
from refit.drift import null as drift_null
from refit.errors import ConfigError, DataError


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
