"""How refit reads a boolean: the one home for the spellings a boolean column accepts, shared by
validation (training data, captures) and by a loaded model's input check (``refit predict``,
serving), so that what one accepts the other does too. No pandera here: serving loads models
without it.

A boolean reads real booleans, the numbers 0 and 1, and the strings of :data:`TRUE_SPELLINGS` /
:data:`FALSE_SPELLINGS` in any case; a missing value stays missing; anything else is refused.
"""

from __future__ import annotations

import decimal
import fractions
from typing import Any

import numpy as np
import pandas as pd

#: Strings a boolean column reads as True / False (compared case-insensitively, no other spelling).
TRUE_SPELLINGS = frozenset({"true", "yes", "1"})
FALSE_SPELLINGS = frozenset({"false", "no", "0"})
_BOOL_WORDS = {word: True for word in TRUE_SPELLINGS} | {word: False for word in FALSE_SPELLINGS}
#: What :func:`bool_of` answers for a value that is no boolean.
NOT_BOOL = object()


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, decimal.Decimal):
        return value.is_nan()
    return isinstance(value, float | np.floating) and value != value


def bool_of(value: Any) -> Any:
    """True, False, None (missing) or NOT_BOOL, for one value of a boolean column."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str):
        return _BOOL_WORDS.get(value.lower(), NOT_BOOL)
    if is_missing(value):
        return None
    if isinstance(value, int | np.integer | float | np.floating | decimal.Decimal | fractions.Fraction):
        if value == 1:
            return True
        if value == 0:
            return False
    return NOT_BOOL


def lossless_bool(series: pd.Series, name: str) -> tuple[pd.Series, list[tuple[np.ndarray, str]]]:
    """``series`` as booleans (pandas' nullable ``boolean`` when a value is missing), and the
    values that are no accepted spelling. Bad values become False here: their rows are dropped."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series, []
    if series.dtype.kind in "iuf":
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values)
        truth = values == 1
        bad = ~missing & ~truth & (values != 0)
    else:
        raw = series.to_numpy(dtype=object)
        try:  # a column holds few distinct spellings: judge each once (equal values judge alike)
            codes, uniques = pd.factorize(raw, use_na_sentinel=True)
        except TypeError:  # unhashable cells
            codes, uniques = np.arange(len(raw)), raw
        judged = [bool_of(v) for v in uniques] + [None]  # code -1: missing
        truth = np.array([v is True for v in judged])[codes]
        missing = np.array([v is None for v in judged])[codes]
        bad = np.array([v is NOT_BOOL for v in judged])[codes]
    keep_missing = missing & ~bad
    array: Any = pd.arrays.BooleanArray(truth, keep_missing) if keep_missing.any() else truth
    out = pd.Series(array, index=series.index, name=series.name)
    return out, [(bad, f"coerce_dtype('{name}'): not true/false, yes/no or 1/0")]
