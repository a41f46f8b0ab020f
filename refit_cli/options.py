"""The options several refit commands share: one definition each."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

CONFIG_OPT = typer.Option("--config", "-c", help="Pipeline config (YAML).")
JSON_OPT = typer.Option("--json", help="Print one JSON object on stdout.")
WINDOW_DAYS_OPT = typer.Option(
    min=0,
    help="Labelled captures of the last N days join the base data (default: training.window_days of the config).",
)


def parse_as_of(value: str | None) -> datetime | None:
    """``--as-of``: an ISO 8601 time; one without a zone is UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        from refit.errors import ConfigError

        raise ConfigError(f"--as-of {value!r} is not an ISO 8601 time (e.g. 2026-03-02T12:00:00Z)") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


AS_OF_OPT = typer.Option(
    "--as-of",
    help="Run as of this time (ISO 8601, UTC when no zone is given): windows end here in the data's "
    "event time, labels count once arrived by then, the governor counts on this clock.",
)
