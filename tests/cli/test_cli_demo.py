"""`refit demo` never deletes a folder it did not make, and checks everything before it deletes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from refit.errors import ConfigError
from refit_cli.demo_command import DEMO_MARKER, prepare_demo_store

ROOT = Path(__file__).resolve().parents[2]
REFIT = str(Path(sys.executable).parent / "refit")


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REFIT_")} | env
    return subprocess.run([REFIT, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)


def precious(folder: Path) -> Path:
    """A folder of someone's own files."""
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "thesis.txt").write_text("four years of work")
    return folder / "notes" / "thesis.txt"


def test_a_bad_config_is_reported_before_anything_is_deleted(tmp_path: Path) -> None:
    store = tmp_path / "store"
    kept = precious(store)
    (store / DEMO_MARKER).write_text("")  # even a demo's own folder is kept when the run cannot start
    result = run(["demo", "--store", str(store), "--config", "nope.yaml"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "nope.yaml" in result.stderr
    assert kept.read_text() == "four years of work"


def test_a_folder_the_demo_did_not_make_is_refused_untouched(tmp_path: Path) -> None:
    shutil.copy(ROOT / "refit.yaml", tmp_path / "refit.yaml")
    store = tmp_path / "mine"
    kept = precious(store)
    result = run(["demo", "--store", str(store), "--json"], tmp_path)
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["ok"] is False and error["error_type"] == "ConfigError"
    assert error["error"] == (
        f"refusing to clear {store}: it holds files and was not created by 'refit demo' "
        f"(no {DEMO_MARKER} marker); pick a new or empty folder with --store"
    )
    assert kept.read_text() == "four years of work"
    assert sorted(p.name for p in store.iterdir()) == ["notes"]


def test_prepare_clears_only_the_demos_own_folder(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    prepare_demo_store(fresh)
    assert sorted(p.name for p in fresh.iterdir()) == [DEMO_MARKER]

    (fresh / "models").mkdir()
    (fresh / "models" / "old.json").write_text("{}")
    prepare_demo_store(fresh)  # made by the demo: cleared
    assert sorted(p.name for p in fresh.iterdir()) == [DEMO_MARKER]

    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_demo_store(empty)
    assert (empty / DEMO_MARKER).is_file()

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        prepare_demo_store(a_file)
    assert a_file.read_text() == "x"


@pytest.mark.slow
def test_the_demo_runs_end_to_end_on_a_new_folder(tmp_path: Path) -> None:
    """The smallest demo the CLI allows, through the real flows, on a folder that does not exist yet."""
    raw = yaml.safe_load((ROOT / "refit.yaml").read_text())
    raw["training"]["smoke_max_ms_per_1k_rows"] = 1e6  # a loaded CI machine must not fail the smoke test
    (tmp_path / "refit.yaml").write_text(yaml.safe_dump(raw))
    store = tmp_path / "demo-store"
    result = run(
        ["demo", "--store", str(store), "--rows", "5000", "--batches", "4", "--rows-per-batch", "100", "--json"],
        tmp_path,
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # no PREFECT_API_URL: the demo starts Prefect's temporary server, as on a fresh clone; its
        # default 20 s to start is too short on a loaded CI machine
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["first"]["version"] == 1
    assert summary["drift"]["champion_version"] == 1 and summary["drift"]["current_rows"] == 400
    assert (store / DEMO_MARKER).is_file()
    assert (store / "registry" / "churn").is_dir()


DEMO_STYLE_RUN = """
from refit_cli.demo_command import quiet_console

quiet_console()  # as `refit demo` does, before Prefect is imported
from prefect import flow, get_run_logger


@flow(name="demo-style")
def demo_style() -> str:
    get_run_logger().info("step one of the demo-style run")
    get_run_logger().warning("a demo-style warning")
    from prefect.runtime import flow_run

    return str(flow_run.id)


print(demo_style())
"""


def test_the_demos_runs_log_info_to_the_api_while_the_terminal_stays_quiet(tmp_path: Path, prefect_api: str) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING")}
    env |= {"PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    result = subprocess.run(
        [sys.executable, "-c", DEMO_STYLE_RUN], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run_id = UUID(result.stdout.strip().splitlines()[-1])
    # the terminal: warnings only (no "Created flow run", no "Finished in state", no INFO line)
    assert "step one of the demo-style run" not in result.stderr
    assert "INFO" not in result.stderr and "Finished in state" not in result.stderr
    assert "a demo-style warning" in result.stderr
    # the API (the UI's Logs tab): the run's INFO lines are there
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    by_message = {log.message: log.level for log in logs}
    assert by_message.get("step one of the demo-style run") == logging.INFO
    assert by_message.get("a demo-style warning") == logging.WARNING
    assert any(m.startswith("Finished in state Completed") for m in by_message), sorted(by_message)
