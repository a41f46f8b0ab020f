"""tests/reaper.py: the servers of a test process that is killed (no teardown) are stopped anyway."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import TESTS

pytestmark = pytest.mark.slow  # starts processes

#: A stand-in for a test process: it starts two servers (sleepers in sessions of their own), has
#: the reaper watch both and a stop command, forgets the second as a fixture that stopped it
#: would, prints what it started and waits to be killed.
TEST_PROCESS = textwrap.dedent(
    """
    import json, subprocess, sys, time
    from tests.reaper import REAPER

    marker = sys.argv[1]
    servers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
               for _ in range(2)]
    REAPER.start()
    for server in servers:
        REAPER.watch_group(server.pid)
    REAPER.forget_group(servers[1].pid)
    REAPER.watch_command([sys.executable, "-c", f"open({marker!r}, 'w').write('stopped')"])
    print(json.dumps([s.pid for s in servers]), flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init in this container) counts as gone
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


def test_a_killed_test_process_leaves_no_server_behind(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    proc = subprocess.Popen(
        [sys.executable, "-c", TEST_PROCESS, str(marker)], cwd=TESTS.parent, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    watched, forgotten = json.loads(proc.stdout.readline())
    try:
        assert _alive(watched) and _alive(forgotten)
        proc.send_signal(signal.SIGKILL)  # no teardown runs
        proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        while (_alive(watched) or not marker.exists()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(watched), "the watched server outlived its test process"
        assert marker.read_text() == "stopped", "the stop command did not run"
        assert _alive(forgotten), "a server its fixture had taken over (forgotten) was stopped"
    finally:
        for pid in (watched, forgotten):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
