"""What MLflow tracking costs a retrain: the same run on the same data with tracking off and on.

A real ``mlflow server`` (SQLite backend store, artifacts in a folder) runs on loopback,
started before anything is timed (its start-up is reported apart). Every run starts from its
own copy of the same base data in a fresh store, under a model name of its own (so every
tracked run creates its experiment, its run, its trials, its artifacts and its registered
model: the same work each time, none of it skipped as already mirrored). One untimed run of
each comes first (first-call costs: importing MLflow, its client). Then runs alternate off, on,
on, off, ... and the figure is the median over the pairs of (tracked run / the untracked run
beside it). The ``track-run`` step's own time, inside each tracked run, is the noise-free view.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import stop_group

WARM_UP_ROWS = 5_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_mlflow(folder: Path, timeout_s: float = 600) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination", str(folder / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"},
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5):
                return proc, url
        except OSError:
            time.sleep(0.5)
    stop_group(proc, signal.SIGTERM)
    raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")


def run(rows: int = 100_000, config_path: str = "benchmarks/bench.yaml", reps: int = 2) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="refit-bench-tracking-"))
    try:
        return _run(root, rows, config_path, reps)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(root: Path, rows: int, config_path: str, reps: int) -> dict[str, Any]:
    from benchmarks.common import import_step_modules
    from benchmarks.retrain import generate
    from refit import recipe
    from refit.config_loader import load_config
    from refit.io import open_store

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    base = load_config(config_path)
    seed_store, warm_store = root / "seed", root / "warm-up"
    generated = generate(rows, str(seed_store), config_path)
    generate(WARM_UP_ROWS, str(warm_store), config_path)
    import_step_modules()
    import refit.tracking  # noqa: F401

    (root / "mlflow").mkdir()
    start = time.perf_counter()
    server, url = _start_mlflow(root / "mlflow")
    startup_s = time.perf_counter() - start

    def retrain(name: str, source: Path, tracked: bool) -> dict[str, Any]:
        path = root / name
        shutil.copytree(source, path)
        config = base.model_copy(
            update={
                "dataset": base.dataset.model_copy(update={"name": name}),
                "tracking": base.tracking.model_copy(update={"mlflow_uri": url if tracked else None}),
            }
        )
        steps: dict[str, float] = {}

        @contextmanager
        def around(step: str) -> Iterator[None]:
            t0 = time.perf_counter()
            yield
            steps[step] = round(time.perf_counter() - t0, 3)

        t0 = time.perf_counter()
        done = recipe.run_retrain(open_store(str(path)), config, around=around)
        wall = round(time.perf_counter() - t0, 2)
        if tracked and not done.tracking.ok:
            raise RuntimeError(f"tracking failed: {done.tracking.error}")
        shutil.rmtree(path, ignore_errors=True)
        return {
            "s": wall,
            "track_run_s": steps.get("track-run", 0.0),
            "steps": steps,
            "trials": len(done.candidate.trials),
        }

    try:
        start = time.perf_counter()
        retrain("warm-off", warm_store, False)
        retrain("warm-on", warm_store, True)
        warm_up_s = time.perf_counter() - start
        off: list[dict[str, Any]] = []
        on: list[dict[str, Any]] = []
        for i in range(reps):  # ABBA: off, on, on, off, ...
            for tracked in (False, True) if i % 2 == 0 else (True, False):
                (on if tracked else off).append(retrain(f"churn-{'on' if tracked else 'off'}-{i}", seed_store, tracked))
    finally:
        stop_group(server, signal.SIGTERM)

    return figures(rows, reps, generated, startup_s, warm_up_s, off, on)


def figures(
    rows: int,
    reps: int,
    generated: dict[str, Any],
    startup_s: float,
    warm_up_s: float,
    off: list[dict[str, Any]],
    on: list[dict[str, Any]],
) -> dict[str, Any]:
    """The runs, and the overhead figures drawn from them.

    ``ratio`` is per tracked run: its time over its time without the ``track-run`` step, the
    only step that touches MLflow (with tracking off it does not run, and nothing else differs):
    the same run, with and without MLflow, free of the run-to-run noise of a shared machine.
    ``pair_ratio`` compares whole runs (tracked / untracked beside it), noise included.
    """
    off_s = statistics.mean(r["s"] for r in off)
    on_s = statistics.mean(r["s"] for r in on)
    track_s = statistics.mean(r["track_run_s"] for r in on)
    same_run = [r["s"] / (r["s"] - r["track_run_s"]) for r in on]
    pairs = [b["s"] / a["s"] for a, b in zip(off, on, strict=True)]
    return {
        "rows": rows,
        "reps": reps,
        "data": generated,
        "server": "mlflow server, SQLite backend store, artifacts in a folder, on loopback; started before timing",
        "server_startup_s": round(startup_s, 1),
        "warm_up_s": round(warm_up_s, 1),
        "warm_up_rows": WARM_UP_ROWS,
        "untracked_runs": off,
        "tracked_runs": on,
        "untracked_s": round(off_s, 2),
        "tracked_s": round(on_s, 2),
        "track_run_s": round(track_s, 2),
        "track_run_share": round(track_s / on_s, 4),
        "same_run_ratios": [round(x, 4) for x in same_run],
        "ratio": statistics.median(same_run),
        "pair_ratios": [round(x, 4) for x in pairs],
        "pair_ratio": statistics.median(pairs),
    }
