"""Times in a CSV are read losslessly and unambiguously, value by value, or the row is quarantined.

pandas reads the integer ``1767227077`` as nanoseconds (1970-01-01 00:00:01.77 UTC), and infers
one format from a column's first string, failing the whole column on the first value that
differs from it (a date-only ``2026-01-01`` among times with offsets): refit used to pass the
first silently and stop the run on the second with ``fails coerce_dtype(...): None``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pandera.typing.pandas import Series

from refit.errors import ValidationFailedError
from refit.io.frames import parse_frame
from refit.validation import ERRORS_COLUMN, ValidationResult, enforce, validate_frame
from schemas.base import BaseSchema
from schemas.churn import ChurnTrainingSchema, UtcTimestamp
from tests.factories import churn_rows

UTC_NS = "coerce_dtype('datetime64[ns, UTC]')"
NUMBER = f"{UTC_NS}: datetimes, not numbers (epoch seconds? write ISO 8601)"
NOT_ISO = f"{UTC_NS}: not an ISO 8601 time (YYYY-MM-DD, or with THH:MM[:SS[.fff]] and Z or +HH:MM)"
AMBIGUOUS = f"{UTC_NS}: day/month order is ambiguous (write ISO 8601: YYYY-MM-DD)"
NO_SUCH_TIME = f"{UTC_NS}: no such time, or outside the datetime64[ns] range"


class Applied(BaseSchema):
    n: Series[int]
    applied_at: Series[UtcTimestamp]


class Stamped(BaseSchema):
    """A naive datetime column: values with an offset are converted to UTC, as pandera does."""

    n: Series[int]
    at: Series[pd.Timestamp]


def _read(csv: str, schema: type[BaseSchema] = Applied) -> ValidationResult:
    frame = parse_frame(csv.encode(), "applied.csv")
    return validate_frame(frame, schema, source="applied.csv", max_invalid_fraction=1.0)


def _csv(*values: str) -> str:
    return "n,applied_at\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values))


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# Defect A: numbers are never read as times


@pytest.mark.parametrize("number", ["1767227077", "1767227077.5", "0"])
def test_epoch_seconds_in_a_csv_are_quarantined_not_read_as_nanoseconds(number: str) -> None:
    result = _read(_csv(number, number))  # a whole column of numbers: pandas reads it as numbers
    assert result.valid.empty
    assert list(result.quarantine["_refit_row"]) == [0, 1]
    assert result.quarantine.loc[0, ERRORS_COLUMN] == f"applied_at: {NUMBER} (got {number})"
    [failure] = result.summary.failures
    assert (failure.column, failure.rule, failure.count) == ("applied_at", NUMBER, 2)
    with pytest.raises(ValidationFailedError, match="not numbers"):
        enforce(validate_frame(parse_frame(_csv(number).encode(), "a.csv"), Applied, source="a.csv").summary)


def test_a_number_among_iso_times_is_quarantined() -> None:
    result = _read(_csv("2026-01-01T10:00:00Z", "1767227077", "2026-01-02T10:00:00Z"))
    assert list(result.quarantine["_refit_row"]) == [1]
    assert result.quarantine.loc[0, ERRORS_COLUMN] == f"applied_at: {NUMBER} (got 1767227077)"
    assert result.valid["applied_at"].tolist() == [_utc("2026-01-01 10:00"), _utc("2026-01-02 10:00")]


def test_numbers_in_a_frame_are_quarantined_and_missing_times_stay_missing() -> None:
    df = churn_rows(6)
    df["event_time"] = pd.Series([1767227077, 1.5, None, True, np.int64(5), pd.Timestamp("2026-09-01")], dtype=object)
    result = validate_frame(df, ChurnTrainingSchema, source="rows.parquet", max_invalid_fraction=1.0)
    assert list(result.quarantine["_refit_row"]) == [0, 1, 2, 3, 4]
    reasons = list(result.quarantine[ERRORS_COLUMN])
    assert all(f"event_time: {NUMBER}" in r for r in reasons[:2] + reasons[3:])
    assert "event_time: not_nullable" in reasons[2]  # missing is missing: nullability decides
    assert result.valid["event_time"].tolist() == [_utc("2026-09-01")]


# Defect B: one odd value is its row's fault, not the file's


@pytest.mark.parametrize(
    ("odd", "rule"),
    [
        ("2026-01-01T10:00:00 ", NOT_ISO),  # a trailing space, as " yes" in a boolean column
        (" 2026-01-01T10:00:00Z", NOT_ISO),
        ("01/02/2026 10:00", AMBIGUOUS),  # the 1st of February or the 2nd of January?
        ("01/02/2026", AMBIGUOUS),
        ("31.12.2026", AMBIGUOUS),
        ("Jan 2 2026", NOT_ISO),
        ("2026/01/02", NOT_ISO),
        ("20260102", NUMBER),
        ("2026-01-02T10", NOT_ISO),
        ("2026-01-02t10:00z", NOT_ISO),
        ("2026-01-02T10:00:00.1234567891Z", NOT_ISO),  # finer than nanoseconds: pandas would cut it
        ("not a date", NOT_ISO),
        ("2026-02-30", NO_SUCH_TIME),
        ("2026-01-01T25:00:00Z", NO_SUCH_TIME),
        ("3000-01-01", NO_SUCH_TIME),
    ],
)
def test_one_odd_value_among_iso_times_is_quarantined_with_the_rule_and_the_value(odd: str, rule: str) -> None:
    csv = _csv("2026-01-01T10:00:00+01:00", f'"{odd}"', "2026-01-03T10:00:00Z", "2026-01-04T10:00:00.5-02:00")
    result = _read(csv)
    assert list(result.quarantine["_refit_row"]) == [1]
    assert result.quarantine.loc[0, ERRORS_COLUMN] == f"applied_at: {rule} (got {odd})"
    assert result.quarantine.loc[0, "applied_at"] == odd  # the raw value is kept
    assert result.valid["applied_at"].tolist() == [
        _utc("2026-01-01 09:00"),
        _utc("2026-01-03 10:00"),
        _utc("2026-01-04 12:00:00.5"),
    ]


@pytest.mark.parametrize(
    ("spelling", "read_as"),
    [
        ("2026-01-02T10:00:00Z", "2026-01-02 10:00"),
        ("2026-01-02T11:30:00+01:30", "2026-01-02 10:00"),
        ("2026-01-02T11:00+0100", "2026-01-02 10:00"),
        ("2026-01-02T05:00-05", "2026-01-02 10:00"),
        ("2026-01-02 10:00:00+00:00", "2026-01-02 10:00"),  # as pandas writes a CSV
        ("2026-01-02T10:00:00.123456789Z", "2026-01-02 10:00:00.123456789"),
        ("2026-01-02T10:00:00", "2026-01-02 10:00"),  # naive: UTC
        ("2026-01-02 10:00", "2026-01-02 10:00"),
        ("2026-01-02", "2026-01-02 00:00"),  # a date: midnight UTC
    ],
)
def test_iso_spellings_among_others_are_read_as_what_they_say(spelling: str, read_as: str) -> None:
    result = _read(_csv("2026-01-01T10:00:00+01:00", spelling, "2026-01-01"))
    assert result.quarantine.empty
    assert result.valid["applied_at"].tolist() == [_utc("2026-01-01 09:00"), _utc(read_as), _utc("2026-01-01")]
    assert str(result.valid["applied_at"].dtype) == "datetime64[ns, UTC]"


def test_every_odd_value_of_a_file_is_named_and_the_rest_passes() -> None:
    values = ["2026-01-01T10:00:00Z", "2026-01-01", "2026-01-01T10:00:00 ", "2026-01-01T10:00:00", "01/02/2026 10:00"]
    result = _read(_csv(*values))
    assert list(result.quarantine["_refit_row"]) == [2, 4]
    assert {(f.rule, f.count) for f in result.summary.failures} == {(NOT_ISO, 1), (AMBIGUOUS, 1)}
    assert result.valid["n"].tolist() == [0, 1, 3]


def test_datetime_objects_keep_their_time_and_naive_ones_are_utc() -> None:
    df = pd.DataFrame(
        {
            "n": [0, 1, 2, 3, 4],
            "applied_at": pd.Series(
                [
                    pd.Timestamp("2026-01-02 11:00", tz="Europe/Paris"),
                    dt.datetime(2026, 1, 2, 10, 0),
                    dt.date(2026, 1, 2),
                    np.datetime64("2026-01-02T10:00"),
                    "2026-01-02T10:00Z",
                ],
                dtype=object,
            ),
        }
    )
    result = validate_frame(df, Applied, source="applied.parquet")
    assert result.quarantine.empty
    want = [_utc("2026-01-02 10:00")] * 2 + [_utc("2026-01-02")] + [_utc("2026-01-02 10:00")] * 2
    assert result.valid["applied_at"].tolist() == want


def test_a_naive_datetime_column_reads_offsets_as_utc() -> None:
    frame = parse_frame(b"n,at\n0,2026-01-02T11:00:00+01:00\n1,2026-01-02\n2,1767227077\n", "at.csv")
    result = validate_frame(frame, Stamped, source="at.csv", max_invalid_fraction=1.0)
    assert list(result.quarantine["_refit_row"]) == [2]
    assert "coerce_dtype('datetime64[ns]'): datetimes, not numbers" in result.quarantine.loc[0, ERRORS_COLUMN]
    assert result.valid["at"].tolist() == [pd.Timestamp("2026-01-02 10:00"), pd.Timestamp("2026-01-02")]


def test_a_column_of_times_is_read_whole_and_typed_columns_untouched() -> None:
    clean = churn_rows(50)
    text = clean.assign(event_time=clean["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%S%z"))
    result = validate_frame(text, ChurnTrainingSchema, source="rows.csv")
    assert result.quarantine.empty
    pd.testing.assert_series_equal(result.valid["event_time"], clean["event_time"])
    typed = validate_frame(clean, ChurnTrainingSchema, source="rows.parquet")
    pd.testing.assert_series_equal(typed.valid["event_time"], clean["event_time"])


def test_a_column_of_date_objects_is_read_in_one_call() -> None:
    """parquet's dates arrive as datetime.date objects: read value by value they took 8 s per
    million rows; one call reads them (one out of range is still refused with its rule)."""
    import datetime as dt

    from refit.timestamps import read_times

    days = pd.Series([dt.date(2026, 1, 1) + dt.timedelta(days=i % 300) for i in range(1000)], dtype=object)
    read, refused = read_times(days, pd.DatetimeTZDtype("ns", "UTC"), "datetime64[ns, UTC]")
    assert refused == [] and read.iloc[5] == pd.Timestamp("2026-01-06", tz="UTC")
    mixed = pd.Series([dt.datetime(2026, 1, 1, 7, tzinfo=dt.timezone(dt.timedelta(hours=2))), dt.date(3000, 1, 1)])
    read, [(mask, reason)] = read_times(mixed, pd.DatetimeTZDtype("ns", "UTC"), "datetime64[ns, UTC]")
    assert read.iloc[0] == pd.Timestamp("2026-01-01 05:00", tz="UTC") and mask.tolist() == [False, True]
    assert "no such time" in reason
