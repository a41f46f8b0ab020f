"""Printing results: human text on a terminal, one JSON object with ``--json``; errors on one line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from refit.errors import RefitError


def emit(result: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        typer.echo(human(result))


@contextmanager
def cli_errors(as_json: bool) -> Iterator[None]:
    """Turn refit's errors into one line on stderr (or a JSON object) and exit 1, no traceback."""
    try:
        yield
    except RefitError as exc:
        message = str(exc).replace("\n", " ")
        if as_json:
            sys.stdout.write(json.dumps({"ok": False, "error": message, "error_type": type(exc).__name__}) + "\n")
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None
