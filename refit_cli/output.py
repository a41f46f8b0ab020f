"""Printing results: human text on a terminal, one JSON object with ``--json``; errors on one line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from refit.errors import RefitError

#: ``refit retrain``'s exit status per outcome (1: an error). One home: ``--help``, the README and
#: the tests read it.
RETRAIN_EXIT_CODES: dict[str, int] = {"PROMOTE": 0, "REJECT": 3, "INCONCLUSIVE": 4, "SMOKE_FAILED": 5}
#: ``refit drift``: 0 when the governor does not trigger a retrain, 3 when it does (``--exit-zero``: 0).
DRIFT_TRIGGER_EXIT = 3
ERROR_EXIT = 1


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
        raise typer.Exit(ERROR_EXIT) from None


def _refit_error_names() -> tuple[str, ...]:
    names: list[str] = []
    todo: list[type[BaseException]] = [RefitError]
    while todo:
        cls = todo.pop()
        names.append(cls.__name__)
        todo.extend(cls.__subclasses__())
    return tuple(f"{name}: " for name in names)


class _ExpectedErrorsOffTheTerminal(logging.Filter):
    """Drop, from the terminal only, what Prefect logs about a run that failed on a refit error.

    The run's own log (Prefect's API handler, on the flow- and task-run loggers) keeps the
    traceback for the UI; the terminal gets the one line of :func:`cli_errors` instead of ~80.
    """

    def __init__(self) -> None:
        super().__init__()
        self.names = _refit_error_names()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            return True
        if record.exc_info and isinstance(record.exc_info[1], RefitError):
            return False
        if record.levelno >= logging.INFO and "Finished in state Failed" in record.getMessage():
            return not any(name in record.getMessage() for name in self.names)
        return True


def quiet_expected_errors() -> None:
    """Install :class:`_ExpectedErrorsOffTheTerminal` on Prefect's console handlers (after ``import prefect``)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
            isinstance(f, _ExpectedErrorsOffTheTerminal) for f in handler.filters
        ):
            handler.addFilter(_ExpectedErrorsOffTheTerminal())


class _StepTracker(logging.Filter):
    """Remembers which task run logged last (it lets every record through)."""

    def __init__(self) -> None:
        super().__init__()
        self.step: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        name = getattr(record, "task_run_name", None)
        if name:
            self.step = str(name)
        return True


#: Seconds between two heartbeat lines (``REFIT_HEARTBEAT_S`` overrides).
HEARTBEAT_S = 15.0


@contextmanager
def heartbeat(what: str, as_json: bool) -> Iterator[None]:
    """While a flow runs in this process, a line on stderr every ``HEARTBEAT_S``: which step runs
    and for how long, so a long training is never a silent terminal. Only on a terminal: nothing
    under ``--json`` or when stderr is not a TTY (CI logs, pipes)."""
    import os
    import threading
    import time

    if as_json or not sys.stderr.isatty():
        yield
        return
    every = float(os.environ.get("REFIT_HEARTBEAT_S", HEARTBEAT_S))
    tracker = _StepTracker()
    task_logger = logging.getLogger("prefect.task_runs")
    task_logger.addFilter(tracker)
    done = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not done.wait(every):
            step = f"step {tracker.step}" if tracker.step else "starting"
            sys.stderr.write(f"... {what}: {step}, {time.monotonic() - started:.0f} s so far\n")
            sys.stderr.flush()

    thread = threading.Thread(target=beat, name="refit-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2)
        task_logger.removeFilter(tracker)
