"""The console script's exit: the exit handlers run and the output is flushed before the process
ends without the interpreter's teardown, with the status ``sys.exit`` would give."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXITS = textwrap.dedent(
    """
    import atexit, sys, tempfile, pathlib, threading, time
    from refit_cli.launch import exit_now
    folder = tempfile.TemporaryDirectory()  # removed by its exit handler (weakref.finalize)
    pathlib.Path(sys.argv[1]).write_text(folder.name)
    atexit.register(lambda: print("handler ran", flush=False))  # buffered: the flush must come after
    print("answer", end=" ")  # buffered too (stdout is a pipe)
    late = threading.Thread(target=lambda: (time.sleep(0.5), print("thread done", end=" ")))
    late.start()  # not a daemon: waited for, as sys.exit waits, before the handlers
    # a threading exit hook (how Prefect drains its event worker) runs before threads are joined
    threading._register_atexit(lambda: print("threading hook", end=" "))
    import concurrent.futures
    pool = concurrent.futures.ThreadPoolExecutor(2)  # idle non-daemon workers, stopped by their hook
    pool.submit(int).result()
    sys.stderr.write("to stderr ")
    exit_now(eval(sys.argv[2]))
    """
)


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [
        ("None", 0, "to stderr "),
        ("3", 3, "to stderr "),
        ("'refit: no such store'", 1, "to stderr refit: no such store\n"),
    ],
)
@pytest.mark.slow  # a fresh Python process each
def test_exit_now_runs_the_exit_handlers_flushes_and_keeps_the_status(
    tmp_path: Path, code: str, status: int, stderr: str
) -> None:
    where = tmp_path / "folder.txt"
    done = subprocess.run(
        [sys.executable, "-c", EXITS, str(where), code], capture_output=True, text=True, timeout=60
    )  # a hang: TimeoutExpired
    assert done.returncode == status
    assert done.stdout == "answer threading hook thread done handler ran\n"
    assert done.stderr == stderr
    assert not Path(where.read_text()).exists()


@pytest.mark.slow  # the console script, twice
def test_the_console_script_exits_with_the_commands_status() -> None:
    refit = str(Path(sys.executable).parent / "refit")
    done = subprocess.run([refit, "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("refit ")
    done = subprocess.run([refit, "models", "--no-such-option"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "No such option" in done.stderr
