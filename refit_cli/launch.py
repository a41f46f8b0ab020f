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
    does before its teardown happens here, in its order (CPython's ``Py_FinalizeEx``):
    ``threading._shutdown`` runs the threading exit hooks (Prefect drains its event worker
    there; idle thread pools are told to stop) and waits for non-daemon threads, then the exit
    handlers run (``logging`` flushes its handlers, which drains Prefect's log worker, a capture
    writer flushes its rows, temporary folders are removed), stdout and stderr are flushed; then
    the process ends with ``os._exit``. Where the interpreter offers neither hook, or for a status
    ``os._exit`` cannot take, this is a plain ``sys.exit``.
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = int(code)
    else:  # sys.exit("message"): the message on stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    shutdown_threads = getattr(threading, "_shutdown", None)
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if shutdown_threads is None or run_exit_handlers is None or not -(2**31) <= status < 2**31:
        raise SystemExit(status if isinstance(code, str) else code)
    shutdown_threads()
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started without that file descriptor
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            status = status or 1
    os._exit(status)
