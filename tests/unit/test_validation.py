"""Validation: every fault lands in the quarantine with its reason, or stops the run on one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from refit.errors import ValidationFailedError
from refit.validation import ERRORS_COLUMN, SOURCE_COLUMN, enforce, validate_frame
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
    from pandera.api.pandas.container import DataFrameSchema

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


def test_fault_hidden_behind_a_coercion_failure_is_found_on_the_next_pass() -> None:
    df = churn_rows(50)
    df["tenure_months"] = df["tenure_months"].astype(object)
    df.loc[5, "tenure_months"] = "twelve"  # pass 1: the column cannot be coerced, its range is not checked
    df.loc[9, "tenure_months"] = 500  # pass 2: out of range
    result = _validate(df)
    assert list(result.quarantine["_refit_row"]) == [5, 9]
    assert "<=(240)" in result.quarantine.loc[1, ERRORS_COLUMN]
    assert result.valid["tenure_months"].dtype == np.int64 and len(result.valid) == 48


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
