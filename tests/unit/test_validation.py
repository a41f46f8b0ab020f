"""Validation: every fault lands in the quarantine with its reason, or stops the run on one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.typing.pandas import Series

from refit.errors import ValidationFailedError
from refit.validation import ERRORS_COLUMN, SOURCE_COLUMN, enforce, validate_frame
from schemas.base import BaseSchema
from schemas.churn import ChurnCaptureSchema, ChurnTrainingSchema
from tests.factories import churn_rows


def _validate(df: pd.DataFrame, max_invalid: float = 0.5):  # type: ignore[no-untyped-def]
    return validate_frame(df, ChurnTrainingSchema, source="data/base.csv", max_invalid_fraction=max_invalid)


def test_clean_frame_passes_untouched() -> None:
    df = churn_rows(100)
    result = _validate(df)
    assert result.summary.invalid_rows == 0 and result.summary.valid_rows == 100
    assert result.quarantine.empty
    assert result.summary.passed
    pd.testing.assert_series_equal(result.valid["customer_id"], df["customer_id"])


@pytest.mark.parametrize(
    ("column", "bad_value", "rule"),
    [
        ("monthly_charges", -5.0, ">=(0)"),
        ("age", 130.0, "<=(100)"),
        ("region", "mars", "isin"),
        ("plan", "platinum", "isin"),
        ("churned", 2, "isin"),
        ("event_time", pd.Timestamp("2099-01-01", tz="UTC"), "not_in_future"),
    ],
)
def test_row_faults_are_quarantined_with_reason(column: str, bad_value: object, rule: str) -> None:
    df = churn_rows(100)
    df[column] = df[column].astype(object)
    df.loc[[3, 7], column] = bad_value
    result = _validate(df)
    assert result.summary.invalid_rows == 2
    assert result.summary.valid_rows == 98
    assert list(result.quarantine["_refit_row"]) == [3, 7]
    assert all(column in e and rule in e for e in result.quarantine[ERRORS_COLUMN])
    assert set(result.quarantine[SOURCE_COLUMN]) == {"data/base.csv"}
    [failure] = result.summary.failures
    assert failure.column == column and rule in failure.rule and failure.count == 2
    assert 3 not in set(result.valid["customer_id"]) and 7 not in set(result.valid["customer_id"])


def test_null_label_is_rejected() -> None:
    df = churn_rows(50)
    df["churned"] = df["churned"].astype(float)
    df.loc[10, "churned"] = np.nan
    result = _validate(df)
    assert result.summary.invalid_rows == 1
    assert "churned" in result.quarantine.loc[0, ERRORS_COLUMN]
    assert "not_nullable" in result.quarantine.loc[0, ERRORS_COLUMN]


def test_wrong_dtype_value_is_rejected_and_kept_raw() -> None:
    df = churn_rows(50)
    df["tenure_months"] = df["tenure_months"].astype(object)
    df.loc[5, "tenure_months"] = "twelve"
    result = _validate(df)
    assert result.summary.invalid_rows == 1
    row = result.quarantine.iloc[0]
    assert row["tenure_months"] == "twelve"  # the raw value is kept, not coerced away
    assert "coerce_dtype('int64')" in row[ERRORS_COLUMN]
    assert result.valid["tenure_months"].dtype == np.int64


def test_duplicate_id_keeps_first_occurrence() -> None:
    df = churn_rows(50)
    df.loc[20, "customer_id"] = df.loc[4, "customer_id"]
    result = _validate(df)
    assert result.summary.invalid_rows == 1
    assert list(result.quarantine["_refit_row"]) == [20]
    assert "field_uniqueness" in result.quarantine.loc[0, ERRORS_COLUMN]
    assert (result.valid["customer_id"] == df.loc[4, "customer_id"]).sum() == 1


def test_missing_column_stops_whatever_the_threshold() -> None:
    df = churn_rows(20).drop(columns=["plan"])
    with pytest.raises(ValidationFailedError) as err:
        validate_frame(df, ChurnTrainingSchema, source="data/base.csv", max_invalid_fraction=1.0)
    assert str(err.value) == (
        "data/base.csv: missing required column(s) plan (rule: column_in_dataframe, schema ChurnTrainingSchema)"
    )


def test_unknown_column_stops() -> None:
    df = churn_rows(20).assign(surprise=1)
    with pytest.raises(ValidationFailedError, match="unexpected column.*surprise"):
        _validate(df)


def test_empty_frame_stops() -> None:
    with pytest.raises(ValidationFailedError, match="data/base.csv: file is empty"):
        _validate(churn_rows(0))


def test_threshold_gives_one_line_naming_file_column_rule_counts() -> None:
    df = churn_rows(100)
    df.loc[:4, "monthly_charges"] = -1.0  # 5% invalid
    result = validate_frame(df, ChurnTrainingSchema, source="data/base.csv", max_invalid_fraction=0.01)
    assert not result.summary.passed
    with pytest.raises(ValidationFailedError) as err:
        enforce(result.summary)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("data/base.csv: 5 of 100 rows invalid (5.00% > max 1.00%)")
    assert "monthly_charges >=(0) x5" in msg


def test_under_threshold_passes_but_still_quarantines() -> None:
    df = churn_rows(1000)
    df.loc[0, "region"] = "atlantis"
    result = validate_frame(df, ChurnTrainingSchema, source="f.parquet", max_invalid_fraction=0.01)
    enforce(result.summary)  # 0.1% <= 1%: no error
    assert len(result.quarantine) == 1 and len(result.valid) == 999


def test_several_faults_on_one_row_are_all_listed() -> None:
    df = churn_rows(30)
    df["region"] = df["region"].astype(object)
    df.loc[2, ["region", "monthly_charges"]] = ["mars", -3.0]
    result = _validate(df)
    assert result.summary.invalid_rows == 1
    reasons = result.quarantine.loc[0, ERRORS_COLUMN]
    assert "region" in reasons and "monthly_charges" in reasons


def test_row_sources_follow_rows_after_concat() -> None:
    a, b = churn_rows(10), churn_rows(10, id_offset=100)
    b.loc[3, "monthly_charges"] = -1.0
    df = pd.concat([a, b], ignore_index=True)
    sources = pd.Series(["a.parquet"] * 10 + ["b.parquet"] * 10)
    result = validate_frame(df, ChurnTrainingSchema, source=sources, max_invalid_fraction=0.01)
    assert list(result.quarantine[SOURCE_COLUMN]) == ["b.parquet"]
    assert result.summary.failures[0].sources == ["b.parquet"]
    assert "b.parquet" in result.summary.one_line() and "a.parquet" not in result.summary.one_line()


def unlabelled_captures(n: int) -> pd.DataFrame:
    """Captured requests before their labels and predictions arrive."""
    df = churn_rows(n)
    df["request_id"] = [f"r{i}" for i in range(n)]
    df["prediction"] = np.nan
    df["model_version"] = None
    df["churned"] = np.nan
    return df


def test_capture_schema_allows_missing_label_and_prediction() -> None:
    df = unlabelled_captures(10)
    result = validate_frame(df, ChurnCaptureSchema, source="captures.parquet")
    assert result.summary.invalid_rows == 0
    df.loc[1, "prediction"] = 1.5
    result = validate_frame(df, ChurnCaptureSchema, source="captures.parquet")
    assert result.summary.invalid_rows == 1 and "prediction" in result.quarantine.loc[0, ERRORS_COLUMN]


# The fast path (every rule checked column-wise, pandera only when something fails) must give
# exactly what pandera gives, and must never let a bad row through.


def _pandera_valid(df: pd.DataFrame, schema_model: object) -> pd.DataFrame:
    return schema_model.to_schema().validate(df, lazy=True).reset_index(drop=True)  # type: ignore[attr-defined]


def test_clean_frame_skips_pandera_and_matches_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from pandera.pandas import DataFrameSchema

    df = churn_rows(300)
    # values that need coercion: narrower ints and floats, a microsecond timestamp
    df["tenure_months"] = df["tenure_months"].astype(np.int32)
    df["age"] = df["age"].astype(np.float32)
    df["event_time"] = df["event_time"].astype("datetime64[us, UTC]")
    expected = _pandera_valid(df, ChurnTrainingSchema)

    def no_pandera(*args: object, **kwargs: object) -> None:
        raise AssertionError("pandera ran on a clean frame")

    monkeypatch.setattr(DataFrameSchema, "validate", no_pandera)
    result = _validate(df)
    assert result.summary.invalid_rows == 0 and result.quarantine.empty
    pd.testing.assert_frame_equal(result.valid, expected)
    assert result.valid["tenure_months"].dtype == np.int64
    assert str(result.valid["event_time"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.parametrize(
    "spoil",
    [
        lambda df: df.loc.__setitem__((5, "region"), "mars"),  # isin
        lambda df: df.loc.__setitem__((5, "monthly_charges"), -1.0),  # range
        lambda df: df.loc.__setitem__((5, "monthly_charges"), np.nan),  # not nullable
        lambda df: df.loc.__setitem__((5, "customer_id"), 3),  # unique
        lambda df: df.loc.__setitem__((5, "event_time"), pd.Timestamp("2099-01-01", tz="UTC")),  # custom check
    ],
)
def test_fast_path_sends_any_fault_to_pandera(spoil: object) -> None:
    from refit.validation import _fast_valid

    df = churn_rows(50)
    spoil(df)  # type: ignore[operator]
    assert _fast_valid(df, ChurnTrainingSchema.to_schema()) is None
    assert _validate(df).summary.invalid_rows == 1


def test_fast_path_rejects_non_strings_and_nulls_in_string_columns() -> None:
    from refit.validation import _fast_valid

    df = churn_rows(20)
    df["region"] = df["region"].astype(object)
    df.loc[4, "region"] = 7
    assert _fast_valid(df, ChurnTrainingSchema.to_schema()) is None
    df.loc[4, "region"] = None
    assert _fast_valid(df, ChurnTrainingSchema.to_schema()) is None
    assert _validate(df).summary.invalid_rows == 1


def test_nullable_string_column_may_be_all_missing_on_the_fast_path() -> None:
    from refit.validation import _fast_valid

    df = unlabelled_captures(10)
    fast = _fast_valid(df, ChurnCaptureSchema.to_schema())
    assert fast is not None
    pd.testing.assert_frame_equal(fast, _pandera_valid(df, ChurnCaptureSchema))


def test_an_optional_column_left_out_keeps_the_fast_path() -> None:
    from refit.validation import _fast_valid

    df = unlabelled_captures(10).drop(columns=["churned"])  # logged before the label exists
    fast = _fast_valid(df, ChurnCaptureSchema.to_schema())
    assert fast is not None and "churned" not in fast
    pd.testing.assert_frame_equal(fast, _pandera_valid(df, ChurnCaptureSchema))


def test_fault_hidden_behind_a_coercion_failure_is_found_on_the_next_pass() -> None:
    df = churn_rows(50)
    df["tenure_months"] = df["tenure_months"].astype(object)
    df.loc[5, "tenure_months"] = "twelve"  # pass 1: the column cannot be coerced, its range is not checked
    df.loc[9, "tenure_months"] = 500  # pass 2: out of range
    result = _validate(df)
    assert list(result.quarantine["_refit_row"]) == [5, 9]
    assert "<=(240)" in result.quarantine.loc[1, ERRORS_COLUMN]
    assert result.valid["tenure_months"].dtype == np.int64 and len(result.valid) == 48


@pytest.mark.slow  # a fresh Python process
def test_fast_path_works_in_a_fresh_process() -> None:
    """pandera registers its pandas checks lazily (on a first validate): the fast path must not
    depend on some earlier call having done it."""
    import subprocess
    import sys

    code = (
        "from tests.factories import churn_rows\n"
        "from refit.validation import _fast_valid\n"
        "from schemas.churn import ChurnTrainingSchema\n"
        "assert _fast_valid(churn_rows(20), ChurnTrainingSchema.to_schema()) is not None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Coercion is lossless or the row is invalid: pandera's astype would read "no" as True and 0.6 as 0.


class Flags(BaseSchema):
    flag: Series[bool] = pa.Field(nullable=True)


class Counts(BaseSchema):
    wide: Series[np.int64]
    small: Series[np.int8] = pa.Field(nullable=True)


BOOL_SPELLINGS = [
    ("true", True),
    ("True", True),
    ("TRUE", True),
    ("yes", True),
    ("Yes", True),
    ("1", True),
    ("false", False),
    ("False", False),
    ("no", False),
    ("NO", False),
    ("0", False),
    (True, True),
    (False, False),
    (np.True_, True),
    (1, True),
    (0, False),
    (1.0, True),
    (0.0, False),
]


def test_boolean_spellings_are_read_as_what_they_say() -> None:
    df = churn_rows(len(BOOL_SPELLINGS))
    df["autopay"] = pd.Series([raw for raw, _ in BOOL_SPELLINGS], dtype=object)
    result = _validate(df)
    assert result.summary.invalid_rows == 0 and result.quarantine.empty
    assert result.valid["autopay"].dtype == np.bool_
    assert list(result.valid["autopay"]) == [want for _, want in BOOL_SPELLINGS]


@pytest.mark.parametrize("values", [[1, 0, 1, 1], [1.0, 0.0, 0.0, 1.0], ["no", "yes", "no", "no"]])
def test_boolean_columns_of_one_dtype_are_read_whole(values: list[object]) -> None:
    df = churn_rows(4)
    df["autopay"] = values
    result = _validate(df)
    assert result.summary.invalid_rows == 0
    assert list(result.valid["autopay"]) == [v in (1, "yes") for v in values]


@pytest.mark.parametrize("bad", ["maybe", "t", "y", "on", "nope", " yes", "", "1.0", 2, -1, 0.5, 1.5])
def test_other_boolean_spellings_are_quarantined_with_the_rule(bad: object) -> None:
    df = churn_rows(20)
    df["autopay"] = pd.Series(["no", "yes"] * 10, dtype=object)
    df.loc[7, "autopay"] = bad
    result = _validate(df)
    assert list(result.quarantine["_refit_row"]) == [7]
    reason = result.quarantine.loc[0, ERRORS_COLUMN]
    assert reason == f"autopay: coerce_dtype('bool'): not true/false, yes/no or 1/0 (got {bad})"
    assert result.quarantine.loc[0, SOURCE_COLUMN] == "data/base.csv"
    [failure] = result.summary.failures
    assert (failure.column, failure.count) == ("autopay", 1)
    assert failure.rule == "coerce_dtype('bool'): not true/false, yes/no or 1/0"
    expected = [i % 2 == 1 for i in range(20) if i != 7]
    assert list(result.valid["autopay"]) == expected  # "no" stays False: nothing became True


def test_missing_boolean_is_judged_by_nullability() -> None:
    df = churn_rows(10)
    df["autopay"] = pd.Series(["no"] * 10, dtype=object)
    df.loc[4, "autopay"] = np.nan
    df.loc[6, "autopay"] = None
    result = _validate(df)  # autopay is not nullable: missing is a fault, never True
    assert list(result.quarantine["_refit_row"]) == [4, 6]
    assert result.quarantine[ERRORS_COLUMN].str.contains("autopay: not_nullable").all()
    assert not result.valid["autopay"].any()

    flags = pd.DataFrame({"flag": pd.Series(["yes", None, "no", np.nan, 1], dtype=object)})
    result = validate_frame(flags, Flags, source="flags.csv")
    assert result.summary.invalid_rows == 0
    assert result.valid["flag"].tolist() == [True, pd.NA, False, pd.NA, True]


@pytest.mark.parametrize(
    ("column", "bad_value"),
    [("churned", 0.6), ("customer_id", 0.7), ("tenure_months", 35.9), ("support_tickets", -0.5)],
)
def test_fractional_value_in_an_int_column_is_quarantined(column: str, bad_value: float) -> None:
    df = churn_rows(30)
    df[column] = df[column].astype(np.float64)  # integral floats: lossless, they pass
    df.loc[5, column] = bad_value
    result = _validate(df)
    assert list(result.quarantine["_refit_row"]) == [5]
    reason = f"{column}: coerce_dtype('int64'): fractional part (got {bad_value})"
    assert result.quarantine.loc[0, ERRORS_COLUMN] == reason
    assert result.quarantine.loc[0, column] == bad_value  # the raw value is kept
    assert result.valid[column].dtype == np.int64
    pd.testing.assert_series_equal(
        result.valid[column], churn_rows(30)[column].drop(index=5).reset_index(drop=True), check_dtype=False
    )


def test_fractional_value_in_an_object_int_column_is_quarantined() -> None:
    df = churn_rows(10)
    df["tenure_months"] = pd.Series([1, 2.0, 35.9, 4, "5", 6, 7, 8, 9, 10], dtype=object)
    result = _validate(df)
    assert list(result.quarantine["_refit_row"]) == [2]
    assert "tenure_months: coerce_dtype('int64'): fractional part (got 35.9)" in result.quarantine[ERRORS_COLUMN][0]
    assert list(result.valid["tenure_months"]) == [1, 2, 4, 5, 6, 7, 8, 9, 10]


def test_int_value_outside_the_type_range_is_quarantined() -> None:
    df = pd.DataFrame(
        {
            # numpy casts 2**63 and 1e19 to -2**63 and inf to -2**63 as well: values nobody wrote
            "wide": [1.0, 2.0**63, 1e19, np.inf, -(2.0**63), 5.0],
            "small": [1.0, 2.0, 3.0, 4.0, 5.0, 128.0],
        }
    )
    result = validate_frame(df, Counts, source="counts.parquet", max_invalid_fraction=1.0)
    assert list(result.quarantine["_refit_row"]) == [1, 2, 3, 5]
    reasons = list(result.quarantine[ERRORS_COLUMN])
    assert all("coerce_dtype('int64'): outside the int64 range" in r for r in reasons[:3])
    assert reasons[3] == "small: coerce_dtype('Int8'): outside the Int8 range (got 128.0)"
    assert list(result.valid["wide"]) == [1, -(2**63)]
    unsigned = pd.DataFrame({"wide": np.array([1, 2**63 + 1], dtype=np.uint64), "small": [1, 2]})
    result = validate_frame(unsigned, Counts, source="counts.parquet", max_invalid_fraction=1.0)
    assert list(result.quarantine["_refit_row"]) == [1]
    assert "wide: coerce_dtype('int64'): outside the int64 range" in result.quarantine[ERRORS_COLUMN][0]


@pytest.mark.parametrize(
    ("column", "value"),
    [("autopay", "no"), ("autopay", "maybe"), ("autopay", np.nan), ("churned", 0.6), ("tenure_months", 35.9)],
)
def test_fast_path_refuses_what_the_lossless_rule_refuses(column: str, value: object) -> None:
    """The fast path is pandera's twin: where pandera's astype would coerce away a value, the
    fast path must not accept the frame either (and a lossless spelling gives the same frame)."""
    from refit.validation import _fast_valid

    df = churn_rows(20)
    df[column] = df[column].astype(object)
    df.loc[3, column] = value
    fast = _fast_valid(df, ChurnTrainingSchema.to_schema())
    if value == "no":  # accepted: read as False, like the slow path
        assert fast is not None and bool(fast.loc[3, "autopay"]) is False
        pd.testing.assert_frame_equal(fast, _validate(df).valid)
    else:
        assert fast is None
        assert list(_validate(df).quarantine["_refit_row"]) == [3]


def test_duplicate_after_a_quarantined_row_is_found_by_label() -> None:
    df = churn_rows(50)
    df["churned"] = df["churned"].astype(np.float64)
    df.loc[3, "churned"] = 0.6  # quarantined first: the frame pandera sees has a gap
    df.loc[40, "customer_id"] = df.loc[20, "customer_id"]
    result = _validate(df)
    assert list(result.quarantine["_refit_row"]) == [3, 40]
    assert "customer_id: field_uniqueness" in result.quarantine.loc[1, ERRORS_COLUMN]
    assert (result.valid["customer_id"] == 20).sum() == 1 and len(result.valid) == 48


# Values are echoed cut to about 80 characters; the quarantine keeps them whole.


def test_a_huge_value_is_cut_in_examples_reasons_and_messages() -> None:
    huge = "x" * 1_000_000
    df = churn_rows(100)
    df["region"] = df["region"].astype(object)
    df.loc[[2, 9], "region"] = huge
    result = validate_frame(df, ChurnTrainingSchema, source="data/base.csv", max_invalid_fraction=0.01)
    [failure] = result.summary.failures
    assert failure.examples and all(len(e) <= 80 for e in failure.examples)
    assert failure.examples[0].startswith("'xxxx") and "1,000,002 chars" in failure.examples[0]
    assert all(len(r) < 200 for r in result.quarantine[ERRORS_COLUMN])
    assert set(result.quarantine["region"]) == {huge}  # the raw value is kept whole
    with pytest.raises(ValidationFailedError) as err:
        enforce(result.summary)
    assert len(str(err.value)) < 500
    assert len(json.dumps(result.summary.to_dict())) < 2000
    wide = churn_rows(5).assign(**{huge: 1})
    with pytest.raises(ValidationFailedError, match="unexpected column") as err:
        _validate(wide)
    assert len(str(err.value)) < 300


def test_shorten_keeps_short_text_and_says_how_long_the_rest_was() -> None:
    from refit.validation import shorten

    assert shorten("mars") == "mars"
    assert shorten("y" * 80) == "y" * 80
    cut = shorten("y" * 81)
    assert len(cut) <= 80 and cut.endswith("... (81 chars)") and cut.startswith("y" * 20)


def test_duplicates_are_judged_on_coerced_values() -> None:
    """A "3" and a 3 are one id once coerced: the later one is the duplicate (this used to crash)."""
    df = churn_rows(10)
    df["customer_id"] = pd.Series([0, 1, 2, "3", 4, 5, 3, 7, 3.0, 9], dtype=object)
    result = _validate(df)
    assert list(result.quarantine["_refit_row"]) == [6, 8]
    assert result.quarantine[ERRORS_COLUMN].str.startswith("customer_id: field_uniqueness").all()
    assert list(result.valid["customer_id"]) == [0, 1, 2, 3, 4, 5, 7, 9]


def test_a_csvs_string_columns_are_read_as_written(tmp_path: Path) -> None:
    """pandas guessed ``02134`` was the number 2134 and the schema's coercion then made it the
    string ``2134``: a value changed, and nothing quarantined. Columns the schema declares as
    strings or categories are read as written; numbers are still numbers."""
    from refit.data import SourceFile, read_sources
    from refit.io.local import LocalStore

    class Places(BaseSchema):
        zip: Series[str]
        code: Series[str]
        kind: Series[pd.CategoricalDtype]
        tier: Series[pd.CategoricalDtype] = pa.Field(dtype_kwargs={"categories": [1, 2, 3]})
        visits: Series[int]

    store = LocalStore(tmp_path)
    store.put_bytes("places.csv", b"zip,code,kind,tier,visits\n02134,1.0,007,1,3\n00501,1e5,010,3,4\n")
    frame, _ = read_sources([SourceFile(store, "places.csv")], Places)
    result = validate_frame(frame, Places, source="places.csv")
    valid = result.valid
    assert result.summary.invalid_rows == 0
    assert valid["zip"].tolist() == ["02134", "00501"] and valid["code"].tolist() == ["1.0", "1e5"]
    assert valid["kind"].astype(str).tolist() == ["007", "010"] and valid["visits"].tolist() == [3, 4]
    # a category of numbers is read as numbers (as text, "1" was no category of it: every row quarantined)
    assert valid["tier"].tolist() == [1, 3]


def test_a_file_found_neither_here_nor_in_the_store_names_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`refit validate mistakes/x.csv` looks for a local file, then a key in the store; the error
    named only the store's path, so a user who meant the local file was sent to the wrong place."""
    from refit.data import locate, read_sources
    from refit.errors import DataError
    from refit.io.local import LocalStore

    monkeypatch.chdir(tmp_path)
    store = LocalStore(tmp_path / "store")
    with pytest.raises(DataError) as info:
        read_sources([locate(store, "mistakes/x.csv")], ChurnTrainingSchema)
    message = str(info.value)
    assert str(tmp_path / "store" / "mistakes" / "x.csv") in message
    assert f"nor a file {tmp_path / 'mistakes' / 'x.csv'}" in message
