"""On a terminal, a flow-backed command is never silent for long: a heartbeat line names the step
and the time so far. Under --json, or when stderr is not a terminal (CI logs), there is none."""

from __future__ import annotations

import os
import pty
import subprocess
import threading
from pathlib import Path

from refit import recipe
from refit.config_loader import load_config
from tests.cli.test_cli_models import REFIT
from tests.flows.helpers import make_project


def _run_on_a_tty(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """``refit ARGS`` with stderr on a pseudo-terminal; (exit status, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        out = subprocess.run(
            [REFIT, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=300
        )
    finally:
        os.close(slave)
    reader.join(timeout=10)
    os.close(master)
    return out.returncode, out.stdout, b"".join(chunks).decode(errors="replace")


def test_a_drift_check_on_a_terminal_shows_a_heartbeat_and_json_stays_quiet(tmp_path: Path, prefect_api: str) -> None:
    config, store = make_project(tmp_path, rows=800)
    assert recipe.run_retrain(store, load_config(config)).promotion is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PREFECT_API"))}
    env |= {
        "REFIT_STORE": str(tmp_path / "store"),
        "PREFECT_API_URL": prefect_api,
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "REFIT_HEARTBEAT_S": "0.5",
    }
    code, stdout, terminal = _run_on_a_tty(["drift", "--window-hours", "1"], tmp_path, env)
    assert code == 0, terminal[-3000:]
    assert "governor: none (no-data)" in stdout
    beats = [line for line in terminal.splitlines() if line.startswith("... drift check: ")]
    assert beats and all(line.rstrip().endswith("s so far") for line in beats), terminal[-3000:]

    code, stdout, terminal = _run_on_a_tty(["drift", "--window-hours", "1", "--json"], tmp_path, env)
    assert code == 0 and '"reason": "no-data"' in stdout
    assert "... drift check" not in terminal
    piped = subprocess.run(
        [REFIT, "drift", "--window-hours", "1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert piped.returncode == 0 and "... drift check" not in piped.stderr
