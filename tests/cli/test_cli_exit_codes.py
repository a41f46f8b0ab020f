"""Exit codes and one-line errors of the flow-backed commands, as a script or a CI job sees them.

`refit retrain`: 0 promoted (or first model), 3 rejected, 4 inconclusive, 5 smoke test failed,
1 error. `refit drift`: 0 no trigger, 3 trigger (`--exit-zero`: 0). A typo in the config or the
store is one line before Prefect starts, and leaves no flow run behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from refit import recipe
from refit.config_loader import load_config
from refit_cli.output import RETRAIN_EXIT_CODES
from tests.cli.test_cli_models import REFIT, run
from tests.flows.helpers import make_project


def _flow_runs_with_config(config_path: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    # the newest runs of this worker's API (the server's default order is by id, which is random)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200, sort=FlowRunSort.EXPECTED_START_TIME_DESC)
    return [r for r in runs if str((r.parameters.get("params") or {}).get("config_path", "")).endswith(config_path)]


@pytest.fixture(scope="module")
def champion_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-exit-codes")
    config, store = make_project(folder, rows=5000)
    run_ = recipe.run_retrain(store, load_config(config))
    assert run_.need("version").version == 1
    return folder


@pytest.fixture
def champion(champion_folder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "p"
    shutil.copytree(champion_folder, folder)
    return folder


def _variant(folder: Path, name: str, training: dict[str, Any]) -> str:
    raw = yaml.safe_load((folder / "refit.yaml").read_text())
    raw["training"] |= training
    (folder / name).write_text(yaml.safe_dump(raw))
    return name


def test_a_config_typo_is_one_line_before_prefect_and_no_flow_run(tmp_path: Path, prefect_api: str) -> None:
    (tmp_path / "store").mkdir()
    for command in (["retrain"], ["retrain", "--dry-run"], ["drift"]):
        out = run([*command, "--config", "nope-typo.yaml"], tmp_path, api=prefect_api)
        assert out.returncode == 1
        assert out.stderr == "error: config file not found: nope-typo.yaml\n", out.stderr[-2000:]
        assert out.stdout == ""
    assert _flow_runs_with_config("nope-typo.yaml") == []


def test_a_mistyped_store_is_an_error_not_no_models(tmp_path: Path, prefect_api: str) -> None:
    config, _ = make_project(tmp_path, rows=200)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PREFECT_API"))}
    env |= {"REFIT_STORE": str(tmp_path / "stroe"), "PREFECT_API_URL": prefect_api}
    for command in (["models", "list"], ["drift", "history"], ["drift"], ["retrain"]):
        out = subprocess.run([REFIT, *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 1, (command, out.stdout)
        assert out.stderr.startswith(f"error: store {tmp_path / 'stroe'} does not exist (REFIT_STORE="), out.stderr
        assert out.stderr.count("\n") == 1 and "no models yet" not in out.stdout
    # the real store answers as before
    ok = run(["models", "list"], tmp_path)
    assert ok.returncode == 0 and ok.stdout.strip() == "no models yet"


def test_retrain_exits_by_outcome(champion: Path, prefect_api: str) -> None:
    """Version 1 is champion: the same recipe is INCONCLUSIVE (4), a crippled one REJECT (3), a
    smoke test the candidate cannot pass SMOKE_FAILED (5); each one's JSON says the same."""
    cases = {
        "refit.yaml": ("INCONCLUSIVE", 4),
        _variant(
            champion,
            "weak.yaml",
            {
                "candidates": [
                    {"family": "hist_gradient_boosting", "params": {"max_iter": [2], "learning_rate": [0.01]}}
                ]
            },
        ): ("REJECT", 3),
        _variant(champion, "smoke.yaml", {"smoke_max_ms_per_1k_rows": 1e-9}): ("SMOKE_FAILED", 5),
    }
    for config, (outcome, code) in cases.items():
        out = run(["retrain", "--dry-run", "--json", "--config", config], champion, api=prefect_api)
        result = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
        assert out.returncode == code == RETRAIN_EXIT_CODES[outcome], (config, out.returncode, out.stderr[-2000:])
        assert f'"outcome": "{outcome}"' in result


def test_an_expected_error_in_a_run_is_one_line_and_the_traceback_stays_in_the_run_log(
    tmp_path: Path, prefect_api: str
) -> None:
    """A DataError raised inside the flow (the config's sources match nothing): the terminal gets
    `error: ...` and no traceback; the run's log in the API keeps the traceback for the UI."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    config, _ = make_project(tmp_path, rows=200)
    raw = yaml.safe_load(config.read_text())
    raw["dataset"]["sources"] = ["nowhere/*.parquet"]  # checked only when the run reads its data
    config.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PREFECT_API"))}
    env |= {
        "REFIT_STORE": str(tmp_path / "store"),
        "PREFECT_API_URL": prefect_api,
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    out = subprocess.run(
        [REFIT, "retrain", "--config", str(config)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"error: no data files match 'nowhere/*.parquet' in {tmp_path / 'store'}"], out.stderr[-3000:]
    runs = _flow_runs_with_config(str(config))
    assert len(runs) == 1 and runs[0].state_type.value == "FAILED"
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])))
    assert any("Traceback" in log.message and "DataError" in log.message for log in logs)


def test_drift_exits_3_on_a_trigger_unless_exit_zero_and_history_honours_json(champion: Path, prefect_api: str) -> None:
    gen = run(
        ["generate", "production", "--batches", "3", "--rows-per-batch", "400", "--drift", "covariate"],
        champion,
    )
    assert gen.returncode == 0, gen.stderr
    other = champion.parent / "other"
    shutil.copytree(champion, other)
    drift = run(["drift", "--window-hours", "400", "--json"], champion, api=prefect_api)
    assert drift.returncode == 3, drift.stderr[-2000:]
    assert '"decision": "trigger"' in drift.stdout
    opted_out = run(["drift", "--window-hours", "400", "--json", "--exit-zero"], other, api=prefect_api)
    assert opted_out.returncode == 0 and '"decision": "trigger"' in opted_out.stdout, opted_out.stderr[-2000:]
    # the governor's cooldown: a second check does not trigger, and exits 0
    again = run(["drift", "--window-hours", "400", "--json"], champion, api=prefect_api)
    assert again.returncode == 0 and '"decision": "suppress"' in again.stdout, again.stdout[-2000:]
    history = run(["drift", "--json", "history"], champion)
    assert history.returncode == 0, history.stderr
    import json

    parsed = json.loads(history.stdout)
    assert [d["decision"]["action"] for d in parsed["decisions"]] == ["trigger", "suppress"]
