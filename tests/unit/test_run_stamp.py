"""One home for the run stamp: what writes run ids, quarantine and report keys is what reads them."""

from __future__ import annotations

from datetime import UTC, datetime

from refit.data import run_stamp, stamp_time
from refit.pipeline import new_run_id


def test_a_run_id_and_a_stamp_give_back_the_time_they_were_made() -> None:
    at = datetime(2026, 11, 24, 15, 30, 0, 123456, tzinfo=UTC)
    assert stamp_time(run_stamp(at)) == at
    assert stamp_time(new_run_id(at)) == at


def test_anything_else_is_no_time() -> None:
    assert stamp_time("manual-run") is None
    assert stamp_time("") is None
