"""Capture writers still running when the interpreter exits are closed (drained or spilled,
bounded), so rows still queued when a server stops without calling ``close()`` are not lost."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from refit.capture.writer import CaptureWriter

log = logging.getLogger("refit.capture")

#: Writers whose flusher runs: closed (drained or spilled, bounded) when the interpreter exits,
#: so rows still queued when a server stops without calling ``close()`` are not lost.
_RUNNING: weakref.WeakSet[CaptureWriter] = weakref.WeakSet()
_exit_hook = threading.Lock()
_exit_hook_registered = False


def _close_running_writers() -> None:
    for writer in list(_RUNNING):
        try:
            writer.close()
        except Exception:  # one writer's failure must not stop the others
            log.exception("closing capture writer for %s at exit failed", writer.model_name)


def watch_at_exit(writer: CaptureWriter) -> None:
    """Close ``writer`` when the interpreter exits, unless it was closed before."""
    global _exit_hook_registered
    _RUNNING.add(writer)
    with _exit_hook:
        if not _exit_hook_registered:
            atexit.register(_close_running_writers)
            _exit_hook_registered = True
