"""The README's "Bring your own data" section, run as written: its five commands, copied out of
README.md, in a fresh folder that holds only the repository's examples/ and the virtualenv."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> str:
    """The bash block of the README's "Bring your own data" section."""
    section = ROOT.joinpath("README.md").read_text().split("## Bring your own data", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "the section has no bash block"
    return match.group(1)


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path, prefect_api: str) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    script = readme_commands()
    assert script.count(".venv/bin/") == 5 and "PYTHONPATH" not in script
    # PYTHONPATH is kept: it names the checkout under test (never examples/, where the schema is found by the config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PREFECT_API"))}
    env |= {
        "PREFECT_API_URL": prefect_api,  # the session's API instead of a temporary server per command
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    # each command's last output line is kept; the drift check's verdict and the replay's JSON are read below
    script = script.replace("--to 2012-10-29", "--to 2012-07-31 --json > replay.json")  # one window: July
    # refit drift exits 3 when the governor triggers, as the README says
    script = script.replace("--as-of 2012-08-01", "--as-of 2012-08-01 --json > drift.json || test $? -eq 3")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASS" in done.stdout and "182 of 182 rows valid" in done.stdout
    assert "registered seattle_weather version 1" in done.stdout
    drift = json.loads((tmp_path / "drift.json").read_text())
    assert drift["drift_detected"] and drift["decision"] == "trigger"
    assert {"temp_max", "temp_min"} <= set(drift["drifted_columns"])
    replay = json.loads((tmp_path / "replay.json").read_text())
    assert [w["rows"] for w in replay["windows"]] == [29] and replay["triggers"] == [0]
    assert (tmp_path / ".refit-replay/seattle_weather/replay/seattle_weather/timeline.png").is_file()
