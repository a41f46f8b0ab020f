"""`refit serve --config FILE`: all four deployments run with that file, checked through the
Prefect API; a partial `-p params='{...}'` keeps the deployment's other defaults."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from deployments.definitions import RETRAIN_FAILED_AUTOMATION, RETRAIN_REJECTED_AUTOMATION
from tests.cli.test_cli_models import REFIT
from tests.flows.helpers import make_project
from tests.reaper import REAPER

DEPLOYMENTS = (
    "retrain/retrain-weekly",
    "retrain/retrain-manual",
    "retrain/retrain-on-drift",
    "drift-check/drift-check-hourly",
)


def _wait(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - not there yet
            last = exc
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


def test_serve_config_reaches_all_four_deployments_and_a_partial_run_keeps_the_defaults(
    tmp_path: Path, prefect_api: str
) -> None:
    from prefect.client.orchestration import get_client

    project = tmp_path / "project"
    project.mkdir()
    config, _ = make_project(project, rows=800)
    config = config.rename(project / "team.yaml")  # not the default name: a dropped config fails
    elsewhere = tmp_path / "elsewhere"  # the serving process runs where no refit.yaml lies
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PREFECT_API"))}
    env |= {
        "PREFECT_API_URL": prefect_api,
        "REFIT_STORE": str(project / "store"),
        "REFIT_SCHEDULES_PAUSED": "true",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "REFIT_NOTIFY_WEBHOOK_URL": "http://127.0.0.1:9/notify-token-abc",  # the failure automations
    }
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen(
            [REFIT, "serve", "--config", str(config.relative_to(tmp_path))],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    REAPER.watch_group(serve.pid)
    try:
        with get_client(sync_client=True) as client:

            def applied() -> dict[str, Any]:
                assert serve.poll() is None, log.read_text()[-3000:]
                found = {name: client.read_deployment_by_name(name) for name in DEPLOYMENTS}
                paths = {name: d.parameters["params"]["config_path"] for name, d in found.items()}
                return found if set(paths.values()) == {str(config)} else {}

            deployments = _wait(applied, 120, "refit serve to apply the four deployments with --config")
            trigger = client.read_automations_by_name("retrain when drift is detected")[0]
            assert trigger.actions[0].parameters["params"]["config_path"] == str(config)
            # serve also created the notification automations, on the block it saved for the URL
            for name in (RETRAIN_FAILED_AUTOMATION, RETRAIN_REJECTED_AUTOMATION):
                [automation] = client.read_automations_by_name(name)
                assert automation.actions[0].type == "send-notification"
            assert "failure notifications on" in log.read_text()
            assert "notify-token-abc" not in log.read_text()

            # the README's CLI trigger: only the keys it names; config_path and store stay
            run = client.create_flow_run_from_deployment(
                deployments["retrain/retrain-manual"].id,
                parameters={"params": {"dry_run": True, "reason": "partial override"}},
            )

            def finished() -> Any:
                state = client.read_flow_run(run.id).state
                return state if state is not None and state.is_final() else None

            state = _wait(finished, 300, "the partial-parameter run to finish")
            assert state.is_completed(), (state, log.read_text()[-3000:])
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)
        REAPER.forget_group(serve.pid)
