"""The one base of refit's pydantic records: frozen, and strict about the fields they take."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """A value refit builds and passes on: frozen; an unknown field is a mistake (``extra="forbid"``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class TolerantRecord(Record):
    """A record refit reads from outside the process (the store, a sender), where a newer writer may add fields.

    ``extra="ignore"``: metadata written by a newer refit still reads in an older one.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")
