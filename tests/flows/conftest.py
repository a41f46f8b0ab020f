"""One real Prefect API for all flow tests (``prefect_api`` in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def flows_use_the_session_api(prefect_api: str) -> None:
    """Every flow test runs against the session's Prefect API."""
