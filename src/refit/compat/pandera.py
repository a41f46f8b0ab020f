"""pandera's internals, used by the fast path that proves a clean frame valid without pandera.

pandera's lazy validation is built to collect failure cases, and pays for it on clean data too
(a Python-level ``isinstance`` per string value, copies of the frame): most of a second per
million rows. Most batches are clean, so :func:`validate_clean` checks the same rules first,
each vectorised over whole columns: pandera's own dtype coercion and dtype check, ``nullable``,
``unique``, and every column ``Check`` object of the schema, called as pandera calls it. It
answers only "every row passes" (the coerced frame) or "not sure" (None): pandera's
``schema.validate(lazy=True)`` then validates the frame and reports the failure cases.

It reaches past pandera's public API (the private ``Check._check_fn`` / ``_check_kwargs``, the
``pandera.engines`` and ``pandera.backends`` modules) and re-implements what ``validate``
checks, so it is only as right as its knowledge of pandera. Two guards keep a pandera upgrade
from turning it into a path that accepts rows pandera rejects:

* the installed pandera must be in :data:`TESTED` (the version ``constraints.txt`` pins, and
  its patch releases);
* the constructor parameters of ``DataFrameSchema``, ``Column`` and ``Check`` must be exactly
  the ones this module knows (:data:`KNOWN_PARAMETERS`): a new parameter is a feature the fast
  path would silently ignore.

Otherwise :func:`fast_path_available` is False, :func:`validate_clean` always answers None, and
every frame goes through ``schema.validate``: the same results, slower.
``tests/unit/test_compat_pandera.py`` checks both paths against each other on generated
schemas and frames.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import pandas as pd

from refit import compat

#: pandera versions the fast path is tested with: at least the first, older than the second.
TESTED = ("0.35.0", "0.36")

#: Every constructor parameter of the objects the fast path reads, as of the tested versions.
#: Each is either checked by :func:`validate_clean`, sends the frame to pandera when set, or
#: cannot change which rows pass (names, titles, reporting options, hypothesis strategies).
KNOWN_PARAMETERS: dict[str, frozenset[str]] = {
    "DataFrameSchema": frozenset(
        {
            "columns",
            "checks",  # frame-level checks: pandera
            "parsers",  # pandera
            "index",  # pandera
            "dtype",  # a frame-wide dtype: pandera
            "coerce",
            "strict",
            "name",
            "ordered",  # pandera
            "unique",  # multi-column uniqueness: pandera
            "report_duplicates",
            "unique_column_names",  # pandera
            "add_missing_columns",  # pandera
            "on_missing_columns",  # set: pandera
            "title",
            "description",
            "metadata",
            "drop_invalid_rows",  # pandera
        }
    ),
    "Column": frozenset(
        {
            "dtype",
            "checks",
            "parsers",  # pandera
            "nullable",
            "unique",
            "report_duplicates",
            "coerce",
            "required",  # an optional column left out is skipped, present it is checked
            "name",
            "regex",  # pandera
            "title",
            "description",
            "default",  # pandera
            "metadata",
            "drop_invalid_rows",  # pandera
            "on_missing",  # set on an optional column: pandera
        }
    ),
    "Check": frozenset(
        {
            "check_fn",
            "groups",
            "groupby",  # pandera
            "ignore_na",  # a column with missing values is checked by pandera's own call
            "element_wise",  # element-wise checks: pandera's own call
            "native",  # read by the Narwhals backend only
            "name",
            "error",
            "raise_warning",  # a failing check sends the frame to pandera, which decides
            "n_failure_cases",
            "title",
            "description",
            "statistics",
            "strategy",
            "constraint",
            "determined_by_unique",
            "check_kwargs",
        }
    ),
}


def _parameters(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls).parameters)


@functools.cache
def fast_path_available() -> bool:
    """Is the installed pandera one the fast path knows? Decided once per process."""
    if not compat.version_in_range("pandera", *TESTED):
        return False
    try:
        import pandera.backends.pandas.builtin_checks  # noqa: F401 - registers the pandas versions of isin, ge ...
        import pandera.pandas as pa
        from pandera.engines.pandas_engine import Engine

        probe = pa.Check.ge(0)
        internals = callable(probe._check_fn) and isinstance(probe._check_kwargs, dict) and callable(Engine.dtype)
        found = {"DataFrameSchema": pa.DataFrameSchema, "Column": pa.Column, "Check": pa.Check}
        known = all(_parameters(cls) == KNOWN_PARAMETERS[name] for name, cls in found.items())
    except (ImportError, AttributeError):
        return False
    if not (internals and known):
        compat.log.warning("pandera's internals are not the ones refit knows: validating with its public API (slower)")
    return internals and known


def _check_passes(check: Any, series: pd.Series, has_nulls: bool) -> bool:
    """Does every value pass ``check``? Through pandera, except that a vectorised check of a
    column without missing values calls its function directly: pandera would only add a
    null scan (``hasnans``, tens of ms per million strings) that drops nothing."""
    if has_nulls or check.element_wise:
        return bool(check(series).check_passed)
    try:
        output = check._check_fn(series, **check._check_kwargs)
    except Exception:  # not callable on its own after all: pandera's own call decides
        return bool(check(series).check_passed)
    return bool(output.all()) if hasattr(output, "all") else bool(output)


def _is_unique(series: pd.Series) -> bool:
    values = series.to_numpy()
    if values.dtype.kind in "iu" and len(values) > 1 and bool((values[1:] > values[:-1]).all()):
        return True  # strictly increasing (ids as written): no hashing needed
    return not bool(series.duplicated().any())


def _coerced_column(
    series: pd.Series, column: Any, coerce: bool, prepare: Callable[[pd.Series, Any], pd.Series | None]
) -> pd.Series | None:
    """``series`` as pandera would leave it after coercion and its dtype check, or None when
    either would fail (or could not be decided here, e.g. a dtype this path does not know)."""
    from pandera.engines.pandas_engine import Engine

    want = column.dtype
    if want is None:
        return series
    if str(want) == "str":
        # pandera's check maps isinstance(x, str) over every value in Python; infer_dtype is
        # the same test in one C pass ("string": every value, or every non-missing one, is a str).
        if series.dtype != object:
            return None
        if pd.api.types.infer_dtype(series, skipna=False) == "string":
            return series
        nullable_strings = column.nullable and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")
        return series if nullable_strings else None
    if coerce:
        prepared = prepare(series, column)
        if prepared is None:
            return None
        series = prepared
    # pandera coerces whenever coercion is on, even to a dtype its check accepts as it is
    # (int64 data in a nullable Int64 column comes back as Int64): so does this path.
    if coerce and series.dtype != getattr(want, "type", None):
        try:
            series = want.try_coerce(series)
        except Exception:  # pandera reports which values failed, with its own message
            return None
    if not want.check(Engine.dtype(series.dtype)):
        return None
    return series


def _schema_supported(schema: Any) -> bool:
    """Does ``schema`` use only what :func:`validate_clean` checks (see :data:`KNOWN_PARAMETERS`)?"""
    import pandera.pandas as pa

    if not isinstance(schema, pa.DataFrameSchema) or schema.index is not None or schema.checks or schema.unique:
        return False
    if schema.parsers or schema.add_missing_columns or schema.drop_invalid_rows or schema.ordered:
        return False
    if schema.dtype is not None or schema.unique_column_names or schema.on_missing_columns is not None:
        return False
    for column in schema.columns.values():
        if column.regex or column.parsers or column.drop_invalid_rows:
            return False
        if not column.required and column.on_missing is not None:  # pandera warns when it is left out
            return False
        if column.default is not None or any(check.groupby is not None for check in column.checks):
            return False
    return True


def _no_preparation(series: pd.Series, column: Any) -> pd.Series | None:
    return series


def validate_clean(
    df: pd.DataFrame,
    schema: Any,
    prepare: Callable[[pd.Series, Any], pd.Series | None] = _no_preparation,
) -> pd.DataFrame | None:
    """``df`` as ``schema.validate`` would return it, when every row passes every rule; else None.

    None means "let pandera decide": a failure, a schema feature this path does not cover
    (index, frame-level checks or uniqueness, parsers, regex columns ...), or a pandera this
    module does not know (:func:`fast_path_available`).

    Args:
        df: the frame, with every required schema column present.
        schema: a pandera ``DataFrameSchema``.
        prepare: the caller's own rule before pandera's coercion, for a column that coerces:
            the series to hand to pandera's coercion, or None when the frame must not pass.
    """
    if not fast_path_available() or not _schema_supported(schema):
        return None
    out: dict[str, pd.Series] = {}
    for name, column in schema.columns.items():
        if not column.required and name not in df.columns:
            continue  # an optional column left out (checked like any other when present)
        if name not in df.columns:
            return None
        series = _coerced_column(df[name], column, bool(schema.coerce or column.coerce), prepare)
        if series is None:
            return None
        if series.dtype.kind in "iub":
            has_nulls = False
        elif str(column.dtype) == "str":  # _coerced_column told strings from missing values
            has_nulls = column.nullable and bool(series.isna().any())
        else:
            has_nulls = bool(series.isna().any())
        if has_nulls and not column.nullable:
            return None
        if column.unique and not _is_unique(series):
            return None
        for check in column.checks:
            try:
                passed = _check_passes(check, series, has_nulls)
            except Exception:  # pandera records the error as a failure of this check
                return None
            if not passed:
                return None
        out[name] = series
    extra = [c for c in df.columns if c not in out]
    if extra and (schema.strict is True or schema.strict == "filter"):
        return None  # pandera rejects unknown columns under strict, and drops them under "filter"
    changed = {n: s for n, s in out.items() if s is not df[n]}
    return df.assign(**changed) if changed else df
