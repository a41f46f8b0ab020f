"""What every benchmark shares: timers, a peak-RSS sampler, the bench config, the machine, and
running one benchmark in a fresh subprocess (so its memory and imports are its own).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
BENCH_CONFIG = BENCH_DIR / "bench.yaml"
MB = 2**20


def import_step_modules() -> None:
    """Import what the retrain steps import lazily, so that no timed step is charged for an import."""
    import refit.dossier  # noqa: F401
    import refit.evaluation  # noqa: F401
    import refit.model  # noqa: F401
    import refit.registry  # noqa: F401
    import refit.smoke  # noqa: F401
    import refit.training.search  # noqa: F401


def peak_rss_mb() -> float:
    """This process's high-water RSS since it started (ru_maxrss)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


class RssSampler:
    """Samples this process's RSS every ``interval_s`` in a thread; ``stage()`` records the
    wall time and the highest RSS seen while a block ran.

    The sampler can miss a spike shorter than the interval; ``peak_rss_mb()`` (the kernel's
    high-water mark) bounds the whole process and is reported beside it.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self._proc = psutil.Process()
        self._peak = self._proc.memory_info().rss
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.stages: dict[str, dict[str, float]] = {}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = self._proc.memory_info().rss
            with self._lock:
                self._peak = max(self._peak, rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def rss_mb(self) -> float:
        return self._proc.memory_info().rss / MB

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, float]]:
        gc.collect()
        start_rss = self._proc.memory_info().rss
        with self._lock:
            self._peak = start_rss
        record: dict[str, float] = {}
        start = time.perf_counter()
        try:
            yield record
        finally:
            wall = time.perf_counter() - start
            rss = self._proc.memory_info().rss
            with self._lock:
                peak = max(self._peak, rss)
            record.update(s=round(wall, 3), rss_start_mb=round(start_rss / MB, 1), peak_rss_mb=round(peak / MB, 1))
            self.stages[name] = record


def frame_bytes(df: Any) -> dict[str, int]:
    """In-memory size of a frame: ``memory_usage(deep=True)`` counts a Python object once per
    row even when rows share it (pyarrow and the generator share each category's str), so
    ``shared`` counts each distinct object once: the memory the frame really holds."""
    import pandas as pd

    deep = int(df.memory_usage(deep=True, index=False).sum())
    shared = 0
    for col in df.columns:
        s = df[col]
        if s.dtype == object:
            values = s.to_numpy()
            shared += values.nbytes + sum(sys.getsizeof(v) for v in {id(v): v for v in pd.unique(values)}.values())
        else:
            shared += int(s.memory_usage(deep=True, index=False))
    return {"deep": deep, "shared": shared}


def machine() -> dict[str, Any]:
    """CPU, cores, memory, GPU (through torch), and the versions that matter."""
    import numpy
    import pandas
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {
            "name": props.name,
            "memory_gb": round(props.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
        }
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
    }
    for name in ("pandera", "prefect", "evidently", "sklearn", "pyarrow"):
        with contextlib.suppress(Exception):  # a missing optional package is just not listed
            versions[name] = __import__(name).__version__
    return {
        "cpu": cpu,
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu,
        "torch_threads": torch.get_num_threads(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def run_in_subprocess(
    target: str, kwargs: dict[str, Any], *, env: dict[str, str] | None = None, timeout_s: float | None = None
) -> dict[str, Any]:
    """Run ``module:function(**kwargs)`` in a fresh interpreter; return what it returned (JSON).

    A fresh process per benchmark: its peak RSS and its imports are its own, and one
    benchmark's leftovers (freed memory glibc keeps, warmed caches) do not flatter the next.
    """
    out = Path(kwargs.pop("_out", None) or _tmp_json())
    cmd = [sys.executable, "-m", "benchmarks.worker", target, json.dumps(kwargs), str(out)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout_s, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"benchmark {target} failed (exit {proc.returncode}) after {wall:.0f}s")
    result = json.loads(out.read_text())
    out.unlink(missing_ok=True)
    result.setdefault("process_wall_s", round(wall, 2))
    return result


def _tmp_json() -> str:
    import tempfile

    fd, path = tempfile.mkstemp(prefix="refit-bench-", suffix=".json")
    os.close(fd)
    os.unlink(path)
    return path


def ratio(value: float | None, target: float, op: str, **raw: Any) -> dict[str, Any]:
    """One named ratio: value, target, whether it is met, and the raw numbers behind it."""
    met = None
    if value is not None:
        met = bool(value <= target) if op == "<=" else bool(value >= target)
    return {"value": None if value is None else round(float(value), 4), "target": target, "op": op, "met": met, **raw}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@contextmanager
def timed_calls(parts: dict[str, tuple[tuple[str, str], ...]]) -> Iterator[dict[str, float]]:
    """Seconds spent in each group of functions (``{name: ((module, function), ...)}``) while the
    block runs. The functions are wrapped where callers look them up (module attributes), and
    put back afterwards."""
    import importlib

    spent = dict.fromkeys(parts, 0.0)
    saved = []
    for name, targets in parts.items():
        for module_name, attr in targets:
            module = importlib.import_module(module_name)
            fn = getattr(module, attr)
            saved.append((module, attr, fn))

            def timed(*args: Any, _fn: Any = fn, _name: str = name, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    spent[_name] += time.perf_counter() - start

            setattr(module, attr, timed)
    try:
        yield spent
    finally:
        for module, attr, fn in saved:
            setattr(module, attr, fn)


def stop_group(proc: subprocess.Popen[bytes], sig: int | None = None, timeout_s: float = 30) -> None:
    """Stop a server the bench started in its own process group: ``sig`` (default SIGINT, what
    Ctrl-C sends) to the group, then SIGKILL if it is still there after ``timeout_s``."""
    import signal

    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT if sig is None else sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
