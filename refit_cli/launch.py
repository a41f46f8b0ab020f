"""The ``refit`` console script: one line instead of a traceback where only the serving side is
installed, and an exit that does not wait for the interpreter's teardown.

``pip install refit`` (or ``refit[capture]``) installs the capture writer and model loading, not
the packages the command needs (typer, Prefect, torch, Evidently: the ``pipeline`` extra).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn

OWN_PACKAGES = frozenset({"refit", "refit_cli", "flows", "tasks", "schemas", "deployments"})


def main() -> None:
    try:
        from refit_cli.main import main as run
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if not missing or missing in OWN_PACKAGES:
            raise
        sys.exit(
            f"refit: the command needs the pipeline extra ({missing} is not installed): pip install 'refit[pipeline]'"
        )
    try:
        run()
    except SystemExit as done:  # typer ends every command this way, with its exit status
        exit_now(done.code)


def exit_now(code: object) -> NoReturn:
    """End the process with ``code`` as ``sys.exit(code)`` would, minus the interpreter's teardown.

    A flow-backed command ends with about 2,700 modules loaded and Prefect's event-loop threads
    alive; tearing that down after the exit handlers had run took 1.7-2.0 s of a 10-12 s
    ``refit drift`` on a 2-core machine, after its answer was printed. So what the interpreter
    does before its teardown happens here, in its order: non-daemon threads are waited for, the
    exit handlers run (Prefect drains its log and event workers, ``logging`` flushes its handlers,
    a capture writer flushes its rows, temporary folders are removed), stdout and stderr are
    flushed; then the process ends with ``os._exit``. Where the interpreter offers no way to run
    the handlers, this is a plain ``sys.exit``.
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message on stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is None:
        raise SystemExit(status)
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            status = status or 1
    os._exit(status)
