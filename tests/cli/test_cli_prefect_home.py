"""With no Prefect server running, a flow-backed command's run lands in the store's Prefect home:
the SQLite `refit up` serves later, so its UI shows the run (not in ``~/.prefect``, as before).

The other half (a running `refit up` found through its state file) is in tests/e2e/test_up_e2e.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

from refit_cli.prefect_api import HOME_DIR, STATE_FILE
from tests.e2e.worker_stack import make_project

REFIT = str(Path(sys.executable).parent / "refit")
#: Above the kernel's largest pid (pid_max is at most 2**22): no process has it.
DEAD_PID = 2**22 + 1


def test_without_a_server_the_run_lands_in_the_stores_prefect_home(tmp_path: Path) -> None:
    config = make_project(tmp_path, rows=2000)  # the linear family on 2,000 rows: the cheapest retrain
    home = tmp_path / "store" / HOME_DIR
    home.mkdir()
    # what a refit up killed with -9 leaves behind: its process is gone, so the file is ignored
    (home / STATE_FILE).write_text(json.dumps({"pid": DEAD_PID, "api_url": "http://127.0.0.1:9/api"}))
    user = tmp_path / "user"  # the user's home: Prefect's default home (~/.prefect) would be in it
    user.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REFIT_"))}
    env |= {"HOME": str(user), "REFIT_STORE": str(tmp_path / "store"), "PREFECT_LOGGING_LEVEL": "WARNING"}
    reason = f"lands in the home {uuid.uuid4().hex[:8]}"

    done = subprocess.run(
        [REFIT, "retrain", "--dry-run", "--reason", reason, "--config", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]  # a dry run's first model: PROMOTE
    assert done.stderr.splitlines()[0].startswith(f"Prefect: a local server on {home} (no refit up running;")

    with sqlite3.connect(home / "prefect.db") as db:  # the database `refit up` serves from this home
        rows = db.execute(
            "SELECT flow.name, flow_run.state_type, flow_run.parameters "
            "FROM flow_run JOIN flow ON flow.id = flow_run.flow_id"
        ).fetchall()
    mine = [(name, state) for name, state, params in rows if json.loads(params)["params"]["reason"] == reason]
    assert mine == [("retrain", "COMPLETED")]
    assert not (user / ".prefect" / "prefect.db").exists()  # where the run went before: Prefect's default home
