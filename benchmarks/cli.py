"""How long a flow-backed refit command takes with a running ``refit up`` and without one.

``refit retrain --dry-run`` and ``refit drift`` (``--window-rows``, ``--exit-zero``) run as a user
types them, each in a fresh process, on a small store made here: the linear family on a few
thousand rows (``tests/e2e/worker_stack.make_project``), a champion registered by the plain
pipeline, and captured traffic scored by it (``refit.demo.write_production_data``). Nothing sets
``PREFECT_API_URL`` or ``PREFECT_HOME``: each command chooses its Prefect as a user's would
(``refit_cli.prefect_api``), and the line it prints is checked.

- **without a server**: Prefect's local server, started by each command on the store's Prefect home;
- **with a server**: ``refit up --no-webhook`` on the same store, found through its state file.

One untimed run of each command comes first (the home's database is created, the champion's
drift nulls are drawn and cached). Per command: wall time (process start to exit), start-up (process
start to its flow run's start, read from the API) and the flow run's own time. The runs made
without a server are read back through ``refit up``'s API too: they are in the UI it opens.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import stop_group

REFIT = str(Path(sys.executable).parent / "refit")
FAR_AWAY = "0 0 1 1 *"  # no scheduled run of refit up's deployments in the way


def _make_store(root: Path, rows: int, captures: int) -> Path:
    """Base data, a champion (version 1) and ``captures`` captured requests scored by it; the config."""
    from benchmarks.orchestration import plain_retrain
    from refit.config_loader import load_config
    from refit.demo import write_production_data
    from refit.io import open_store
    from refit.pipeline import load_version, scores
    from refit.registry import Registry
    from tests.e2e.worker_stack import make_project

    config = make_project(root, rows=rows)
    store = open_store(str(root / "store"))
    first = plain_retrain(store.uri, str(config))
    if first["outcome"] != "PROMOTE":
        raise RuntimeError(f"the bench's champion was not promoted: {first}")
    cfg = load_config(config)
    champion = Registry(store).champion(cfg.dataset.name)
    model = load_version(store, champion)
    batches = 6
    write_production_data(
        store,
        cfg,
        batches=batches,
        rows_per_batch=max(1, captures // batches),
        seed=11,
        predict=lambda df: scores(model, df, cfg.dataset.task),
        model_version=str(champion.version),
    )
    return config


def _commands(config: Path, captures: int) -> dict[str, list[str]]:
    return {
        "retrain_dry_run": ["retrain", "--dry-run", "--config", str(config)],
        "drift": ["drift", "--window-rows", str(captures), "--exit-zero", "--config", str(config)],
    }


def _timed(argv: list[str], env: dict[str, str], cwd: Path, expect: str) -> dict[str, Any]:
    """One command in a fresh process: its wall time, and when it started (to find its flow run)."""
    reason = ["--reason", f"bench cli {uuid.uuid4().hex[:8]}"] if argv[0] == "retrain" else []
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    done = subprocess.run([REFIT, *argv, *reason], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if done.returncode not in (0, 3, 4):  # a gate decision is an answer; anything else is a failure
        raise RuntimeError(f"refit {' '.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    said = next((line for line in done.stderr.splitlines() if line.startswith("Prefect: ")), "")
    if expect not in said:
        raise RuntimeError(f"refit {argv[0]} used another Prefect than expected ({expect!r}): {said!r}")
    return {"wall_s": wall, "started_at": started_at, "ended_at": datetime.now(UTC), "prefect": said}


def _phase(name: str, commands: dict[str, list[str]], env: dict[str, str], cwd: Path, reps: int) -> dict[str, Any]:
    expect = "a local server on" if name == "without_server" else "refit up's server at"
    timings: dict[str, list[dict[str, Any]]] = {c: [] for c in commands}
    for _ in range(reps):  # alternated, so a change in machine load hits both commands alike
        for command, argv in commands.items():
            timings[command].append(_timed(argv, env, cwd, expect))
    return {"commands": timings, "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def _start_up(root: Path, config: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, float]:
    from tests.conftest import free_port

    port = free_port()
    log = open(root / "refit-up.log", "wb")  # noqa: SIM115 - closed with the process
    argv = [REFIT, "up", "--no-webhook", "--ui-port", str(port), "--config", str(config)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while "refit is up" not in (root / "refit-up.log").read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"refit up did not start:\n{(root / 'refit-up.log').read_text()[-3000:]}")
        time.sleep(0.5)
    return proc, f"http://127.0.0.1:{port}/api", time.perf_counter() - t0


def _attach_runs(phases: dict[str, dict[str, Any]], api_url: str) -> int:
    """Each timed command's flow run (the one that started while it ran), read through ``api_url``;
    start-up and flow seconds added to its timing. Returns how many runs of the phase without a
    server were found there (they are in the database ``refit up`` serves)."""
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api_url) as client:
        runs = client.read_flow_runs(limit=200)
        flows = {f.id: f.name for f in client.read_flows(limit=50)}
    found_without_server = 0
    for phase, result in phases.items():
        for command, timings in result["commands"].items():
            flow = "retrain" if command.startswith("retrain") else "drift-check"
            for t in timings:
                mine = [
                    r
                    for r in runs
                    if flows.get(r.flow_id) == flow
                    and r.start_time is not None
                    and t["started_at"] <= r.start_time <= t["ended_at"]
                ]
                if len(mine) != 1:
                    raise RuntimeError(f"{phase} {command}: {len(mine)} flow runs started while it ran, not 1")
                run = mine[0]
                t["startup_s"] = (run.start_time - t["started_at"]).total_seconds()
                t["flow_run_s"] = run.total_run_time.total_seconds()
                found_without_server += phase == "without_server"
    return found_without_server


def _summary(timings: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return round(statistics.median(t[key] for t in timings), 2)

    return {
        "wall_s": med("wall_s"),
        "startup_s": med("startup_s"),
        "flow_run_s": med("flow_run_s"),
        "runs_wall_s": [round(t["wall_s"], 2) for t in timings],
        "runs_startup_s": [round(t["startup_s"], 2) for t in timings],
    }


def run(rows: int = 3000, captures: int = 1200, reps: int = 3) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="refit-bench-cli-"))
    try:
        config = _make_store(root, rows, captures)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REFIT_"))}
        env |= {
            "REFIT_STORE": str(root / "store"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "REFIT_RETRAIN_CRON": FAR_AWAY,
            "REFIT_DRIFT_CRON": FAR_AWAY,
        }
        commands = _commands(config, captures)
        load_before = [round(x, 2) for x in os.getloadavg()]
        warm_up = {c: _timed(argv, env, root, "a local server on")["wall_s"] for c, argv in commands.items()}
        phases = {"without_server": _phase("without_server", commands, env, root, reps)}
        up, api_url, up_start_s = _start_up(root, config, env)
        try:
            phases["with_server"] = _phase("with_server", commands, env, root, reps)
            local_runs_in_ui = _attach_runs(phases, api_url)
        finally:
            stop_group(up, timeout_s=60)
        out: dict[str, Any] = {
            "rows": rows,
            "captures": captures,
            "reps": reps,
            "warm_up_s_excluded": {c: round(s, 1) for c, s in warm_up.items()},
            "refit_up_start_s_excluded": round(up_start_s, 1),
            "local_runs_in_refit_up_ui": local_runs_in_ui,
            "load_average_before": load_before,
            "prefect_lines": {p: r["commands"]["drift"][0]["prefect"] for p, r in phases.items()},
        }
        for phase, result in phases.items():
            out[phase] = {c: _summary(t) for c, t in result["commands"].items()}
            out[phase]["load_average_after"] = result["load_average_after"]
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)
