"""How refit reads a time: the one home for the spellings a datetime column accepts.

pandas reads an integer as nanoseconds since 1970 (epoch seconds ``1767227077`` become
1970-01-01 00:00:01.77), and guesses one format from a column's first string, failing the
whole column on the first value spelled otherwise. Here each value is judged on its own, and
is read only when its reading is lossless and unambiguous:

* an ISO 8601 time, ``YYYY-MM-DD`` then ``T`` (or a space) and ``HH:MM``, optionally ``:SS``
  and up to nine fractional digits, then ``Z`` or an offset (``+01:00``, ``+0100``, ``+01``);
  without an offset it is UTC. A date alone (``2026-01-02``) is midnight UTC;
* a datetime object (``datetime``, ``date``, ``numpy.datetime64``, ``Timestamp``): its time,
  UTC when it has no zone;
* a missing value stays missing (the column's ``nullable`` decides).

Anything else is refused with its reason: a number (:data:`NOT_NUMBERS`: epoch seconds or
milliseconds, who knows which), a slashed or dotted date (``01/02/2026``: day or month first?),
any other text (``Jan 2 2026``, a value with a space around it, ``2026-01-02T10``), or an
ISO 8601 time that does not exist or lies outside what ``datetime64[ns]`` holds (1677-2262).
"""

from __future__ import annotations

import datetime as dt
import decimal
import fractions
import re
from typing import Any

import numpy as np
import pandas as pd


def utc_timestamp(at: Any) -> pd.Timestamp:
    """``at`` (a datetime, a Timestamp or an ISO string) as a UTC Timestamp; one without a zone
    is UTC, refit's rule for every time that does not say its own."""
    stamp = pd.Timestamp(at)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


#: What a time column holds, and what it refuses (the capture writer says the same).
NOT_NUMBERS = "datetimes, not numbers"

_ISO_NAIVE = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?"
_ISO_ZONED = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)"
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DAY_MONTH = re.compile(r"\d{1,2}[/.]\d{1,2}[/.]\d{2,4}(?:[T ].*)?", re.DOTALL)
_NUMBERS = (int, float, decimal.Decimal, fractions.Fraction, np.number, np.bool_)
_TIMES = (dt.date, np.datetime64)  # a datetime and a Timestamp are dates too

Refusals = list[tuple[np.ndarray, str]]  # (mask of the refused values, the reason)


def reasons(target: str) -> dict[str, str]:
    """The rule a value refused by :func:`read_times` is quarantined under, by kind."""
    rule = f"coerce_dtype('{target}')"
    return {
        "number": f"{rule}: {NOT_NUMBERS} (epoch seconds? write ISO 8601)",
        "day_month": f"{rule}: day/month order is ambiguous (write ISO 8601: YYYY-MM-DD)",
        "text": f"{rule}: not an ISO 8601 time (YYYY-MM-DD, or with THH:MM[:SS[.fff]] and Z or +HH:MM)",
        "no_such_time": f"{rule}: no such time, or outside the datetime64[ns] range",
    }


def read_times(series: pd.Series, target: Any, name: str) -> tuple[pd.Series, Refusals]:
    """``series`` read as times in the ``target`` dtype (``datetime64[ns]``, naive UTC, or a
    ``DatetimeTZDtype``), the refused values missing, and the masks of the refused values, each
    with its reason (see the module docstring). A column already of a datetime dtype is returned
    as it is: pandera's coercion of it is lossless (naive is UTC)."""
    kind = series.dtype.kind
    if kind == "M" or isinstance(series.dtype, pd.DatetimeTZDtype):
        return series, []
    why = reasons(name)
    n = len(series)
    utc = np.full(n, np.datetime64("NaT", "ns"))
    refused = {key: np.zeros(n, dtype=bool) for key in why}
    if kind in "iufcb":
        refused["number"] = series.notna().to_numpy()
    else:
        raw = series.to_numpy(dtype=object)
        missing = pd.isna(raw)
        if pd.api.types.infer_dtype(raw, skipna=True) == "string":
            _read_strings(raw, np.flatnonzero(~missing), utc, refused)
        else:
            _read_objects(raw, missing, utc, refused)
    times = pd.Series(pd.DatetimeIndex(utc).tz_localize("UTC"), index=series.index, name=series.name)
    tz = getattr(target, "tz", None)
    times = times.dt.tz_convert(tz) if tz is not None else times.dt.tz_localize(None)
    return times, [(refused[key], why[key]) for key in why if refused[key].any()]


def _read_strings(raw: np.ndarray, where: np.ndarray, utc: np.ndarray, refused: dict[str, np.ndarray]) -> None:
    """Read the strings ``raw[where]`` into ``utc`` (naive UTC), or mark them refused.

    The spelling is matched by pyarrow's regex engine (one C++ pass, no Python per value), then
    pandas parses what matched, each value on its own (``format="ISO8601"``). Times with and
    without an offset are parsed apart: given both, pandas reads a naive time in the offset of
    the first zoned one."""
    text = pd.Series(raw[where], dtype="string[pyarrow]")
    for pattern in (_ISO_ZONED, _ISO_NAIVE):
        if not len(where):
            return
        matched = text.str.fullmatch(pattern).to_numpy(dtype=bool)
        if matched.any():
            parsed = pd.to_datetime(raw[where[matched]], format="ISO8601", utc=True, errors="coerce")
            utc[where[matched]] = parsed.tz_localize(None).as_unit("ns").to_numpy()
            refused["no_such_time"][where[matched][parsed.isna()]] = True
            where, text = where[~matched], text[~matched]
    for i in where:  # refused values: few, each told why
        refused[_refusal(raw[i])][i] = True


_ZONED = re.compile(_ISO_ZONED)
_NAIVE = re.compile(_ISO_NAIVE)


def text_refusal(text: str, target: str) -> str | None:
    """None when ``text`` is spelled as :func:`read_times` reads a time, else the rule it is
    refused under: the check for one value (the capture writer's scalar timestamp), in Python."""
    if _ZONED.fullmatch(text) or _NAIVE.fullmatch(text):
        return None
    return reasons(target)[_refusal(text)]


def _refusal(text: str) -> str:
    if _NUMBER.fullmatch(text):
        return "number"
    return "day_month" if _DAY_MONTH.fullmatch(text) else "text"


def _read_objects(raw: np.ndarray, missing: np.ndarray, utc: np.ndarray, refused: dict[str, np.ndarray]) -> None:
    """Read a column of mixed values (strings, numbers, datetime objects) value by value; a
    column of datetime objects alone (parquet's dates come as ``datetime.date``) in one call."""
    present = np.flatnonzero(~missing)
    if pd.api.types.infer_dtype(raw[present], skipna=True) in ("date", "datetime", "datetime64"):
        try:
            parsed = pd.to_datetime(pd.Series(raw[present]), utc=True)  # naive is UTC
        except (ValueError, OverflowError, TypeError):  # one out of range: judged value by value below
            pass
        else:
            utc[present] = parsed.dt.tz_localize(None).dt.as_unit("ns").to_numpy()
            return
    strings = np.array([isinstance(v, str) for v in raw], dtype=bool)
    if strings.any():
        _read_strings(raw, np.flatnonzero(strings & ~missing), utc, refused)
    for i in np.flatnonzero(~strings & ~missing):
        value = raw[i]
        if isinstance(value, _NUMBERS):  # bool is an int
            refused["number"][i] = True
        elif not isinstance(value, _TIMES):
            refused["text"][i] = True
        else:
            try:
                stamp = pd.Timestamp(value)
                stamp = stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp
                utc[i] = stamp.as_unit("ns").to_datetime64()
            except (ValueError, OverflowError):  # OutOfBoundsDatetime is a ValueError
                refused["no_such_time"][i] = True
