"""Stops the servers a test process started when that process dies without its teardown.

A test process that is killed (SIGKILL, a CI job's timeout, an OOM kill) runs no fixture
teardown, and the servers its fixtures started in sessions of their own (Prefect and MLflow
servers, ``refit serve``, workers, a PostgreSQL cluster that ``pg_ctl`` detached) would run on,
holding ports, CPU and temporary folders. :data:`REAPER` is a small watcher process, started on
first use, that holds the read end of a pipe whose write end only this test process has: when
the process ends, however it ends, the pipe reaches end-of-file, and the watcher stops what is
still registered (process groups and processes: SIGTERM, then SIGKILL after a grace period;
clusters: their stop command). A fixture that stops its server itself forgets it first, so a
clean run leaves the watcher nothing to do.

Run as ``python -m tests.reaper`` it is that watcher: it reads ``watch``/``forget`` lines on
stdin until end-of-file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

GRACE_S = 10.0


class Reaper:
    """The test process's side: register what to stop should this process die first."""

    def __init__(self) -> None:
        self._write_fd: int | None = None
        self._watcher: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the watcher (``tests/conftest.py`` does, as the test process starts: before any
        test's guard on starting processes)."""
        with self._lock:
            if self._watcher is not None and self._watcher.poll() is None:
                return
            read_fd, self._write_fd = os.pipe()  # neither end is inherited by later children
            self._watcher = subprocess.Popen(
                [sys.executable, "-m", "tests.reaper"],
                stdin=read_fd,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                start_new_session=True,  # a Ctrl-C to the terminal leaves it to clean up
            )
            os.close(read_fd)

    def _send(self, *words: str) -> None:
        self.start()
        with self._lock:
            assert self._write_fd is not None
            os.write(self._write_fd, (json.dumps(words) + "\n").encode())

    def watch_group(self, pgid: int) -> None:
        """Stop process group ``pgid`` if this process dies first."""
        self._send("watch", "group", str(pgid))

    def forget_group(self, pgid: int) -> None:
        self._send("forget", "group", str(pgid))

    def watch_process(self, pid: int) -> None:
        """Stop process ``pid`` if this process dies first."""
        self._send("watch", "process", str(pid))

    def forget_process(self, pid: int) -> None:
        self._send("forget", "process", str(pid))

    def watch_command(self, argv: list[str]) -> None:
        """Run ``argv`` (a server's own stop command) if this process dies first."""
        self._send("watch", "command", json.dumps(argv))

    def forget_command(self, argv: list[str]) -> None:
        self._send("forget", "command", json.dumps(argv))


#: The one reaper of this test process (every xdist worker is a test process of its own).
REAPER = Reaper()


def _alive(kind: str, ident: int) -> bool:
    try:
        (os.killpg if kind == "group" else os.kill)(ident, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _stop(targets: dict[tuple[str, str], None]) -> None:
    """SIGTERM every watched group and process, SIGKILL what is left after the grace period, then
    run every watched stop command."""
    signalled = [(kind, int(ident)) for kind, ident in targets if kind in ("group", "process")]
    for kind, ident in signalled:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            (os.killpg if kind == "group" else os.kill)(ident, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while any(_alive(*t) for t in signalled) and time.monotonic() < deadline:
        time.sleep(0.2)
    for kind, ident in signalled:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            (os.killpg if kind == "group" else os.kill)(ident, signal.SIGKILL)
    for kind, argv in targets:
        if kind == "command":
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(json.loads(argv), capture_output=True, timeout=60)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    targets: dict[tuple[str, str], None] = {}  # insertion-ordered set
    for line in sys.stdin.buffer:
        verb, kind, ident = json.loads(line)
        if verb == "watch":
            targets[(kind, ident)] = None
        else:
            targets.pop((kind, ident), None)
    _stop(targets)


if __name__ == "__main__":
    main()
