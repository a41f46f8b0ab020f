"""Retrain throughput beyond one machine, on this one: runs per minute with one process worker vs
two, on a Prefect server backed by a real PostgreSQL.

The stack is the e2e test's (``tests/e2e/worker_stack.py``): a throwaway PostgreSQL cluster
(``tests/postgres.py``), ``refit up --database ... --pool ... --no-webhook`` (the server on it, the
four deployments on a process pool), then ``prefect worker start --pool ... --limit 1`` processes
(one flow run at a time each: a worker stands for one machine's slot). Each phase submits
``retrains`` manual runs round-robin over the three retrain deployments (each has a concurrency
limit of one, so at most three could run at once) and times from the first submission to the
last completion. The data is tiny and the model family the cheapest: what is measured is the
orchestration path (polling, a fresh process per run, imports, the retrain's fixed costs), not
training speed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

RETRAIN_DEPLOYMENTS = ("retrain/retrain-manual", "retrain/retrain-on-drift", "retrain/retrain-weekly")
POOL = "refit-bench-pool"


def _phase(stack: Any, workers: int, retrains: int) -> dict[str, Any]:
    """Start ``workers`` workers, run ``retrains`` retrains through them, stop them; the figures."""
    names = tuple(f"bench-worker-{workers}-{i}" for i in range(workers))
    stack.start_workers(names, limit=1)
    try:
        with stack.client() as client:
            ids = {name: client.read_deployment_by_name(name).id for name in RETRAIN_DEPLOYMENTS}
            started = time.perf_counter()
            run_ids = [
                client.create_flow_run_from_deployment(
                    ids[RETRAIN_DEPLOYMENTS[i % len(RETRAIN_DEPLOYMENTS)]],
                    parameters={"params": {"reason": f"bench {workers} workers #{i} {uuid.uuid4().hex[:6]}"}},
                ).id
                for i in range(retrains)
            ]
            finished: dict[Any, Any] = {}
            deadline = time.monotonic() + 60 * retrains + 300
            while len(finished) < len(run_ids):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(run_ids) - len(finished)} runs unfinished with {workers} workers")
                for run_id in run_ids:
                    if run_id not in finished:
                        run = client.read_flow_run(run_id)
                        if run.state_type is not None and run.state_type.value in ("COMPLETED", "FAILED", "CRASHED"):
                            finished[run_id] = run
                time.sleep(1)
            wall = time.perf_counter() - started
    finally:
        stack.stop_workers()
    states = [r.state_type.value for r in finished.values()]
    failed = [s for s in states if s != "COMPLETED"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {retrains} retrains did not complete with {workers} workers: {failed}")
    run_s = sorted(r.total_run_time.total_seconds() for r in finished.values())
    return {
        "workers": workers,
        "retrains": retrains,
        "wall_s": round(wall, 1),
        "runs_per_min": round(retrains / wall * 60, 2),
        "run_s_median": round(run_s[len(run_s) // 2], 1),
        "run_s": [round(s, 1) for s in run_s],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def run(retrains: int = 6, rows: int = 2000) -> dict[str, Any]:
    from tests.e2e.worker_stack import make_project, stack_env, worker_stack
    from tests.postgres import start_postgres

    root = Path(tempfile.mkdtemp(prefix="refit-bench-workers-"))
    cluster = start_postgres()
    try:
        config = make_project(root, rows=rows)
        far_away = "0 0 1 1 *"  # no scheduled run in the way
        env = stack_env(root / "prefect-home", root / "store", REFIT_RETRAIN_CRON=far_away, REFIT_DRIFT_CRON=far_away)
        started = time.perf_counter()
        with worker_stack(root, cluster.create_database("prefect_bench"), config, env, POOL, webhook=False) as stack:
            startup = time.perf_counter() - started
            one = _phase(stack, 1, retrains)
            two = _phase(stack, 2, retrains)
        return {
            "rows": rows,
            "retrains_per_phase": retrains,
            "one_worker": one,
            "two_workers": two,
            "ratio": round(two["runs_per_min"] / one["runs_per_min"], 3),
            "stack_startup_s_excluded": round(startup, 1),
            "database": "PostgreSQL (throwaway cluster, fsync off)",
            "note": "each worker --limit 1; three retrain deployments with a concurrency limit of one each",
        }
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
