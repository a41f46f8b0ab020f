"""Validation with quarantine: split a frame into valid rows and rejected rows with reasons.

pandera does the checking (lazy, so every fault is collected in one pass); this module turns
its failure cases into a per-row quarantine and a per-(column, rule) summary, and decides
when a run must stop. Nothing is dropped silently: every rejected row is returned with the
rule(s) it broke and the file it came from.

Coercion is lossless or the row is invalid. pandera's own coercion is ``astype``: every
non-empty string becomes ``True`` and ``0.6`` becomes ``0``. Before pandera (and the fast
path) see a frame, :func:`_lossless_coercion` turns boolean columns' accepted spellings into
booleans and quarantines every value of a boolean or integer column that would change:

* a boolean column accepts real booleans, the numbers 0 and 1, and the strings in
  :data:`TRUE_SPELLINGS` / :data:`FALSE_SPELLINGS` (case-insensitive); a missing value stays
  missing and the column's ``nullable`` decides;
* an integer column refuses a number with a fractional part and one outside the integer
  type's range;
* a datetime column reads ISO 8601 times and datetime objects, each value on its own, and
  refuses numbers (pandas would read epoch seconds as nanoseconds), ambiguous dates
  (``01/02/2026``) and other text: :mod:`refit.timestamps`.
"""

from __future__ import annotations

import decimal
import fractions
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandera.errors import SchemaError, SchemaErrors

from refit.booleans import FALSE_SPELLINGS as FALSE_SPELLINGS  # re-exported: they were defined here
from refit.booleans import TRUE_SPELLINGS as TRUE_SPELLINGS
from refit.booleans import is_missing, lossless_bool
from refit.compat import pandera as pandera_compat
from refit.errors import ValidationFailedError
from refit.timestamps import read_times

SOURCE_COLUMN = "_refit_source"
ERRORS_COLUMN = "_refit_errors"
_MAX_EXAMPLES = 5
_MAX_PASSES = 3
#: Longest value (as shown) echoed in an error, a summary or a quarantine reason.
MAX_SHOWN_CHARS = 80


def shorten(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was: a value quoted in a
    message must not be the message (a 1M-character cell). The quarantine keeps the full value."""
    if len(text) <= limit:
        return text
    suffix = f"... ({len(text):,} chars)"
    return text[: max(limit - len(suffix), 16)] + suffix


def _shown(value: Any) -> str:
    """A failing value as examples show it: strings quoted, everything cut by :func:`shorten`."""
    return shorten(repr(value) if isinstance(value, str) else str(value))


@dataclass(frozen=True)
class RuleFailure:
    """How many rows broke one rule of one column, with a few examples."""

    column: str
    rule: str
    count: int
    examples: list[str]
    sources: list[str]


@dataclass(frozen=True)
class ValidationSummary:
    schema: str
    sources: list[str]
    rows: int
    valid_rows: int
    invalid_rows: int
    max_invalid_fraction: float
    failures: list[RuleFailure] = field(default_factory=list)
    quarantine_uri: str | None = None

    @property
    def invalid_fraction(self) -> float:
        return self.invalid_rows / self.rows if self.rows else 0.0

    @property
    def passed(self) -> bool:
        return self.invalid_fraction <= self.max_invalid_fraction

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "sources": self.sources,
            "rows": self.rows,
            "valid_rows": self.valid_rows,
            "invalid_rows": self.invalid_rows,
            "invalid_fraction": self.invalid_fraction,
            "max_invalid_fraction": self.max_invalid_fraction,
            "passed": self.passed,
            "quarantine_uri": self.quarantine_uri,
            "failures": [f.__dict__ for f in self.failures],
        }

    def one_line(self) -> str:
        """The run-stopping message: file(s), column(s), rule(s) and counts on one line."""
        files = ", ".join(sorted({s for f in self.failures for s in f.sources}) or self.sources)
        rules = "; ".join(
            f"{f.column} {f.rule} x{f.count} (e.g. {f.examples[0]})"
            if f.examples
            else f"{f.column} {f.rule} x{f.count}"
            for f in self.failures[:6]
        )
        more = f"; +{len(self.failures) - 6} more rules" if len(self.failures) > 6 else ""
        where = f"; rejected rows kept at {self.quarantine_uri}" if self.quarantine_uri else ""
        return (
            f"{files}: {self.invalid_rows} of {self.rows} rows invalid "
            f"({self.invalid_fraction:.2%} {'<=' if self.passed else '>'} max {self.max_invalid_fraction:.2%}): "
            f"{rules}{more}{where}"
        )


@dataclass(frozen=True)
class ValidationResult:
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    summary: ValidationSummary


def schema_of(schema_model: Any) -> Any:
    return schema_model.to_schema() if hasattr(schema_model, "to_schema") else schema_model


def text_columns(schema_model: Any) -> list[str]:
    """The columns ``schema_model`` declares as strings or categories of strings: a CSV reader takes them as
    written (``02134`` stays ``02134``, ``1.0`` stays ``1.0``), not as the numbers pandas would
    guess, which the schema's coercion would then turn into other strings (``2134``)."""
    from pandera.dtypes import is_category, is_string

    schema = schema_of(schema_model)

    def textual(dtype: Any) -> bool:
        if is_string(dtype):
            return True
        # a category of strings (or of categories not declared); one of numbers reads as numbers
        categories = getattr(dtype, "categories", None)
        return is_category(dtype) and (categories is None or all(isinstance(c, str) for c in categories))

    return [str(name) for name, column in schema.columns.items() if column.dtype is not None and textual(column.dtype)]


def _short_rule(check: str) -> str:
    return str(check).replace("greater_than_or_equal_to", ">=").replace("less_than_or_equal_to", "<=")


def _sources_list(sources: pd.Series) -> list[str]:
    """Distinct sources in order of appearance. Rows come file by file, so only the first row
    of each run of equal sources is hashed (a million rows from one file: one value)."""
    values = sources.to_numpy()
    if values.dtype == object and len(values) > 1:
        values = values[np.r_[0, np.flatnonzero(values[1:] != values[:-1]) + 1]]
    return [str(s) for s in pd.unique(values)]


def check_frame_shape(df: pd.DataFrame, schema_model: Any, source: str) -> None:
    """Frame-level faults that stop a run whatever the threshold: empty, missing/unknown columns."""
    schema = schema_of(schema_model)
    if df.shape[1] == 0 or len(df) == 0:
        raise ValidationFailedError(f"{source}: file is empty (no rows)")
    missing = [c for c, column in schema.columns.items() if c not in df.columns and column.required]
    if missing:
        raise ValidationFailedError(
            f"{source}: missing required column(s) {', '.join(shorten(str(c)) for c in missing)} "
            f"(rule: column_in_dataframe, schema {schema.name})"
        )
    if getattr(schema, "strict", False) is True:
        extra = [c for c in df.columns if c not in schema.columns and c != SOURCE_COLUMN]
        if extra:
            raise ValidationFailedError(
                f"{source}: unexpected column(s) {', '.join(shorten(str(c)) for c in extra)} "
                f"(rule: column_in_schema, schema {schema.name})"
            )


def _row_failures(fc: pd.DataFrame) -> pd.DataFrame:
    """Row-level failure cases (column, rule, value, row); uniqueness keeps each first occurrence."""
    rows = fc[fc["index"].notna()].copy()
    rows["index"] = rows["index"].astype(np.int64)
    uniq = rows["check"].astype(str) == "field_uniqueness"
    if uniq.any():
        # pandera lists every occurrence of a repeated value, as coerced ("3" and 3 are one
        # value, which the raw column cannot tell): all but the first occurrence are faults.
        dups = rows[uniq]
        first = dups.groupby([dups["column"], dups["failure_case"]], dropna=False, sort=False)["index"].transform("min")
        rows = rows[~uniq | (rows["index"] != first.reindex(rows.index))]
    # A column whose coercion failed was checked as it came, uncoerced: its dtype(...) failures
    # repeat the coercion's, and its other rules judged raw values ("4" is not in [0, 5], 4 is).
    # Only the coercion failures and missing values are sure; the rows they leave are checked
    # again, coerced, on the next pass.
    check = rows["check"].astype(str)
    coercion = check.str.startswith("coerce_dtype")
    sure = coercion | (check == "not_nullable")
    uncoerced = rows["column"].isin(set(rows.loc[coercion, "column"])) & ~sure
    return rows[~uncoerced]


_LossyValues = list[tuple[np.ndarray, str]]  # (mask of the values a coercion would change, the rule)


def _coerce_kind(column: Any) -> tuple[str, Any] | None:
    """("bool" | "int" | "datetime", the target dtype) when ``column`` coerces to a boolean,
    integer or datetime dtype."""
    target = getattr(column.dtype, "type", None)
    if target is None:
        return None
    try:
        if pd.api.types.is_bool_dtype(target):
            return "bool", target
        if pd.api.types.is_integer_dtype(target):
            return "int", target
        if pd.api.types.is_datetime64_any_dtype(target):
            return "datetime", target
    except TypeError:  # a dtype pandas does not know: pandera alone decides
        return None
    return None


def _lossless_int(series: pd.Series, target: Any, name: str) -> _LossyValues:
    """The values of ``series`` that an integer cast would change: a fractional part, or
    outside the target's range (numpy wraps them, or gives the minimum for a float)."""
    info = np.iinfo(getattr(target, "numpy_dtype", target))
    kind = series.dtype.kind
    fractional = out_of_range = None
    if kind in "iu":
        src = np.iinfo(getattr(series.dtype, "numpy_dtype", series.dtype))
        if src.min >= info.min and src.max <= info.max:
            return []
        values = series.to_numpy(dtype=src.dtype, na_value=0)
        out_of_range = (values < info.min) | (values > info.max)
    elif kind == "f":
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        present = ~np.isnan(values)
        # float(info.max) + 1 is exact (a power of two) where float(info.max) may round up
        out_of_range = present & ~((values >= float(info.min)) & (values < float(info.max) + 1))
        fractional = present & ~out_of_range & (np.floor(values) != values)
    elif kind == "O":
        raw = series.to_numpy(dtype=object)
        fractional = np.zeros(len(raw), dtype=bool)
        out_of_range = np.zeros(len(raw), dtype=bool)
        for i, value in enumerate(raw):
            if isinstance(value, bool | np.bool_ | str) or is_missing(value):
                continue  # strings: pandera's int() refuses "35.9"; bools are 0 and 1
            if not isinstance(value, int | np.integer | float | np.floating | decimal.Decimal | fractions.Fraction):
                continue
            try:
                whole = int(value)
            except (OverflowError, ValueError, ArithmeticError):  # infinities
                out_of_range[i] = True
                continue
            if whole != value:
                fractional[i] = True
            elif not info.min <= whole <= info.max:
                out_of_range[i] = True
    else:
        return []
    out: _LossyValues = []
    if fractional is not None:
        out.append((fractional, f"coerce_dtype('{name}'): fractional part"))
    out.append((out_of_range, f"coerce_dtype('{name}'): outside the {name} range"))
    return out


def _lossless_column(series: pd.Series, column: Any) -> tuple[pd.Series, _LossyValues]:
    """``series`` ready for pandera's coercion (booleans read from their spellings) and the
    values that coercion would change, each with its rule."""
    kind = _coerce_kind(column)
    if kind is None:
        return series, []
    if kind[0] == "bool":
        return lossless_bool(series, str(column.dtype))
    if kind[0] == "datetime":
        return read_times(series, kind[1], str(column.dtype))
    return series, _lossless_int(series, kind[1], str(column.dtype))


def _lossless_coercion(df: pd.DataFrame, schema: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``df`` with the boolean columns of ``schema`` read from their accepted spellings, and the
    failure cases (column, check, failure_case, index) of every value that coercing to a
    boolean or integer column would change: those rows are quarantined, never coerced."""
    parts: list[pd.DataFrame] = []
    changed: dict[str, pd.Series] = {}
    for name, column in schema.columns.items():
        if name not in df.columns or not (schema.coerce or column.coerce):
            continue
        series, lossy = _lossless_column(df[name], column)
        if series is not df[name]:
            changed[name] = series
        for mask, rule in lossy:
            where = np.flatnonzero(mask)
            if len(where):
                parts.append(
                    pd.DataFrame(
                        {
                            "column": name,
                            "check": rule,
                            "failure_case": pd.Series(df[name].to_numpy(dtype=object)[where], dtype=object),
                            "index": df.index.to_numpy()[where].astype(np.int64),
                        }
                    )
                )
    failures = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({"column": [], "check": [], "failure_case": [], "index": np.array([], dtype=np.int64)})
    )
    return (df.assign(**changed) if changed else df), failures


def _lossless_prepared(series: pd.Series, column: Any) -> pd.Series | None:
    """``series`` ready for pandera's coercion, or None when the lossless rule refuses a value."""
    series, lossy = _lossless_column(series, column)
    return None if any(mask.any() for mask, _ in lossy) else series


def _fast_valid(df: pd.DataFrame, schema: Any) -> pd.DataFrame | None:
    """The coerced frame when every row passes every rule of ``schema`` (the lossless rule
    first, then pandera's); else None, and pandera validates the frame and reports the failure
    cases. See :mod:`refit.compat.pandera` for why, and for the guard that keeps it pandera's twin."""
    return pandera_compat.validate_clean(df, schema, prepare=_lossless_prepared)


def validate_frame(
    df: pd.DataFrame,
    schema_model: Any,
    *,
    source: str | pd.Series,
    max_invalid_fraction: float = 0.01,
) -> ValidationResult:
    """Validate ``df``; return valid rows (coerced), quarantined rows (raw, with reasons) and a summary.

    Coercion is lossless: a value that coercing would change (a boolean spelled otherwise than
    :data:`TRUE_SPELLINGS` / :data:`FALSE_SPELLINGS`, a fractional or out-of-range number in an
    integer column, a number or a non-ISO 8601 text in a datetime column) quarantines its row
    instead.

    Args:
        df: the rows as read (any index; it is reset). Not modified; when every row is valid
            and needs no coercion, ``valid`` may share its columns' memory.
        schema_model: a pandera DataFrameModel class (or DataFrameSchema).
        source: the file the rows came from, or one source per row (after a concat).
        max_invalid_fraction: recorded in the summary; :func:`enforce` raises above it.

    Raises:
        ValidationFailedError: for frame-level faults (empty, missing or unknown columns, a
            fault that is not attributable to rows).
    """
    schema = schema_of(schema_model)
    if not df.index.equals(pd.RangeIndex(len(df))):
        df = df.reset_index(drop=True)
    sources = pd.Series(source, index=df.index) if isinstance(source, str) else pd.Series(source).reset_index(drop=True)
    source_names = [source] if isinstance(source, str) else _sources_list(sources)
    check_frame_shape(df, schema, ", ".join(source_names))

    # values that coercion would change are quarantined here, before either path below coerces
    remaining, lossy = _lossless_coercion(df, schema)
    bad_parts: list[pd.DataFrame] = [lossy] if len(lossy) else []
    if len(lossy):
        remaining = remaining.drop(index=lossy["index"].unique())
    valid = _validated_rows(remaining, schema, bad_parts, ", ".join(source_names))

    failures_df = (
        pd.concat(bad_parts) if bad_parts else pd.DataFrame(columns=["column", "check", "failure_case", "index"])
    )
    bad_index = np.sort(failures_df["index"].unique()).astype(np.int64)
    quarantine = _quarantine_frame(df, sources, failures_df, bad_index)
    summary = ValidationSummary(
        schema=str(schema.name),
        sources=source_names,
        rows=len(df),
        valid_rows=len(valid),
        invalid_rows=len(bad_index),
        max_invalid_fraction=max_invalid_fraction,
        failures=_summarise(failures_df, sources),
    )
    if not valid.index.equals(pd.RangeIndex(len(valid))):
        valid = valid.reset_index(drop=True)
    return ValidationResult(valid=valid, quarantine=quarantine, summary=summary)


def _validated_rows(remaining: pd.DataFrame, schema: Any, bad_parts: list[pd.DataFrame], where: str) -> pd.DataFrame:
    """The valid rows of ``remaining``, coerced: the fast path when every row passes, else
    pandera's lazy validation, up to :data:`_MAX_PASSES` times, each pass's failing rows added to
    ``bad_parts`` and dropped. ``where`` names the sources in the error of a frame-level fault."""
    valid: pd.DataFrame | None = _fast_valid(remaining, schema)
    for attempt in range(0 if valid is not None else _MAX_PASSES):
        try:
            valid = schema.validate(remaining, lazy=True)
            break
        except SchemaErrors as exc:
            fc = exc.failure_cases
            messages = [(str(error).splitlines() or [""])[0] for error in exc.schema_errors]
        except SchemaError as exc:  # non-lazy error path (should not happen with lazy=True)
            raise ValidationFailedError(f"{where}: {shorten(str(exc).splitlines()[0])}") from None
        rows = _row_failures(fc)
        if rows.empty:
            # pandera may refuse without naming a failure case (a unique column's repeated missing values)
            if not fc["index"].isna().any():
                raise ValidationFailedError(f"{where}: {shorten('; '.join(messages))}")
            frame = fc[fc["index"].isna()].iloc[0]
            raise ValidationFailedError(
                f"{where}: column {frame['column']} fails {frame['check']}: "
                f"{shorten((str(frame['failure_case']).splitlines() or [''])[0])}"
            )
        # failure-case indices are positions in ``remaining``'s index (labels of df)
        bad_parts.append(rows)
        remaining = remaining.drop(index=rows["index"].unique())
        if attempt + 1 < _MAX_PASSES:  # the rest is usually clean now: prove it without pandera
            valid = _fast_valid(remaining, schema)
            if valid is not None:
                break
    if valid is None:
        raise ValidationFailedError(f"{where}: validation did not converge")
    return valid


def _quarantine_frame(
    df: pd.DataFrame, sources: pd.Series, failures: pd.DataFrame, bad_index: np.ndarray
) -> pd.DataFrame:
    if len(bad_index) == 0:
        out = df.iloc[0:0].copy()
        out[SOURCE_COLUMN] = pd.Series(dtype=object)
        out[ERRORS_COLUMN] = pd.Series(dtype=object)
        return _storable(out)
    reasons = (
        failures.assign(
            reason=failures["column"].astype(str)
            + ": "
            + failures["check"].map(_short_rule)
            + " (got "
            + failures["failure_case"].astype(object).map(lambda v: shorten(str(v)))
            + ")"
        )
        .groupby("index")["reason"]
        .agg(lambda r: "; ".join(sorted(set(r))))
    )
    out = df.loc[bad_index].copy()
    out.insert(0, SOURCE_COLUMN, sources.loc[bad_index].astype(str).to_numpy())
    out.insert(1, ERRORS_COLUMN, reasons.reindex(bad_index).to_numpy())
    out.insert(0, "_refit_row", bad_index)
    return _storable(out.reset_index(drop=True))


def _storable(df: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows keep their raw values; mixed-type object columns become text for parquet."""
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    return df


def _summarise(failures: pd.DataFrame, sources: pd.Series) -> list[RuleFailure]:
    out: list[RuleFailure] = []
    if failures.empty:
        return out
    for (column, check), group in failures.groupby(["column", "check"], sort=False):
        rows = group["index"].to_numpy()
        out.append(
            RuleFailure(
                column=str(column),
                rule=_short_rule(str(check)),
                count=int(len(np.unique(rows))),
                examples=[_shown(v) for v in group["failure_case"].head(_MAX_EXAMPLES)],
                sources=sorted({str(s) for s in sources.iloc[rows]}),
            )
        )
    return sorted(out, key=lambda f: (-f.count, f.column, f.rule))


def enforce(summary: ValidationSummary) -> None:
    """Stop the run (ValidationFailedError with a one-line message) above the invalid-row limit."""
    if not summary.passed:
        raise ValidationFailedError(summary.one_line())
