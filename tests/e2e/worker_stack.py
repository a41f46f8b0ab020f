"""refit beyond one machine, on this one: ``refit up --database postgresql://... --pool NAME`` (a
Prefect server on PostgreSQL, the four deployments on a process work pool, the webhook) and
``prefect worker start --pool NAME`` processes. The e2e test of it and ``benchmarks/workers.py``
start it the same way, from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port
from tests.e2e.conftest import BIN, Proc, start, stop, wait_until

#: Prefect settings that make a test stack answer in seconds, not tens of seconds: workers poll
#: every 2 s (default 10), and the scheduler looks at every deployment every 5 s (default 60).
QUICK_PREFECT = {
    "PREFECT_WORKER_QUERY_SECONDS": "2",
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
    "PREFECT_LOGGING_LEVEL": "INFO",
}


# The cheapest retrain that still trains, gates and registers: the linear family, few rows, a
# short bootstrap, no cooldown (the e2e test sends an alert; the governor's rules have their own tests).
FAST_RETRAIN: dict[str, Any] = {
    "training": {
        "seed": 3,
        "smoke_sample_rows": 200,
        "candidates": [{"family": "linear", "params": {"C": [1.0]}, "budget": 1}],
    },
    "gate": {"bootstrap_resamples": 100},
    "drift": {"cooldown_hours": 0, "daily_cap": 100},
}


def make_project(root: Path, rows: int = 2000) -> Path:
    """A config (:data:`FAST_RETRAIN`) and ``rows`` of demo base data in ``root/store``; the config's path."""
    from refit.config_loader import load_config
    from refit.demo import write_base_data
    from refit.io import open_store
    from tests.flows.helpers import write_config

    config = write_config(root, **FAST_RETRAIN)
    write_base_data(open_store(str(root / "store")), load_config(config), rows=rows, seed=0)
    return config


def stack_env(home: Path, store: Path, **extra: str) -> dict[str, str]:
    """This environment without its Prefect settings, with a Prefect home and a store of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REFIT_"))}
    return (
        env
        | QUICK_PREFECT
        | {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "REFIT_STORE": str(store),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            **extra,
        }
    )


@dataclass
class WorkerStack:
    api_url: str
    pool: str
    env: dict[str, str]  # what a client or a worker needs (PREFECT_API_URL included)
    up: Proc
    webhook_url: str | None
    root: Path
    workers: list[Proc] = field(default_factory=list)

    def client(self) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)

    def start_workers(self, names: tuple[str, ...], limit: int | None = None) -> list[Proc]:
        """``prefect worker start --pool`` per name (one flow run at a time each with ``limit=1``), started
        together; waits until every one is online on the pool."""
        started = []
        for name in names:
            argv = [str(BIN / "prefect"), "worker", "start", "--pool", self.pool, "--name", name]
            if limit is not None:
                argv += ["--limit", str(limit)]
            started.append(start(name, argv, self.env, self.root, self.root))
        self.workers += started

        def online() -> bool:
            for proc in started:
                assert proc.alive(), f"worker {proc.name} exited:\n{proc.tail()}"
            with self.client() as client:
                found = {w.name for w in client.read_workers_for_work_pool(self.pool) if w.status.value == "ONLINE"}
            return set(names) <= found

        wait_until(online, 120, f"workers {', '.join(names)} to be online on pool {self.pool}", every_s=1)
        return started

    def worker_logs(self) -> dict[str, str]:
        """Each worker's whole output (its flow runs' processes print there too)."""
        return {p.name: p.log.read_text(errors="replace") for p in self.workers}

    def stop_workers(self) -> None:
        for proc in reversed(self.workers):
            stop(proc)
        self.workers.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in [self.up, *self.workers])


@contextmanager
def worker_stack(
    root: Path, database_url: str, config: Path, env: dict[str, str], pool: str, webhook: bool = True
) -> Iterator[WorkerStack]:
    """``refit up --database DATABASE_URL --pool POOL --config CONFIG`` in ``root``; no worker yet."""
    ui_port, hook_port = free_port(), free_port()
    argv = [
        str(BIN / "refit"), "up", "--database", database_url, "--pool", pool, "--config", str(config),
        "--ui-port", str(ui_port), "--webhook-port", str(hook_port),
    ]  # fmt: skip
    if not webhook:
        argv.append("--no-webhook")
    up = start("refit-up", argv, env, root, root)
    api_url = f"http://127.0.0.1:{ui_port}/api"
    stack = WorkerStack(api_url, pool, env | {"PREFECT_API_URL": api_url}, up, None, root)
    try:

        def ready() -> bool:
            assert up.alive(), f"refit up exited:\n{up.tail()}"
            return "refit is up" in up.tail(20_000)

        wait_until(ready, 300, "refit up (Prefect server on PostgreSQL, deployments on the pool, webhook)", every_s=1)
        if webhook:
            stack.webhook_url = f"http://127.0.0.1:{hook_port}"
            assert httpx.get(f"{stack.webhook_url}/healthz", timeout=5).status_code == 200
        yield stack
    finally:
        stack.stop_workers()
        stop(up, grace_s=30)
