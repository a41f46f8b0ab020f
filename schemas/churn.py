"""Contracts of the demo dataset: subscription churn."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import pandera.pandas as pa
from pandera.typing.pandas import Series

from schemas.base import BaseSchema, not_in_future

REGIONS = ["north", "south", "east", "west", "central"]
PLANS = ["basic", "standard", "premium"]
CHANNELS = ["organic", "paid_search", "social", "referral", "partner"]

UtcTimestamp = Annotated[pd.DatetimeTZDtype, "ns", "UTC"]


class ChurnFeatures(BaseSchema):
    """The model's inputs: what serving sees for each customer."""

    region: Series[str] = pa.Field(isin=REGIONS)
    plan: Series[str] = pa.Field(isin=PLANS)
    channel: Series[str] = pa.Field(isin=CHANNELS)
    age: Series[float] = pa.Field(ge=18, le=100, nullable=True)
    tenure_months: Series[int] = pa.Field(ge=0, le=240)
    monthly_charges: Series[float] = pa.Field(ge=0, le=2000)
    total_charges: Series[float] = pa.Field(ge=0, le=500_000, nullable=True)
    support_tickets: Series[int] = pa.Field(ge=0, le=100)
    days_since_last_login: Series[int] = pa.Field(ge=0, le=3650)
    sessions_per_week: Series[float] = pa.Field(ge=0, le=500, nullable=True)
    num_devices: Series[int] = pa.Field(ge=1, le=20)
    payment_failures: Series[int] = pa.Field(ge=0, le=50)
    discount_pct: Series[float] = pa.Field(ge=0, le=1)
    autopay: Series[bool]


class ChurnTrainingSchema(ChurnFeatures):
    """A labelled training row."""

    customer_id: Series[int] = pa.Field(ge=0, unique=True)
    event_time: Series[UtcTimestamp]
    churned: Series[int] = pa.Field(isin=[0, 1], nullable=False)

    @pa.check("event_time", name="not_in_future")
    def _not_in_future(cls, series: pd.Series) -> pd.Series:  # noqa: N805
        return not_in_future(series)


class ChurnCaptureSchema(ChurnFeatures):
    """A production request as captured from serving; the label arrives later (or never)."""

    customer_id: Series[int] = pa.Field(ge=0)
    request_id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1, "max_value": 128})
    event_time: Series[UtcTimestamp]
    prediction: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    model_version: Series[str] = pa.Field(nullable=True)
    # optional: serving logs a request before its label exists (labels arrive apart, joined by
    # request id); a request that does carry the column is checked by the same rule
    churned: Series[float] | None = pa.Field(isin=[0.0, 1.0], nullable=True)

    @pa.check("event_time", name="not_in_future")
    def _not_in_future(cls, series: pd.Series) -> pd.Series:  # noqa: N805
        return not_in_future(series)
