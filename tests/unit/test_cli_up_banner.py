"""What `refit up` tells a second terminal, and the Prefect defaults every refit process starts with."""

from __future__ import annotations

import pytest

from refit_cli.main import apply_prefect_defaults
from refit_cli.up import _announce, export_line


def test_the_banner_prints_the_exact_export_line(capsys: pytest.CaptureFixture[str]) -> None:
    _announce("http://127.0.0.1:4321/api", webhook=False, webhook_port=4280, model="churn")
    lines = capsys.readouterr().out.splitlines()
    assert "  export PREFECT_API_URL=http://127.0.0.1:4321/api" in lines
    assert export_line("http://h:1/api") == "export PREFECT_API_URL=http://h:1/api"


def test_refit_processes_send_no_prefect_telemetry_unless_told_to() -> None:
    env: dict[str, str] = {}
    apply_prefect_defaults(env)
    assert env == {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    chosen = {"PREFECT_SERVER_ANALYTICS_ENABLED": "true"}
    apply_prefect_defaults(chosen)
    assert chosen == {"PREFECT_SERVER_ANALYTICS_ENABLED": "true"}
