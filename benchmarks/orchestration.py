"""What Prefect costs: the retrain flow against the same ``refit.pipeline`` steps called from a
plain Python script, on the same data, in the same process.

The flow runs against a local ephemeral API (``prefect_test_harness``: a fresh SQLite database
and an API server in a subprocess), started before anything is timed: server start-up is
reported apart and not counted. Every run, plain or flow, starts from its own copy of the same
base data in a fresh store (no champion), so each does exactly the same work: validate, split,
train, smoke test, gate, register, promote. One untimed run of each on 20,000 rows comes
first (first-call costs are not per-run costs). Then runs alternate plain, flow, flow, plain, ... so a
drift in machine load hits both sides alike, and the figure is the median over the pairs of
(flow run / the plain run beside it). Every module either side imports lazily is imported
first, so neither pays an import the other does not.

Two noise-free views sit beside it: the time inside each flow run not spent in the refit steps
(Prefect's own work on the calling thread), and the API server's CPU seconds per run.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

WARM_UP_ROWS = 20_000


def plain_retrain(store_uri: str, config_path: str) -> dict[str, Any]:
    """The flow's steps without Prefect: the plain runner (``refit.recipe.run_retrain``)."""
    from refit import recipe
    from refit.config_loader import load_config
    from refit.io import open_store

    run = recipe.run_retrain(
        open_store(store_uri), load_config(config_path), recipe.RetrainOptions(tags={"trigger": "manual"})
    )
    if run.evaluation is None:
        return {"outcome": "SMOKE_FAILED"}
    return {
        "outcome": run.evaluation.outcome,
        "version": run.need("version").version,
        "candidate": run.need("candidate").family,
    }


STEPS = (
    "load_and_validate",
    "split_data",
    "train_candidates",
    "smoke_test_candidate",
    "evaluate_candidate",
    "register_candidate",
    "promote_version",
)


def _rounded(spent: dict[str, float]) -> dict[str, float]:
    return {name: round(seconds, 2) for name, seconds in spent.items()}


def run(
    rows: int = 1_000_000, config_path: str = "benchmarks/bench.yaml", reps: int = 2, cold_reps: int = 2
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="refit-bench-orch-"))
    os.environ["PREFECT_HOME"] = str(root / "prefect-home")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    try:
        return _run(root, rows, config_path, reps, cold_reps)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(root: Path, rows: int, config_path: str, reps: int, cold_reps: int) -> dict[str, Any]:
    from benchmarks.common import import_step_modules, timed_calls
    from benchmarks.retrain import generate

    seed_store = root / "seed"
    generated = generate(rows, str(seed_store), config_path)
    from prefect.testing.utilities import prefect_test_harness

    import_step_modules()
    from flows.retrain import RetrainParameters, retrain

    def fresh_store(name: str) -> str:
        path = root / name
        shutil.copytree(seed_store, path)
        return str(path)

    #: The refit steps, timed inside either kind of run (the flow's tasks call them the same way).
    step_targets = {name: (("refit.pipeline", name),) for name in STEPS}

    def timed_plain(i: int) -> dict[str, Any]:
        store = fresh_store(f"plain-{i}")
        before = _cpu()
        start = time.perf_counter()
        with timed_calls(step_targets) as steps:
            result = plain_retrain(store, config_path)
        wall = round(time.perf_counter() - start, 2)
        return {"s": wall, "steps_s": _rounded(steps), "cpu_s": _cpu_since(before), **result}

    def timed_flow(i: int) -> dict[str, Any]:
        os.environ["REFIT_STORE"] = fresh_store(f"flow-{i}")
        params = RetrainParameters(config_path=config_path, trigger="manual")
        before = _cpu()
        start = time.perf_counter()
        with timed_calls(step_targets) as steps:
            result = retrain(params)
        wall = round(time.perf_counter() - start, 2)
        return {
            "s": wall,
            "steps_s": _rounded(steps),
            "cpu_s": _cpu_since(before),
            "outcome": result.outcome,
            "version": result.version,
            "candidate": result.candidate.get("family"),
        }

    warm_store = root / "warm-up"
    generate(WARM_UP_ROWS, str(warm_store), config_path)

    start = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        startup_s = time.perf_counter() - start
        # One untimed run of each on a small data set: first-call costs (torch and scikit-learn
        # kernels, Prefect's client and its flow and task records in the API) are paid here.
        start = time.perf_counter()
        plain_retrain(str(warm_store), config_path)
        shutil.rmtree(warm_store / "runs", ignore_errors=True)
        os.environ["REFIT_STORE"] = str(root / "warm-up-flow")
        shutil.copytree(warm_store / "datasets", root / "warm-up-flow" / "datasets")
        retrain(RetrainParameters(config_path=config_path, trigger="manual"))
        warm_up_s = time.perf_counter() - start
        plain: list[dict[str, Any]] = []
        flow: list[dict[str, Any]] = []
        for i in range(reps):  # ABBA: plain, flow, flow, plain, ...
            if i % 2 == 0:
                plain.append(timed_plain(i))
                flow.append(timed_flow(i))
            else:
                flow.append(timed_flow(i))
                plain.append(timed_plain(i))
        # What a deployment run pays: a fresh process per run (imports, client, exit included).
        from prefect.settings import PREFECT_API_URL

        env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_LOGGING_LEVEL": "WARNING"}
        cold: list[dict[str, float]] = []
        for i in range(cold_reps):
            order = ("plain", "flow") if i % 2 == 0 else ("flow", "plain")
            cold.append({mode: _cold_run(mode, fresh_store(f"cold-{mode}-{i}"), config_path, env) for mode in order})
    return _figures(rows, reps, generated, startup_s, warm_up_s, plain, flow, cold)


def _figures(
    rows: int,
    reps: int,
    generated: dict[str, Any],
    startup_s: float,
    warm_up_s: float,
    plain: list[dict[str, Any]],
    flow: list[dict[str, Any]],
    cold: list[dict[str, float]],
) -> dict[str, Any]:
    """The runs, and the overhead figures drawn from them."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    plain_s = sum(r["s"] for r in plain)
    flow_s = sum(r["s"] for r in flow)
    return {
        "rows": rows,
        "reps": reps,
        "data": generated,
        "server_startup_s": round(startup_s, 1),
        "warm_up_s": round(warm_up_s, 1),
        "warm_up_rows": WARM_UP_ROWS,
        "server": "prefect_test_harness (ephemeral SQLite API in a subprocess), started before timing",
        "heartbeat_frequency_s": PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value(),
        "plain_runs": plain,
        "flow_runs": flow,
        "plain_s": round(plain_s / reps, 2),
        "flow_s": round(flow_s / reps, 2),
        "overhead_s": round((flow_s - plain_s) / reps, 2),
        "ratio_of_means": flow_s / plain_s,
        # Each flow run against the plain run next to it (ABBA order): the machine's drift over
        # the minutes of the benchmark cancels within a pair; the median of the pairs is the figure.
        "pair_ratios": [round(f["s"] / p["s"], 4) for p, f in zip(plain, flow, strict=True)],
        "ratio": statistics.median(f["s"] / p["s"] for p, f in zip(plain, flow, strict=True)),
        "api_server_cpu_s": {
            "plain": round(statistics.mean(r["cpu_s"]["api_server"] for r in plain), 2),
            "flow": round(statistics.mean(r["cpu_s"]["api_server"] for r in flow), 2),
        },
        # Noise-free view: inside each flow run, the time not spent in the refit steps themselves.
        "flow_outside_steps_s": round(sum(r["s"] - sum(r["steps_s"].values()) for r in flow) / reps, 2),
        "flow_outside_steps_share": sum(r["s"] - sum(r["steps_s"].values()) for r in flow) / flow_s,
        "cold_process": {
            "runs": cold,
            "pair_ratios": [round(c["flow"] / c["plain"], 4) for c in cold],
            "ratio": statistics.median(c["flow"] / c["plain"] for c in cold) if cold else None,
        },
    }


def _cpu() -> dict[str, float]:
    """CPU seconds so far: this process, and the API server (the harness's subprocess)."""
    import psutil

    me = psutil.Process()
    servers = [c for c in me.children(recursive=True) if "uvicorn" in " ".join(c.cmdline())]
    own = me.cpu_times()
    return {
        "process": own.user + own.system,
        "api_server": sum(c.cpu_times().user + c.cpu_times().system for c in servers),
    }


def _cpu_since(before: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before[k], 2) for k, v in _cpu().items()}


def _cold_run(mode: str, store: str, config_path: str, env: dict[str, str]) -> float:
    """Seconds of ``python -m benchmarks.orchestration MODE STORE CONFIG``, start to exit."""
    import subprocess
    import sys

    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "benchmarks.orchestration", mode, store, config_path],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
        capture_output=True,
    )
    return round(time.perf_counter() - start, 2)


def _one_run(mode: str, store: str, config_path: str) -> None:
    """One retrain in this process: ``plain`` (the steps) or ``flow`` (against PREFECT_API_URL)."""
    if mode == "plain":
        plain_retrain(store, config_path)
        return
    os.environ["REFIT_STORE"] = store
    from flows.retrain import RetrainParameters, retrain

    retrain(RetrainParameters(config_path=config_path, trigger="manual"))


if __name__ == "__main__":
    import sys

    _one_run(*sys.argv[1:4])
