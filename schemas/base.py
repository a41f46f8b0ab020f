"""The base contract every refit schema derives from."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

#: Clock skew tolerated by the "not in the future" rule.
FUTURE_TOLERANCE = pd.Timedelta(minutes=5)


class BaseSchema(pa.DataFrameModel):
    """Coerce to the declared dtypes; reject columns the contract does not name.

    Coercion is lossless (``refit.validation`` checks it before pandera's ``astype``): a
    ``bool`` column reads true/false, yes/no and 1/0 in any case, real booleans and the numbers
    0 and 1; an ``int`` column refuses a fractional or out-of-range number; a datetime column
    reads ISO 8601 times (no offset: UTC; a date alone: midnight UTC) and datetime objects, and
    refuses numbers and any other text. Any other value sends its row to the quarantine, with
    the rule it broke.
    """

    class Config:
        coerce = True
        strict = True


def not_in_future(series: pd.Series) -> pd.Series:
    """Element-wise: timestamp <= now (UTC) + tolerance."""
    now = pd.Timestamp.now(tz="UTC") + FUTURE_TOLERANCE
    return series <= now
