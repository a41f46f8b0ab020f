"""Contracts of the Seattle weather example: tomorrow's high from today's observations.

Found from the config's folder (``schema: seattle_weather_schemas:ForecastSchema``): no
``PYTHONPATH`` needed. Deriving from refit's ``BaseSchema`` gives ``coerce``/``strict``.
"""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import pandera.pandas as pa
from pandera.typing.pandas import Series

from schemas.base import BaseSchema

WEATHER = ["drizzle", "fog", "rain", "snow", "sun"]

UtcTimestamp = Annotated[pd.DatetimeTZDtype, "ns", "UTC"]


class DayObservations(BaseSchema):
    """What is known at the end of a day: the model's inputs."""

    temp_max: Series[float] = pa.Field(ge=-30, le=50)
    temp_min: Series[float] = pa.Field(ge=-30, le=50)
    precipitation: Series[float] = pa.Field(ge=0, le=300)
    wind: Series[float] = pa.Field(ge=0, le=40)
    weather: Series[str] = pa.Field(isin=WEATHER)


class ForecastSchema(DayObservations):
    """A labelled training row: one day's observations and the next day's high."""

    forecast_id: Series[str] = pa.Field(unique=True, str_startswith="F")
    issued_at: Series[UtcTimestamp]
    next_temp_max: Series[float] = pa.Field(ge=-30, le=50)


class ForecastCaptureSchema(DayObservations):
    """A forecast request as serving logs it; the next day's high arrives a day later."""

    forecast_id: Series[str]
    request_id: Series[str] = pa.Field(unique=True)
    issued_at: Series[UtcTimestamp]
    prediction: Series[float] | None = pa.Field(nullable=True)
    model_version: Series[str] | None = pa.Field(nullable=True)
    next_temp_max: Series[float] | None = pa.Field(nullable=True)
