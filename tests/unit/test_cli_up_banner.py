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
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "120"  # Prefect's 20 s fails under load
    chosen = {"PREFECT_SERVER_ANALYTICS_ENABLED": "true", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "30"}
    apply_prefect_defaults(chosen)
    assert chosen == {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "30",
    }


def test_a_plain_postgresql_url_gets_the_driver_prefects_server_needs() -> None:
    from refit_cli.up import prefect_database_url

    for given in (
        "postgresql://u:pw@db:5432/prefect",
        "postgres://u:pw@db:5432/prefect",
        " postgresql+asyncpg://u:pw@db:5432/prefect",
    ):
        assert prefect_database_url(given) == "postgresql+asyncpg://u:pw@db:5432/prefect"
    assert prefect_database_url("sqlite+aiosqlite:////x/prefect.db") == "sqlite+aiosqlite:////x/prefect.db"


def test_a_database_url_prefect_cannot_use_is_one_line_without_its_password() -> None:
    from refit_cli.up import prefect_database_url

    with pytest.raises(ValueError, match=r"expected a postgresql:// URL .* got mysql://\.\.\.$") as caught:
        prefect_database_url("mysql://admin:hunter2@db/prefect")
    assert "hunter2" not in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="got 'db.example.com'"):
        prefect_database_url("db.example.com")


def test_the_database_comes_from_the_option_else_the_environment_and_never_beside_a_running_api() -> None:
    from refit_cli.up import _database

    env_url = {"PREFECT_API_DATABASE_CONNECTION_URL": "postgresql://env@db/p"}
    assert _database(None, {}) is None  # SQLite in the Prefect home
    assert _database(None, env_url) == "postgresql+asyncpg://env@db/p"
    assert _database("postgresql://flag@db/p", env_url) == "postgresql+asyncpg://flag@db/p"  # the option wins
    running = {"PREFECT_API_URL": "http://127.0.0.1:4200/api"}
    assert _database(None, running | env_url) is None  # that server has its own database
    with pytest.raises(ValueError, match="PREFECT_API_URL is set, so refit up starts no Prefect server"):
        _database("postgresql://flag@db/p", running)


def test_the_banner_names_the_database_host_not_its_credentials_and_tells_how_to_start_workers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from refit_cli.up import database_label

    assert database_label("postgresql+asyncpg://refit:s3cret@db.internal:5432/prefect") == (
        "PostgreSQL at db.internal:5432/prefect"
    )
    _announce("http://127.0.0.1:4321/api", webhook=False, webhook_port=4280, model="churn", pool="refit-pool")
    out = capsys.readouterr().out
    assert "on work pool refit-pool" in out and "  prefect worker start --pool refit-pool" in out.splitlines()
