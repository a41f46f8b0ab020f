"""The whole local stack over real HTTP: Prefect server, ``refit serve``, ``refit webhook``.

A signed alert starts a retrain that registers a version; a burst of redeliveries starts
one run; refused requests start none; the drift event starts a run with templated parameters.
"""

from __future__ import annotations

import fcntl
import json
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.webhook import idempotency_key
from refit.policy import Ledger
from refit.registry import Registry
from refit.webhook import DriftAlert, sign
from refit_cli.prefect_api import LOCK_FILE, STATE_FILE
from tests.e2e.conftest import (
    BIN,
    WEBHOOK_SECRET,
    WINDOW_DAYS,
    PrefectServer,
    Proc,
    Project,
    runs_of,
    start,
    stop,
    wait_for_completed,
    wait_for_quiet,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = "churn"


def _alert(alert_id: str, **extra: Any) -> bytes:
    return json.dumps(
        {
            "alert_id": alert_id,
            "model": MODEL,
            "reason": "e2e drift",
            "drift_share": 0.42,
            "drifted_columns": ["monthly_charges"],
            **extra,
        }
    ).encode()


def _post(client: httpx.Client, body: bytes, timestamp: int | None = None, signed: bool = True) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signed:
        headers["X-Refit-Signature"] = sign(body, WEBHOOK_SECRET, timestamp)
    return client.post("/alerts/drift", content=body, headers=headers)


@pytest.fixture
def hook(refit_webhook: str) -> Any:
    with httpx.Client(base_url=refit_webhook, timeout=60) as client:
        yield client


def test_signed_alert_starts_a_retrain_that_registers_a_version(
    hook: httpx.Client, prefect_server: PrefectServer, refit_serve: Proc, project: Project
) -> None:
    alert_id = f"e2e-first-{uuid.uuid4().hex[:8]}"
    response = _post(hook, _alert(alert_id))
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "accepted" and answer["alert_id"] == alert_id and answer["model"] == MODEL

    run = wait_for_completed(prefect_server, refit_serve, answer["flow_run_id"], 240)
    params = run.parameters["params"]
    assert params["trigger"] == "drift" and params["reason"] == f"drift alert {alert_id}: e2e drift"
    assert params["drift"]["alert_id"] == alert_id and params["drift"]["drift_share"] == 0.42
    assert params["window_days"] == WINDOW_DAYS  # the deployment's default, not the model's
    assert params["force"] is False and params["dry_run"] is False and params["config_path"] == "refit.yaml"
    assert params["store"] == project.store().uri  # the webhook's store, not whatever the worker has
    assert run.idempotency_key == idempotency_key(DriftAlert(alert_id=alert_id, model=MODEL))

    versions = Registry(project.store()).list_versions(MODEL)
    mine = [v for v in versions if v.tags.get("trigger") == "drift" and alert_id in v.description]
    assert len(mine) == 1, [(v.version, v.tags, v.description) for v in versions]
    assert project.store().list(f"webhook/{MODEL}/outbox/") == []  # nothing left waiting for a retry


def _outbox_settled(project: Project) -> None:
    """Until the webhook's outbox is empty: every accepted alert's run is created (a run is only
    ever created from the outbox), so a run that was going to appear has appeared."""
    wait_until(lambda: project.store().list(f"webhook/{MODEL}/outbox/") == [], 60, "the webhook outbox to settle")


def test_two_hundred_redeliveries_start_exactly_one_run(
    hook: httpx.Client, prefect_server: PrefectServer, refit_webhook: str, project: Project
) -> None:
    alert_id = f"e2e-burst-{uuid.uuid4().hex[:8]}"
    key = idempotency_key(DriftAlert(alert_id=alert_id, model=MODEL))
    before = {r.id for r in runs_of(prefect_server, "retrain/retrain-on-drift")}
    body = _alert(alert_id)  # one alert, redelivered: the same bytes, signed anew each time

    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    with (
        httpx.Client(base_url=refit_webhook, timeout=120, limits=limits) as client,
        ThreadPoolExecutor(max_workers=20) as pool,
    ):
        responses = list(pool.map(lambda _: _post(client, body), range(200)))

    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 202}, sorted(set(codes))
    accepted = [r.json() for r in responses if r.status_code == 202]
    suppressed = [r.json() for r in responses if r.status_code == 200]
    assert accepted, "no delivery was accepted"
    run_ids = {a["flow_run_id"] for a in accepted}
    assert len(run_ids) == 1, run_ids  # every 202 names the same run
    assert all(s["status"] == "suppressed" and "flow_run_id" not in s for s in suppressed)
    assert len(accepted) + len(suppressed) == 200

    _outbox_settled(project)  # a second run created late would exist by now
    after = runs_of(prefect_server, "retrain/retrain-on-drift")
    new = [r for r in after if r.id not in before]
    assert [str(r.id) for r in new] == list(run_ids)
    assert [r.idempotency_key for r in new] == [key]


def test_refused_requests_start_nothing(
    hook: httpx.Client, prefect_server: PrefectServer, refit_webhook: str, project: Project
) -> None:
    before = {r.id for r in runs_of(prefect_server, "retrain/retrain-on-drift")}
    refused_id = f"e2e-refused-{uuid.uuid4().hex[:8]}"
    body = _alert(refused_id)

    unsigned = _post(hook, body, signed=False)
    assert unsigned.status_code == 401 and unsigned.json()["status"] == "unauthorized"
    stale = _post(hook, body, timestamp=int(time.time()) - 600)
    assert stale.status_code == 401 and "window" in stale.json()["detail"]
    wrong = hook.post("/alerts/drift", content=body, headers={"X-Refit-Signature": sign(body, "not-the-secret")})
    assert wrong.status_code == 401
    oversize = body[:-1] + b', "pad": "' + b"x" * (1 << 20) + b'"}'
    too_large = _post(hook, oversize)
    assert too_large.status_code == 413 and too_large.json()["status"] == "too_large"

    # What must exist: a signed alert sent after them on the same connection is decided, recorded
    # in the governor's ledger, and (when it triggers) has its run; the refused ones left neither.
    sentinel_id = f"e2e-after-refused-{uuid.uuid4().hex[:8]}"
    sentinel = _post(hook, _alert(sentinel_id))
    assert sentinel.status_code in (200, 202), sentinel.text
    _outbox_settled(project)
    decided = [e.signal.alert_id for e in Ledger(project.store(), MODEL).entries()]
    assert sentinel_id in decided and refused_id not in decided
    new = [r for r in runs_of(prefect_server, "retrain/retrain-on-drift") if r.id not in before]
    # 202: its one run (by its idempotency key); 200: the governor suppressed it, no run
    keys = [idempotency_key(DriftAlert(alert_id=sentinel_id, model=MODEL))] if sentinel.status_code == 202 else []
    assert [r.idempotency_key for r in new] == keys
    assert httpx.get(f"{refit_webhook}/healthz").status_code == 200  # still serving after all that


def test_drift_event_starts_a_run_with_templated_parameters(
    prefect_server: PrefectServer, refit_serve: Proc, project: Project
) -> None:
    marker = f"e2e-event-{uuid.uuid4().hex[:8]}"
    payload = {
        "reason": marker,
        "drift_share": 0.55,
        "drifted_columns": ["tenure_months"],
        "store": project.store().uri,  # the drift check names the store it found the drift in
    }
    emit = (
        "import json, sys\n"
        "from prefect.events import emit_event\n"
        "event = emit_event(event='refit.drift.detected', payload=json.loads(sys.argv[1]),\n"
        "                   resource={'prefect.resource.id': 'refit.model.churn', 'refit.model': 'churn'})\n"
        "assert event is not None, 'emit_event sent nothing'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", emit, json.dumps(payload)],
        env=prefect_server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr

    def triggered() -> list[Any]:
        return [
            r
            for r in runs_of(prefect_server, "retrain/retrain-on-drift")
            if marker in (r.parameters.get("params", {}).get("reason") or "")
        ]

    [run] = wait_until(triggered, 60, "the drift automation to create a retrain-on-drift run", every_s=1)
    params = run.parameters["params"]
    assert params["reason"] == f"drift detected on refit.model.churn: {marker}"
    assert params["drift"] == payload  # a one-expression template keeps the payload an object, floats floats
    assert params["trigger"] == "drift" and params["config_path"] == "refit.yaml"
    assert params["window_days"] == WINDOW_DAYS and params["store"] == project.store().uri

    # the rendered parameters are accepted by the flow, and the version remembers why it exists
    wait_for_completed(prefect_server, refit_serve, run.id, 240)
    [version] = [v for v in Registry(project.store()).list_versions(MODEL) if marker in v.description]
    assert version.tags["trigger"] == "drift" and version.description == params["reason"]


def test_refit_up_is_found_by_the_other_commands_and_refuses_a_second_instance(
    prefect_server: PrefectServer, refit_serve: Proc, project: Project, e2e_root: Path
) -> None:
    wait_for_quiet(prefect_server, 240)  # its own `refit serve` joins the others for a few seconds
    home = e2e_root / "up-home"
    env = project.env | {"PREFECT_HOME": str(home)}  # the lock lives in PREFECT_HOME; the API is the test server's
    command = [str(BIN / "refit"), "up", "--no-webhook", "--config", str(project.config)]
    first = start("refit-up", command, env, project.root, e2e_root)
    try:

        def up() -> bool:
            assert first.alive(), f"refit up exited:\n{first.tail()}"
            return "refit is up" in first.tail()

        wait_until(up, 60, "the first `refit up`")
        assert f"using the Prefect API at {prefect_server.api_url}" in first.tail()  # no second server
        state = json.loads((home / STATE_FILE).read_text())
        assert (state["pid"], state["api_url"]) == (first.popen.pid, prefect_server.api_url)

        # A refit command on the same home without PREFECT_API_URL finds this refit up through its
        # state file: no temporary server of its own, and its run is on refit up's server (its UI).
        reason = f"e2e found refit up {uuid.uuid4().hex[:8]}"
        plain = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
        argv = ["retrain", "--dry-run", "--reason", reason, "--config", str(project.config)]
        found = subprocess.run(
            [str(BIN / "refit"), *argv], env=plain, cwd=project.root, capture_output=True, text=True, timeout=300
        )
        assert found.returncode in (0, 3, 4), found.stdout + found.stderr[-3000:]  # a gate decision, not an error
        assert f"Prefect: refit up's server at {prefect_server.api_url} (pid {first.popen.pid}" in found.stderr
        assert "temporary server" not in found.stderr
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName

        with prefect_server.client() as client:
            runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["retrain"])))
        [run] = [r for r in runs if r.parameters.get("params", {}).get("reason") == reason]
        assert run.state_type is not None and run.state_type.value == "COMPLETED"
        assert run.parameters["params"]["dry_run"] is True and run.deployment_id is None  # the CLI's own run

        second = subprocess.run(command, env=env, cwd=project.root, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"refit up is already running (pid {first.popen.pid}" in second.stderr
        assert first.alive()  # the refusal did not disturb the running one
        assert json.loads((home / STATE_FILE).read_text())["pid"] == first.popen.pid  # nor its state file

        first.popen.send_signal(signal.SIGINT)  # Ctrl-C: it stops its children and lets the lock go
        assert first.popen.wait(timeout=40) == 0, first.tail()
        assert not (home / STATE_FILE).exists()  # no later command looks for a server that is gone
        with open(home / LOCK_FILE, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held
    finally:
        stop(first)
