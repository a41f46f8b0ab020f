"""Feature preprocessing fitted on the training split only, stored as plain JSON.

Numeric columns: median imputation (plus a missing-indicator column for every column that
had a NaN in training), robust scaling by median and IQR, clipping. Categorical columns: a
sorted vocabulary from training, index 0 is the bucket for unseen values and NaN. Booleans
are numeric 0/1. The fitted state is a dict of lists and floats: never pickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from refit.errors import DataError

FORMAT_VERSION = 1
UNKNOWN_INDEX = 0


def infer_columns(df: pd.DataFrame, columns: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Split feature columns into (numeric, categorical) by dtype.

    Numbers and booleans are numeric; strings, objects and pandas categoricals are
    categorical. Anything else (datetimes, timedeltas) is a DataError: derive a numeric
    feature from it first.
    """
    columns = list(df.columns) if columns is None else list(columns)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"feature columns missing from the frame: {', '.join(missing)}")
    numeric: list[str] = []
    categorical: list[str] = []
    for col in columns:
        dtype = df[col].dtype
        if pd.api.types.is_bool_dtype(dtype) or (
            pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)
        ):
            numeric.append(col)
        elif (
            pd.api.types.is_object_dtype(dtype)
            or pd.api.types.is_string_dtype(dtype)
            or isinstance(dtype, pd.CategoricalDtype)
        ):
            categorical.append(col)
        else:
            raise DataError(f"column {col!r} has unsupported dtype {dtype} for a feature")
    return numeric, categorical


def _numeric_values(df: pd.DataFrame, col: str) -> np.ndarray:
    """A float64 copy of a numeric / boolean column; NaN (and +-inf) where missing."""
    series = df[col]
    if not (pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype)):
        try:
            series = pd.to_numeric(series)
        except (TypeError, ValueError):
            raise DataError(f"column {col!r} must be numeric (got dtype {series.dtype})") from None
    try:
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataError(f"column {col!r} must be numeric (got dtype {series.dtype})") from None
    values = np.array(values, dtype=np.float64, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def _is_boolean(series: pd.Series) -> bool:
    return bool(pd.api.types.is_bool_dtype(series.dtype))


def _category_keys(series: pd.Series) -> pd.Series:
    # "string" keeps NaN as <NA> (astype(str) would turn it into the word "nan").
    return series.astype("string")


class Preprocessor:
    """Fitted numeric / categorical preprocessing. Build it with :meth:`fit` or :meth:`from_dict`.

    ``medians`` fill missing values; ``(x - centers) / scales`` is then clipped (booleans have
    centre 0 and scale 1, so they stay 0/1).
    """

    def __init__(
        self,
        numeric: list[str],
        categorical: list[str],
        medians: list[float],
        centers: list[float],
        scales: list[float],
        missing_indicators: list[str],
        vocab: dict[str, list[str]],
        clip: float = 10.0,
    ) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.medians = [float(v) for v in medians]
        self.centers = [float(v) for v in centers]
        self.scales = [float(v) for v in scales]
        self.missing_indicators = list(missing_indicators)
        self.vocab = {k: list(v) for k, v in vocab.items()}
        self.clip = float(clip)
        self._index = {col: pd.Index(self.vocab[col]) for col in self.categorical}

    @classmethod
    def fit(
        cls,
        train_df: pd.DataFrame,
        numeric_cols: Sequence[str],
        categorical_cols: Sequence[str],
        clip: float = 10.0,
        max_categories: int | None = 1000,
    ) -> Preprocessor:
        """Fit on the training split only.

        Args:
            train_df: The training rows.
            numeric_cols: Numeric (and boolean) feature columns.
            categorical_cols: Categorical feature columns.
            clip: Scaled numeric values are clipped to ``[-clip, clip]``.
            max_categories: Keep the most frequent categories (ties by name); the rest share
                the unknown bucket. None keeps all.
        """
        if len(train_df) == 0:
            raise DataError("cannot fit preprocessing on an empty training frame")
        overlap = set(numeric_cols) & set(categorical_cols)
        if overlap:
            raise DataError(f"columns both numeric and categorical: {', '.join(sorted(overlap))}")
        medians: list[float] = []
        centers: list[float] = []
        scales: list[float] = []
        indicators: list[str] = []
        for col in numeric_cols:
            values = _numeric_values(train_df, col)
            finite = values[~np.isnan(values)]
            if finite.size < values.size:
                indicators.append(col)
            if finite.size == 0:
                medians.append(0.0)
                centers.append(0.0)
                scales.append(1.0)
                continue
            q25, median, q75 = np.percentile(finite, [25, 50, 75])
            medians.append(float(median))
            if _is_boolean(train_df[col]):
                # Flags stay 0/1: imputed with the median, neither centred nor scaled.
                centers.append(0.0)
                scales.append(1.0)
                continue
            iqr = float(q75 - q25)
            centers.append(float(median))
            scales.append(iqr if iqr > 0 and np.isfinite(iqr) else 1.0)
        vocab: dict[str, list[str]] = {}
        for col in categorical_cols:
            counts = _category_keys(train_df[col]).value_counts(dropna=True)
            names = [str(k) for k in counts.index]
            if max_categories is not None and len(names) > max_categories:
                ranked = sorted(zip(counts.to_numpy().tolist(), names, strict=True), key=lambda t: (-t[0], t[1]))
                names = [name for _, name in ranked[:max_categories]]
            vocab[col] = sorted(names)
        return cls(list(numeric_cols), list(categorical_cols), medians, centers, scales, indicators, vocab, clip)

    @property
    def numeric_feature_names(self) -> list[str]:
        """Columns of ``X_num``: the scaled numerics, then one indicator per imputed column."""
        return self.numeric + [f"{col}__missing" for col in self.missing_indicators]

    @property
    def cardinalities(self) -> list[int]:
        """Per categorical column: vocabulary size + 1 (the unknown bucket)."""
        return [len(self.vocab[col]) + 1 for col in self.categorical]

    @property
    def columns(self) -> list[str]:
        return self.numeric + self.categorical

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(X_num float32 [n, n_num], X_cat int64 [n, n_cat])``; unseen categories -> 0."""
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise DataError(f"input is missing feature columns: {', '.join(missing)}")
        n = len(df)
        x_num = np.empty((n, len(self.numeric_feature_names)), dtype=np.float32)
        base = len(self.numeric)
        for j, col in enumerate(self.numeric):
            values = _numeric_values(df, col)
            nan = np.isnan(values)
            if col in self.missing_indicators:
                x_num[:, base + self.missing_indicators.index(col)] = nan
            values[nan] = self.medians[j]
            np.clip((values - self.centers[j]) / self.scales[j], -self.clip, self.clip, out=values)
            x_num[:, j] = values
        x_cat = np.empty((n, len(self.categorical)), dtype=np.int64)
        for j, col in enumerate(self.categorical):
            codes = self._index[col].get_indexer(_category_keys(df[col]).to_numpy(dtype=object, na_value=None))
            x_cat[:, j] = codes + 1  # -1 (unseen / NaN) -> 0
        return x_num, x_cat

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "medians": self.medians,
            "centers": self.centers,
            "scales": self.scales,
            "missing_indicators": self.missing_indicators,
            "vocab": self.vocab,
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise DataError(f"preprocessing format version {version!r} is not supported (expected {FORMAT_VERSION})")
        return cls(
            numeric=data["numeric"],
            categorical=data["categorical"],
            medians=data["medians"],
            centers=data["centers"],
            scales=data["scales"],
            missing_indicators=data["missing_indicators"],
            vocab=data["vocab"],
            clip=data["clip"],
        )
