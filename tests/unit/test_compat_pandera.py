"""refit.compat.pandera: the fast path never accepts a row pandera rejects, and the public path
(pandera's ``schema.validate(lazy=True)`` alone) gives the same valid rows and quarantine.

Schemas are generated the way refit's own are written (``schemas/``): a ``BaseSchema``
subclass (coerce, strict) with int, float, bool, str, category and UTC datetime columns,
``nullable``, ``unique``, and the ``ge`` / ``le`` / ``isin`` / ``str_length`` fields. Frames mix
good values, bad values, missing values, wrong types, booleans and times spelled in many ways,
either as a column of one natural dtype or as an object column.

Where refit is deliberately stricter than pandera, the rule is stated here, apart from the
code under test: coercion is lossless. A boolean column reads real booleans, the numbers 0 and
1 and the words true/false, yes/no, 1/0 in any case (anything else is refused; pandera's
``astype`` would read every non-empty string as True); an integer column refuses a number with
a fractional part or outside the int64 range (pandera's ``astype`` would truncate or wrap it).
A datetime column reads, each value on its own, ISO 8601 times (``YYYY-MM-DD``, optionally
``[T ]HH:MM[:SS[.f]]`` with up to nine fractional digits and ``Z`` / ``+HH[:MM]``; without an
offset, UTC) and datetime objects (naive: UTC), and refuses anything else: numbers (pandas reads
an integer as nanoseconds), other text, and times outside ``datetime64[ns]``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from hypothesis import HealthCheck, assume, event, example, given, note, settings
from hypothesis import strategies as st
from pandera.errors import SchemaError, SchemaErrors
from pandera.typing.pandas import Series

import refit.compat
from refit.compat import pandera as pandera_compat
from refit.errors import ValidationFailedError
from refit.validation import ValidationResult, validate_frame
from schemas.base import BaseSchema
from schemas.churn import UtcTimestamp
from tests.lanes import repeats

# 60 generated cases each (15 in make test-fast; the explicit examples always run).
PROPERTY = settings(max_examples=repeats(full=60, fast=15), deadline=None, suppress_health_check=[HealthCheck.too_slow])

KINDS = ["int", "float", "bool", "str", "category", "datetime"]
ANNOTATION = {
    "int": Series[int],
    "float": Series[float],
    "bool": Series[bool],
    "str": Series[str],
    "category": Series[pd.CategoricalDtype],
    "datetime": Series[UtcTimestamp],
}
JAN_2 = pd.Timestamp("2026-01-02", tz="UTC")

# Values a column of each kind may hold: the first list is what a clean, typed column is drawn
# from; the second adds what arrives in an object column (wrong types, spellings, extremes).
GOOD = {
    "int": list(range(-2, 12)),
    "float": [-1.5, 0.0, 0.25, 0.5, 1.0, 3.0, 9.5, 11.0],
    "bool": [True, False],
    "str": ["a", "b", "c", "ab", "abcd", ""],
    "category": ["a", "b", "c"],
    "datetime": [JAN_2, JAN_2 + pd.Timedelta(hours=10), JAN_2 - pd.Timedelta(days=1), JAN_2 + pd.Timedelta("1.5s")],
}
ODD = {
    "int": [3.0, 2.5, -0.5, 1e20, -1e20, math.inf, None, math.nan, "4", "x", True, np.int32(7), np.float32(2.0)],
    "float": [math.nan, None, math.inf, -math.inf, "1.5", "x", True, 3, np.float32(0.5)],
    "bool": [0, 1, 2, 0.0, 1.0, 0.5, "yes", "No", "TRUE", "false", "1", "0", "maybe", "", "t", None, math.nan],
    "str": [None, math.nan, 5, 2.5, True, "  "],
    "category": [None, math.nan, "d", 5],
    "datetime": [
        *("2026-01-02T10:00:00Z", "2026-01-02T11:00+01:00", "2026-01-02 10:00:00", "2026-01-02"),
        "2026-01-01T23:00-0100",
        *("2026-01-02T10:00:00 ", "01/02/2026", "not a date", "", "1767227077", "2026-02-30", "3000-01-01", "2026-01"),
        *(1767227077, 1.5, 0, True, None, math.nan, pd.NaT),
        *(pd.Timestamp("2026-01-02 10:00"), pd.Timestamp("2026-01-02 11:00", tz="Europe/Paris"), dt.date(2026, 1, 2)),
    ],
}

TRUE_WORDS = {"true", "yes", "1"}
FALSE_WORDS = {"false", "no", "0"}
INT64 = np.iinfo(np.int64)
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d{1,9})?)?(Z|[+-]\d\d(:?\d\d)?)?)?")


# --------------------------------------------------------------------------------------------
# The lossless rule, as stated in the module docstring


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def bool_reading(value: Any) -> bool | None | str:
    """True, False, None (missing) or "refused", for one value of a boolean column."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if _missing(value):
        return None
    if isinstance(value, str):
        word = value.lower()
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else "refused"
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return bool(value)
    return "refused"


def int_refused(value: Any) -> bool:
    """A number an integer column refuses: fractional, infinite or outside int64."""
    if isinstance(value, bool | np.bool_ | str) or _missing(value):
        return False
    if not isinstance(value, int | float | np.integer | np.floating):
        return False
    if math.isinf(value):
        return True
    return int(value) != value or not INT64.min <= int(value) <= INT64.max


def time_reading(value: Any) -> pd.Timestamp | None | str:
    """The UTC time, None (missing) or "refused", for one value of a datetime column."""
    if _missing(value) or value is pd.NaT:
        return None
    if isinstance(value, str):
        if not ISO_TIME.fullmatch(value):
            return "refused"
    elif not isinstance(value, dt.date | np.datetime64):
        return "refused"
    try:
        stamp = pd.Timestamp(value).as_unit("ns")
    except ValueError:  # no such day, or outside datetime64[ns]
        return "refused"
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# --------------------------------------------------------------------------------------------
# Generated schemas and frames


@st.composite
def column_specs(draw: st.DrawFn, allow_unique: bool) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    field: dict[str, Any] = {"nullable": draw(st.booleans())}
    if kind == "int":
        field |= {"ge": draw(st.sampled_from([None, 0, 2])), "le": draw(st.sampled_from([None, 5, 10]))}
        field["isin"] = draw(st.sampled_from([None, [0, 1], list(range(6))]))
    elif kind == "float":
        field |= {"ge": draw(st.sampled_from([None, 0.0, -1.5])), "le": draw(st.sampled_from([None, 1.0, 10.0]))}
        field["isin"] = draw(st.sampled_from([None, [0.0, 1.0]]))
    elif kind == "str":
        field["isin"] = draw(st.sampled_from([None, ["a", "b", "c"]]))
        field["str_length"] = draw(st.sampled_from([None, {"min_value": 1, "max_value": 3}, {"min_value": 2}]))
    elif kind == "category":
        field["isin"] = draw(st.sampled_from([None, ["a", "b"]]))
    elif kind == "datetime":
        field["ge"] = draw(st.sampled_from([None, JAN_2]))
    if allow_unique and kind in ("int", "str", "datetime"):
        field["unique"] = draw(st.booleans())
    return {"kind": kind, "field": {k: v for k, v in field.items() if v is not None}}


def schema_of(specs: list[dict[str, Any]]) -> type[BaseSchema]:
    """A ``BaseSchema`` subclass with one column per spec (c0, c1, ...), written as
    ``c0: Series[int] = pa.Field(ge=0, ...)`` would be."""
    attrs: dict[str, Any] = {"__annotations__": {}, "__module__": __name__}
    for i, spec in enumerate(specs):
        attrs["__annotations__"][f"c{i}"] = ANNOTATION[spec["kind"]]
        attrs[f"c{i}"] = pa.Field(**spec["field"])
    return type("Generated", (BaseSchema,), attrs)


@st.composite
def cases(draw: st.DrawFn, allow_unique: bool = True) -> tuple[type[BaseSchema], pd.DataFrame]:
    specs = draw(st.lists(column_specs(allow_unique), min_size=1, max_size=4))
    n_rows = draw(st.integers(1, 8))
    columns: dict[str, pd.Series] = {}
    for i, spec in enumerate(specs):
        kind = spec["kind"]
        if draw(st.booleans()):  # a clean column of its natural dtype (ints with a gap read as floats)
            pool = GOOD[kind] + ([None] if kind in ("int", "float") and draw(st.booleans()) else [])
            values = draw(st.lists(st.sampled_from(pool), min_size=n_rows, max_size=n_rows))
            columns[f"c{i}"] = pd.Series(values)
        else:
            pool = GOOD[kind] + ODD[kind]
            values = draw(st.lists(st.sampled_from(pool), min_size=n_rows, max_size=n_rows))
            columns[f"c{i}"] = pd.Series(values, dtype=object)
    return schema_of(specs), pd.DataFrame(columns)


def _case(
    kind: str, field: dict[str, Any], values: list[Any], dtype: Any = None
) -> tuple[type[BaseSchema], pd.DataFrame]:
    return schema_of([{"kind": kind, "field": field}]), pd.DataFrame({"c0": pd.Series(values, dtype=dtype)})


# Cases these properties found, kept as examples so they are checked on every run.
INT64_INTO_NULLABLE_INT = _case("int", {"nullable": True}, [-2, 3])  # pandera returns Int64, not int64
CATEGORY_FAILURE = _case("category", {"isin": ["a", "b"]}, ["c"], object)  # a category-typed failure case
REPEATED_MISSING_UNIQUE = _case("int", {"nullable": True, "unique": True}, [None, None, 3], object)  # no row named
NUMBERS_AND_NUMERIC_STRINGS = _case("int", {"nullable": True}, [-2, "4"], object)  # Int64 cast fails as a whole
CHECK_BESIDE_A_COERCION_FAILURE = _case("int", {"isin": list(range(6))}, [None, "4"], object)  # "4" is 4: valid
EPOCH_SECONDS = _case("datetime", {}, ["2026-01-02T10:00:00Z", 1767227077], object)  # pandas: nanoseconds
ODD_TIMES_AMONG_ISO = _case("datetime", {}, ["2026-01-02T11:00+01:00", "2026-01-02", "01/02/2026", "x "], object)


# --------------------------------------------------------------------------------------------
# The paths


@contextmanager
def public_path() -> Iterator[None]:
    """The installed pandera reported as outside the tested range, for the duration."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(refit.compat, "installed_version", lambda distribution: "0.36.0")
        pandera_compat.fast_path_available.cache_clear()
        try:
            yield
        finally:
            pandera_compat.fast_path_available.cache_clear()


def _note(schema: type[BaseSchema], df: pd.DataFrame) -> None:
    """Say what a failing example holds (the frame's repr hides its values' types)."""
    columns = schema.to_schema().columns.items()
    note(f"schema: {[(n, str(c.dtype), c.nullable, c.unique, [str(k) for k in c.checks]) for n, c in columns]}")
    note(f"frame: {[(n, str(df[n].dtype), df[n].tolist()) for n in df.columns]}")


def _validate(df: pd.DataFrame, schema: type[BaseSchema]) -> ValidationResult | str:
    """The result, or the message of the frame-level refusal."""
    try:
        return validate_frame(df, schema, source="generated.parquet", max_invalid_fraction=1.0)
    except ValidationFailedError as exc:
        return str(exc)


def test_tested_version_and_known_parameters_enable_the_fast_path() -> None:
    pandera_compat.fast_path_available.cache_clear()
    assert pandera_compat.fast_path_available() is True
    with public_path():
        assert pandera_compat.fast_path_available() is False


def test_a_parameter_pandera_adds_turns_the_fast_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A constructor parameter the fast path does not know is a feature it would ignore."""
    known = dict(pandera_compat.KNOWN_PARAMETERS)
    known["Column"] = known["Column"] - {"on_missing"}  # as if pandera had just added it
    monkeypatch.setattr(pandera_compat, "KNOWN_PARAMETERS", known)
    pandera_compat.fast_path_available.cache_clear()
    try:
        assert pandera_compat.fast_path_available() is False
        assert (
            pandera_compat.validate_clean(
                pd.DataFrame({"c0": [1]}), schema_of([{"kind": "int", "field": {}}]).to_schema()
            )
            is None
        )
    finally:
        pandera_compat.fast_path_available.cache_clear()


def test_public_path_validates_every_frame_with_pandera(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = schema_of([{"kind": "int", "field": {"ge": 0}}, {"kind": "str", "field": {"isin": ["a", "b"]}}])
    df = pd.DataFrame({"c0": [1, 2, 3], "c1": ["a", "b", "a"]})
    calls: list[int] = []
    validate = pa.DataFrameSchema.validate

    def counted(self: pa.DataFrameSchema, *args: Any, **kwargs: Any) -> pd.DataFrame:
        calls.append(1)
        return validate(self, *args, **kwargs)

    monkeypatch.setattr(pa.DataFrameSchema, "validate", counted)
    fast = _validate(df, schema)
    assert calls == []
    with public_path():
        public = _validate(df, schema)
    assert calls == [1]
    assert isinstance(fast, ValidationResult) and isinstance(public, ValidationResult)
    pd.testing.assert_frame_equal(fast.valid, public.valid)


@PROPERTY
@given(case=cases())
@example(case=INT64_INTO_NULLABLE_INT)
@example(case=CATEGORY_FAILURE)
@example(case=REPEATED_MISSING_UNIQUE)
@example(case=NUMBERS_AND_NUMERIC_STRINGS)
@example(case=CHECK_BESIDE_A_COERCION_FAILURE)
@example(case=EPOCH_SECONDS)
@example(case=ODD_TIMES_AMONG_ISO)
def test_fast_path_and_public_path_give_the_same_valid_rows_and_quarantine(
    case: tuple[type[BaseSchema], pd.DataFrame],
) -> None:
    schema, df = case
    _note(schema, df)
    fast = _validate(df, schema)
    event("every row valid" if isinstance(fast, ValidationResult) and fast.quarantine.empty else "some row refused")
    with public_path():
        public = _validate(df, schema)
    if isinstance(fast, str) or isinstance(public, str):
        assert fast == public
        return
    pd.testing.assert_frame_equal(fast.valid, public.valid)
    pd.testing.assert_frame_equal(fast.quarantine, public.quarantine)
    assert fast.summary.to_dict() == public.summary.to_dict()


def _as_read(df: pd.DataFrame, schema: type[BaseSchema]) -> tuple[pd.DataFrame, set[int]]:
    """``df`` with boolean columns read by the lossless rule, and the rows the rule refuses."""
    refused: set[int] = set()
    out = df.copy()
    for name, column in schema.to_schema().columns.items():
        values = df[name].tolist()
        if str(column.dtype) in ("bool", "boolean"):
            readings = [bool_reading(v) for v in values]
            refused |= {i for i, r in enumerate(readings) if r == "refused"}
            kept = [None if r == "refused" else r for r in readings]
            out[name] = pd.array(kept, dtype="boolean") if None in kept else np.array(kept, dtype=bool)
        elif str(column.dtype) in ("int64", "Int64"):
            refused |= {i for i, v in enumerate(values) if int_refused(v)}
        elif str(column.dtype) == "datetime64[ns, UTC]":
            times = [time_reading(v) for v in values]
            refused |= {i for i, t in enumerate(times) if isinstance(t, str)}
            out[name] = pd.Series([None if isinstance(t, str) else t for t in times], dtype="datetime64[ns, UTC]")
    return out, refused


def _pandera_rejects(row: pd.DataFrame, schema: type[BaseSchema]) -> bool | None:
    """Does pandera reject this one-row frame? None when it refuses the column as a whole."""
    try:
        schema.to_schema().validate(row, lazy=True)
    except SchemaErrors as exc:
        return None if exc.failure_cases["index"].isna().all() else True
    except SchemaError:
        return None
    return False


def _strings_among_nullable_ints(df: pd.DataFrame, schema: type[BaseSchema]) -> bool:
    """Does an object column cast to the nullable Int64 hold strings beside other values?"""
    for name, column in schema.to_schema().columns.items():
        mixed = {isinstance(v, str) for v in df[name] if not _missing(v)} == {True, False}
        if str(column.dtype) == "Int64" and df[name].dtype == object and mixed:
            return True
    return False


@PROPERTY
@given(case=cases(allow_unique=False))
@example(case=INT64_INTO_NULLABLE_INT)
@example(case=CATEGORY_FAILURE)
@example(case=CHECK_BESIDE_A_COERCION_FAILURE)
@example(case=EPOCH_SECONDS)
@example(case=ODD_TIMES_AMONG_ISO)
def test_quarantine_is_exactly_what_pandera_and_the_lossless_rule_reject(
    case: tuple[type[BaseSchema], pd.DataFrame],
) -> None:
    """Each row judged on its own: refused by the lossless rule, else by pandera's validate;
    the rows that pass alone must pass together. (Uniqueness is a property of the frame, not of
    a row: the parity test above covers it.)

    pandera coerces a column as a whole, and may refuse it with no row to blame: refit then
    stops the run with the column and the rule, and only then. One mix is left out: pandas
    casts a column to the nullable Int64 as a whole, so numbers beside numeric strings (or
    booleans beside them) fail together where each casts alone, and pandera then blames rows
    that pass on their own. refit follows pandera there; the parity test above covers it."""
    schema, df = case
    assume(not _strings_among_nullable_ints(df, schema))
    _note(schema, df)
    as_read, refused = _as_read(df, schema)
    judged = {i: _pandera_rejects(as_read.iloc[[i]], schema) for i in range(len(df)) if i not in refused}
    passing = [i for i, bad in judged.items() if bad is False]
    together = _pandera_rejects(as_read.iloc[passing], schema) if passing else False
    result = _validate(df, schema)
    if None in judged.values() or together is None:
        event("refused as a whole")
        assert isinstance(result, str) and "fails" in result, result
        return
    event(f"{len(refused)} by the lossless rule, {sum(bool(bad) for bad in judged.values())} by pandera")
    assert together is False
    assert isinstance(result, ValidationResult), result
    rejected = refused | {i for i, bad in judged.items() if bad}
    assert set(result.quarantine.get("_refit_row", [])) == rejected
    if passing:
        expected = schema.to_schema().validate(as_read.iloc[passing], lazy=True)
        pd.testing.assert_frame_equal(result.valid, expected.reset_index(drop=True))
    else:
        assert result.valid.empty
