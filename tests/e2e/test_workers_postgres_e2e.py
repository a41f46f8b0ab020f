"""Beyond one machine, on this one: a Prefect server on a real PostgreSQL (``refit up --database``),
the four deployments on a process work pool (``refit up --pool``, which runs ``refit deploy``),
two ``prefect worker start`` processes and the webhook. A signed alert delivered twenty times at
once, a manual run and a scheduled tick, all at the same time, each make exactly one retrain, run
by exactly one of the workers, and the registry ends with one version per retrain.

Servers are started once for the module (about 2 minutes on a loaded 2-core machine); the three
retrains run together on the two workers, so the module's cost is about one retrain's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg2
import pytest

from deployments.webhook import idempotency_key
from refit.registry import Registry
from refit.webhook import DriftAlert, sign
from tests.e2e.conftest import TERMINAL, WEBHOOK_SECRET, wait_until
from tests.e2e.worker_stack import WorkerStack, make_project, stack_env, worker_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = "churn"
POOL = "refit-e2e-pool"
WORKERS = ("refit-worker-a", "refit-worker-b")
FAR_AWAY = "0 0 1 1 *"  # the declared crons must not fire during the test: the tick is made below


@pytest.fixture(scope="module")
def stack(postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerStack]:
    root = tmp_path_factory.mktemp("workers")
    config = make_project(root, rows=2000)
    env = stack_env(
        root / "prefect-home",
        root / "store",
        REFIT_WEBHOOK_SECRET=WEBHOOK_SECRET,
        REFIT_RETRAIN_CRON=FAR_AWAY,
        REFIT_DRIFT_CRON=FAR_AWAY,
    )
    database = postgres.create_database("prefect_workers_e2e")  # postgresql://: refit up gives it asyncpg
    with worker_stack(root, database, config, env, POOL) as running:
        running.start_workers(WORKERS)
        yield running


def _run(stack: WorkerStack, run_id: Any, timeout_s: float = 300) -> Any:
    """The flow run once it finished; fails, with the processes' logs, unless it COMPLETED (a run
    whose promotion another retrain beat is judged again against that champion and completes)."""

    def ended() -> Any:
        with stack.client() as client:
            run = client.read_flow_run(uuid.UUID(str(run_id)))
        return run if run.state_type is not None and run.state_type.value in TERMINAL else None

    run = wait_until(ended, timeout_s, f"flow run {run_id} to finish", every_s=1)
    assert run.state_type.value == "COMPLETED", f"{run.state}\n{stack.logs()}"
    return run


def _ran_on_one_worker(stack: WorkerStack, run: Any) -> str:
    """The one worker that ran ``run``. Both workers may try to submit a run (the server lets one
    move it to PENDING and aborts the other): the run's log and the workers' output must show one
    submission that went through, by one of our workers."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    assert run.work_pool_name == POOL
    with stack.client() as client:
        messages = [m.message for m in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))]
    tried = [m.split("'")[1] for m in messages if m.startswith("Worker '") and "submitting flow run" in m]
    aborted = [m for m in messages if m.startswith(f"Aborted submission of flow run '{run.id}'")]
    assert set(tried) <= set(WORKERS) and len(tried) - len(aborted) == 1, messages
    assert sum(m == f"Flow run '{run.name}' submitted to infrastructure" for m in messages) == 1, messages
    [worker] = [n for n, out in stack.worker_logs().items() if f"'{run.name}' submitted to infrastructure" in out]
    return worker


def _runs_of(stack: WorkerStack, deployment: str) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with stack.client() as client:
        found = client.read_deployment_by_name(deployment)
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])))


def test_both_workers_are_on_the_pool_and_the_server_runs_on_postgresql(stack: WorkerStack, postgres: Any) -> None:
    with stack.client() as client:
        pool = client.read_work_pool(POOL)
        workers = {w.name for w in client.read_workers_for_work_pool(POOL)}
        deployments = {d.name: d.work_pool_name for d in client.read_deployments()}
    assert pool.type == "process" and set(WORKERS) <= workers
    assert deployments == dict.fromkeys(
        ("retrain-weekly", "retrain-manual", "retrain-on-drift", "drift-check-hourly"), POOL
    )
    assert "PostgreSQL at 127.0.0.1:" in stack.up.tail(20_000)  # the banner; SQLite would name a folder
    with psycopg2.connect(postgres.url("prefect_workers_e2e")) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from work_pool where name = %s", (POOL,))
        assert cur.fetchone() == (1,)  # Prefect's own tables, in that database


def test_an_alert_a_manual_run_and_a_scheduled_tick_each_make_one_retrain_on_one_worker(stack: WorkerStack) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    from refit.io import open_store

    assert stack.webhook_url is not None
    # the tick: the next whole minute at least 30 s away, once a year (one run in this test)
    tick = (datetime.now(UTC) + timedelta(seconds=90)).replace(second=0, microsecond=0)
    with stack.client() as client:
        weekly = client.read_deployment_by_name("retrain/retrain-weekly")
        cron = CronSchedule(cron=f"{tick.minute} {tick.hour} {tick.day} {tick.month} *", timezone="UTC")
        client.create_deployment_schedules(weekly.id, [(cron, True)])

    # a signed alert, delivered twenty times at once
    alert_id = f"pg-alert-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"alert_id": alert_id, "model": MODEL, "reason": "e2e", "drift_share": 0.4}).encode()

    def deliver(_: int) -> httpx.Response:
        headers = {"Content-Type": "application/json", "X-Refit-Signature": sign(body, WEBHOOK_SECRET)}
        return httpx.post(f"{stack.webhook_url}/alerts/drift", content=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(max_workers=20) as threads:
        responses = list(threads.map(deliver, range(20)))
    assert {r.status_code for r in responses} <= {200, 202}, [r.text for r in responses]
    # 202 accepted names the run; 202 queued (Prefect slower than the webhook's deadline) names none yet
    assert any(r.status_code == 202 for r in responses), [r.text for r in responses]
    named = {r.json().get("flow_run_id") for r in responses if r.status_code == 202} - {None}
    key = idempotency_key(DriftAlert(alert_id=alert_id, model=MODEL))
    [alert_run] = wait_until(
        lambda: [r for r in _runs_of(stack, "retrain/retrain-on-drift") if r.idempotency_key == key],
        60,
        "the alert's run (from the webhook's outbox)",
    )
    assert named <= {str(alert_run.id)}, named

    # a manual run (what the UI's Run button and `prefect deployment run` do)
    marker = f"pg-manual-{uuid.uuid4().hex[:8]}"
    with stack.client() as client:
        manual = client.read_deployment_by_name("retrain/retrain-manual")
        manual_run = client.create_flow_run_from_deployment(manual.id, parameters={"params": {"reason": marker}})

    def tick_runs() -> list[Any]:
        return [r for r in _runs_of(stack, "retrain/retrain-weekly") if r.expected_start_time == tick]

    [scheduled] = wait_until(tick_runs, 120, "the scheduler to create the tick's run", every_s=2)

    alert = _run(stack, alert_run.id)
    manual_done = _run(stack, manual_run.id)
    tick_done = _run(stack, scheduled.id)
    assert len(tick_runs()) == 1
    ran_on = {_ran_on_one_worker(stack, run) for run in (alert, manual_done, tick_done)}
    assert ran_on <= set(WORKERS)

    # one run per trigger: nothing else was created on the three deployments (later ticks aside)
    assert [r.id for r in _runs_of(stack, "retrain/retrain-on-drift")] == [alert.id]
    assert [r.id for r in _runs_of(stack, "retrain/retrain-manual")] == [manual_done.id]
    assert [r.id for r in _runs_of(stack, "retrain/retrain-weekly") if r.expected_start_time <= tick] == [tick_done.id]

    # the registry: one version per retrain (a run whose promotion another run beat registered its
    # own too), numbered without a gap or a repeat; every champion move started where the last one ended
    registry = Registry(open_store(stack.env["REFIT_STORE"]))
    versions = registry.list_versions(MODEL)
    assert sorted(v.version for v in versions) == [1, 2, 3], [(v.version, v.description) for v in versions]
    by_trigger = {v.tags["trigger"]: v for v in versions}
    assert alert_id in by_trigger["drift"].description
    assert by_trigger["manual"].description == marker
    assert by_trigger["schedule"].description == "weekly retrain"
    moves = [(e.from_version, e.to_version) for e in registry.history(MODEL, "champion")]
    assert moves and moves[0][0] is None and all(a[1] == b[0] for a, b in zip(moves, moves[1:], strict=False))
    assert registry.champion(MODEL).version == moves[-1][1]
    # the champion only ever moved to versions of these runs, each by a swap from the champion its
    # run was last judged against (a move refused by the swap was judged again, never forced through)
    assert {to for _, to in moves} <= {v.version for v in versions}, moves
    assert not any(e.forced for e in registry.history(MODEL, "champion")), moves
