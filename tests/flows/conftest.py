"""One real Prefect API for all flow tests (``prefect_api`` in tests/conftest.py)."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="refit-prefect-home-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


@pytest.fixture(scope="session", autouse=True)
def flows_use_the_session_api(prefect_api: str) -> None:
    """Every flow test runs against the session's Prefect API."""
