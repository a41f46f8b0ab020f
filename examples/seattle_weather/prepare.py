"""Turn the Seattle weather data shipped in ``vega_datasets`` into what refit expects.

Offline: reads the CSV inside the package (``vega_datasets.local_data``), no download.

Each row is a forecast issued at the end of day *d* in Seattle (``issued_at`` = local midnight
after *d*, stored in UTC: 08:00 UTC in winter, 07:00 in summer), when day *d*'s observations
are complete: the inputs are day *d*'s observations, the label is day *d+1*'s high, which is
known at the end of *d+1* (``label_time``). Writes three things:

* the base training data (days before ``--split``) into the store, under the key the
  example's ``dataset.sources`` names (``REFIT_STORE``, default ``./.refit``);
* the production history (days from ``--split`` on) as a CSV for ``refit replay --history``;
* the same history as serving would have captured it (requests, and labels arriving a day
  later) into the store's captures, so ``refit drift --as-of ...`` has windows to check.

Usage: ``python examples/seattle_weather/prepare.py [--split 2012-07-01] [--history FILE]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

MODEL = "seattle_weather"
BASE_KEY = f"datasets/{MODEL}/base/base.csv"
DEFAULT_SPLIT = "2012-07-01"
DEFAULT_HISTORY = f"{MODEL}_history.csv"
#: The records are Seattle's days: a day ends at local midnight.
LOCAL_TZ = "America/Los_Angeles"


def end_of_day(day: pd.Series) -> pd.Series:
    """The UTC instant at which each local calendar day in ``day`` (naive dates) ends."""
    return (day + pd.Timedelta(days=1)).dt.tz_localize(LOCAL_TZ).dt.tz_convert("UTC")


def forecasts() -> pd.DataFrame:
    """Every day of the package's data as one forecast row (the last day has no label: dropped)."""
    from vega_datasets import local_data

    days = local_data.seattle_weather().sort_values("date").reset_index(drop=True)
    day = pd.to_datetime(days["date"])
    out = pd.DataFrame(
        {
            "forecast_id": "F" + day.dt.strftime("%Y-%m-%d"),
            "issued_at": end_of_day(day),
            "temp_max": days["temp_max"].astype(float),
            "temp_min": days["temp_min"].astype(float),
            "precipitation": days["precipitation"].astype(float),
            "wind": days["wind"].astype(float),
            "weather": days["weather"].astype(str),
            "next_temp_max": days["temp_max"].shift(-1),
            # the label (tomorrow's high) is known at the end of tomorrow
            "label_time": end_of_day(day + pd.Timedelta(days=1)),
        }
    )
    consecutive = (day.shift(-1) - day) == pd.Timedelta(days=1)
    out = out[consecutive & out["next_temp_max"].notna()].reset_index(drop=True)
    return out


def split(frame: pd.DataFrame, at: str = DEFAULT_SPLIT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Base data (forecasts for days before ``at``) and the production history after it."""
    cut = pd.Timestamp(at)
    day = frame["issued_at"].dt.tz_convert(LOCAL_TZ).dt.tz_localize(None).dt.normalize() - pd.Timedelta(days=1)
    return frame[day < cut].drop(columns=["label_time"]).reset_index(drop=True), frame[day >= cut].reset_index(
        drop=True
    )


def write(store: Any, history_path: Path, at: str = DEFAULT_SPLIT, captures_until: str | None = None) -> dict[str, Any]:
    """Write the base data and the captures (up to ``captures_until``, default all) into
    ``store`` and the history CSV to ``history_path``."""
    from refit.capture import LABEL_TIME_COLUMN, write_labels, write_requests

    base, history = split(forecasts(), at)
    store.put_bytes(BASE_KEY, base.to_csv(index=False).encode())
    history_path.parent.mkdir(parents=True, exist_ok=True)
    history.to_csv(history_path, index=False)
    captured = history
    if captures_until is not None:
        captured = history[history["issued_at"] < pd.Timestamp(captures_until, tz="UTC")]
    requests = captured.drop(columns=["next_temp_max", LABEL_TIME_COLUMN]).assign(
        request_id="r-" + captured["forecast_id"]
    )
    write_requests(store, MODEL, requests, timestamp_column="issued_at", part="prepare")
    labels = pd.DataFrame(
        {
            "request_id": requests["request_id"],
            "next_temp_max": captured["next_temp_max"],
            LABEL_TIME_COLUMN: captured[LABEL_TIME_COLUMN],
        }
    )
    write_labels(store, MODEL, labels, part="prepare")
    return {
        "base": store.uri_for(BASE_KEY),
        "base_rows": len(base),
        "history": str(history_path),
        "history_rows": len(history),
        "captured_rows": len(captured),
        "first": str(history["issued_at"].min()),
        "last": str(history["issued_at"].max()),
    }


def main(argv: list[str] | None = None) -> None:
    from refit.io import store_from_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default=DEFAULT_SPLIT, help="First production day (default %(default)s).")
    parser.add_argument("--history", type=Path, default=Path(DEFAULT_HISTORY), help="Where the history CSV goes.")
    parser.add_argument("--captures-until", help="Capture the history only up to this day (default: all of it).")
    args = parser.parse_args(argv)
    out = write(store_from_settings(), args.history, args.split, args.captures_until)
    print(f"base data: {out['base_rows']:,} forecasts -> {out['base']}")
    print(
        f"production history: {out['history_rows']:,} forecasts ({out['first']} to {out['last']}) -> {out['history']}"
    )
    print(
        f"{out['captured_rows']:,} of them captured as serving would have logged them (labels a day later) "
        f"in the store's captures/{MODEL}/"
    )


if __name__ == "__main__":
    main()
