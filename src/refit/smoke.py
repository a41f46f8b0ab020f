"""Smoke test of a saved model, in a process that never held the trained model.

A separate process proves the artifact loads from its files alone (nothing leaks from the
training process's memory). The parent writes the sample as parquet, runs
``python -m refit.smoke --uri URI --sample FILE --out FILE``'s :func:`main` in a child, reads
the child's JSON summary and decides: output shape and dtype, no NaN or inf, probabilities in
[0, 1] summing to 1, labels among the classes, and latency per 1,000 rows under the bound.

Each child is forked from a *smoke server* (``python -m refit.smoke --serve``): a Python
process started fresh, with a clean environment of imports (it is not forked from the trainer),
the first time this process runs a smoke test. It imports :data:`PRELOAD` once, then forks one
child per smoke test, so a process that registers many models (a replay, a Prefect worker, the
tests) pays the 3 to 4 s of pandas/scikit-learn imports once, not per model, while every child
still starts from a process that has never seen a model and loads the artifact from its files.
(multiprocessing's forkserver would do the same but re-runs the caller's ``__main__`` script in
every child: a user's script without a ``__main__`` guard would retrain inside its smoke test.)
A child runs in the environment of the call, and its stdout and stderr go to a file whose
last lines are the reason when it fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from refit.errors import DataError, RefitError
from refit.metrics import Task

#: Latency is the median of at least this many timed calls ...
TIMING_REPEATS = 3
#: ... repeated until this much time has passed (at most MAX_TIMING_REPEATS calls), ...
MIN_TIMING_S = 0.2
MAX_TIMING_REPEATS = 100
#: ... on at least this many rows (a small sample is repeated): per-call overhead timed on 20
#: rows and scaled to 1,000 would make a fast model look 50 times slower than it is.
MIN_TIMING_ROWS = 1000
#: The config key of the latency bound, named in the reason a smoke test fails on it.
LATENCY_SETTING = "training.smoke_max_ms_per_1k_rows"
#: What the smoke server imports once, before any child forks from it (what every smoke child
#: needs; torch is left out: only a torch artifact imports it, in its own child). skops.io,
#: which loading a scikit-learn artifact needs, is imported too (through refit.skops_compat).
PRELOAD = ("numpy", "pandas", "pyarrow.parquet", "sklearn.ensemble", "sklearn.linear_model", "refit.model")


@dataclass
class SmokeReport:
    """Whether the artifact passed, and every reason it did not."""

    passed: bool
    reasons: list[str]
    rows: int
    ms_per_1k_rows: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def smoke_test(
    uri: str,
    sample_df: pd.DataFrame,
    max_ms_per_1k_rows: float,
    task: Task,
    *,
    timeout_s: float = 300.0,
    env: dict[str, str] | None = None,
) -> SmokeReport:
    """Load ``uri`` in a new process, predict ``sample_df`` there, and check the outputs.

    Args:
        uri: The artifact (local path or ``s3://`` URI; S3 endpoint from the environment).
        sample_df: Rows to predict (feature columns; extra columns are ignored).
        max_ms_per_1k_rows: Latency bound (median of a few full-sample predictions).
        task: What the model must be (``refit.metrics.Task``: the config's ``dataset.task``).
        timeout_s: The child process is killed after this long.
        env: Environment of the child (default: this process's).
    """
    if len(sample_df) == 0:
        raise DataError("smoke test needs at least one sample row")
    with tempfile.TemporaryDirectory(prefix="refit-smoke-") as tmp:
        sample_path = Path(tmp) / "sample.parquet"
        out_path = Path(tmp) / "result.json"
        try:
            sample_df.to_parquet(sample_path, index=False)
        except Exception as exc:
            raise DataError(f"cannot write the smoke sample as parquet: {str(exc).splitlines()[0]}") from None
        log_path = Path(tmp) / "child.log"
        child_env = env if env is not None else dict(os.environ)
        start = time.perf_counter()
        exitcode = _run_child([str(uri), str(sample_path), str(out_path), str(log_path)], child_env, timeout_s)
        if exitcode is None:
            return SmokeReport(False, [f"the smoke process did not finish within {timeout_s:g}s"], len(sample_df))
        child_s = time.perf_counter() - start
        if not out_path.exists():
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:] if log_path.exists() else []
            return SmokeReport(False, [f"the smoke process exited with {exitcode}: {' | '.join(tail)}"], len(sample_df))
        result = json.loads(out_path.read_text())
    report = check_result(result, len(sample_df), max_ms_per_1k_rows, task)
    report.details["process_s"] = child_s
    return report


def _run_child(args: list[str], env: dict[str, str], timeout_s: float) -> int | None:
    """Run :func:`main` on ``[uri, sample, out, log]`` in a child of the smoke server, in
    environment ``env``; its exit code (``None``: killed after ``timeout_s``). One smoke test at a
    time per process (the server forks one child at a time)."""
    with _SERVER_LOCK:
        server = _server()
        assert server.proc.stdin is not None
        try:
            server.proc.stdin.write(json.dumps({"args": args, "env": env}).encode() + b"\n")
            server.proc.stdin.flush()
            pid = int(json.loads(server.line(time.monotonic() + 60) or b"")["pid"])
        except (OSError, ValueError, KeyError):  # the server is gone: the next call starts another
            server.proc.kill()
            return -1
        reply = server.line(time.monotonic() + timeout_s)
        if reply is None:  # still running: kill it; the server answers with its exit code
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            server.line(time.monotonic() + 60)
            return None
        try:
            return int(json.loads(reply)["exit"])
        except (ValueError, KeyError):
            server.proc.kill()
            return -1


@dataclass
class _Server:
    """The smoke server process and the bytes read from it past the last full line."""

    proc: subprocess.Popen[bytes]
    pending: bytes = b""

    def line(self, deadline: float) -> bytes | None:
        """The next line from the server (``b""`` when it is gone; ``None`` at ``deadline``)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return b""
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line


_SERVER: _Server | None = None
_SERVER_LOCK = threading.Lock()


def _server() -> _Server:
    """This process's smoke server, started when there is none (or the last one died)."""
    global _SERVER
    if _SERVER is None or _SERVER.proc.poll() is not None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "refit.smoke", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        _SERVER = _Server(proc)
    return _SERVER


def serve() -> int:
    """The smoke server: import :data:`PRELOAD`, then for each request line on stdin
    (``{"args": [...], "env": {...}}``) fork a child that runs :func:`main`, answer its pid, wait
    for it and answer its exit code. Ends when stdin closes (its parent is gone)."""
    import importlib

    for module in PRELOAD:
        with contextlib.suppress(ImportError):  # the child imports what it needs, and says why when it cannot
            importlib.import_module(module)
    with contextlib.suppress(ImportError):  # what loading a scikit-learn artifact imports (3 to 8 s), torch-free
        from refit.skops_compat import skops_io

        skops_io()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                uri, sample, out, log = request["args"]
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.environ.clear()
                os.environ.update(request["env"])
                code = main(["--uri", uri, "--sample", sample, "--out", out])
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"exit": os.waitstatus_to_exitcode(status)}), flush=True)
    return 0


def check_result(result: dict[str, Any], rows: int, max_ms_per_1k_rows: float, task: Task) -> SmokeReport:
    """Judge the child's summary (see :func:`summarise`)."""
    if not result.get("ok"):
        return SmokeReport(
            False, [f"{result.get('stage', 'smoke')} failed: {result.get('error')}"], rows, details=result
        )
    reasons: list[str] = []
    model_task = result["task"]
    if model_task != task:
        reasons.append(f"model task is {model_task}, expected {task}")
    shape = result["output_shape"]
    if model_task == "regression":
        if shape != [rows]:
            reasons.append(f"output shape {shape}, expected [{rows}]")
    else:
        k = result["n_classes"]
        if shape != [rows, k] or k < 2:
            reasons.append(f"output shape {shape}, expected [{rows}, {k}] with at least 2 classes")
    if not result["output_dtype"].startswith("float"):
        reasons.append(f"output dtype {result['output_dtype']} is not floating point")
    if result["n_nan"]:
        reasons.append(f"{result['n_nan']} NaN value(s) in the output")
    if result["n_inf"]:
        reasons.append(f"{result['n_inf']} infinite value(s) in the output")
    if model_task != "regression" and not result["n_nan"]:
        if result["proba_min"] < -1e-9 or result["proba_max"] > 1 + 1e-9:
            reasons.append(f"probabilities outside [0, 1]: [{result['proba_min']}, {result['proba_max']}]")
        if result["max_row_sum_error"] > 1e-4:
            reasons.append(f"probabilities do not sum to 1 (off by up to {result['max_row_sum_error']:.3g})")
        if not result["labels_in_classes"]:
            reasons.append("predicted labels are not among the model's classes")
    if result["labels_len"] != rows:
        reasons.append(f"predict returned {result['labels_len']} values for {rows} rows")
    latency = result["ms_per_1k_rows"]
    if latency is None or not math.isfinite(latency):
        reasons.append("latency was not measured")
    elif latency > max_ms_per_1k_rows:
        reasons.append(f"latency {latency:.1f} ms per 1k rows exceeds {LATENCY_SETTING} {max_ms_per_1k_rows:g}")
    return SmokeReport(not reasons, reasons, rows, ms_per_1k_rows=latency, details=result)


def summarise(uri: str, sample: pd.DataFrame) -> dict[str, Any]:
    """Load, time and describe predictions (runs in the child process)."""
    from refit.model import load

    try:
        model = load(uri)
    except RefitError as exc:
        return {"ok": False, "stage": "load", "error": str(exc)}
    try:
        model.output(sample.head(min(len(sample), 64)))  # warm-up
        output = model.output(sample)
        timed = _timing_rows(sample)
        timings = _time_calls(lambda: model.output(timed))
        labels = model.predict(sample)
    except (RefitError, ValueError, TypeError, RuntimeError) as exc:
        return {"ok": False, "stage": "predict", "error": f"{type(exc).__name__}: {exc}"}
    output = np.asarray(output)
    floating = np.issubdtype(output.dtype, np.floating)
    values = output.astype(np.float64) if floating else np.zeros(output.shape)
    summary: dict[str, Any] = {
        "ok": True,
        "task": model.task,
        "family": model.family,
        "n_classes": len(model.classes or []),
        "output_shape": list(output.shape),
        "output_dtype": str(output.dtype),
        "n_nan": int(np.isnan(values).sum()) if floating else 0,
        "n_inf": int(np.isinf(values).sum()) if floating else 0,
        "labels_len": int(len(labels)),
        "timings_ms": timings,
        "timing_rows": len(timed),
        "ms_per_1k_rows": float(np.median(timings)) * 1000.0 / len(timed),
    }
    if model.task != "regression":
        finite = values[np.isfinite(values)]
        summary["proba_min"] = float(finite.min()) if finite.size else 0.0
        summary["proba_max"] = float(finite.max()) if finite.size else 0.0
        row_sums = values.sum(axis=1) if values.ndim == 2 else np.zeros(0)
        row_sums = row_sums[np.isfinite(row_sums)]
        summary["max_row_sum_error"] = float(np.abs(row_sums - 1).max()) if row_sums.size else 0.0
        classes = {str(c) for c in model.classes or []}
        summary["labels_in_classes"] = all(str(v) in classes for v in labels)
    return summary


def _timing_rows(sample: pd.DataFrame) -> pd.DataFrame:
    """``sample``, repeated up to at least MIN_TIMING_ROWS rows."""
    if len(sample) == 0 or len(sample) >= MIN_TIMING_ROWS:
        return sample
    copies = -(-MIN_TIMING_ROWS // len(sample))
    return pd.concat([sample] * copies, ignore_index=True)


def _time_calls(call: Callable[[], object]) -> list[float]:
    """Milliseconds of each call: at least TIMING_REPEATS calls, more until MIN_TIMING_S passed."""
    timings: list[float] = []
    started = time.perf_counter()
    while len(timings) < TIMING_REPEATS or (
        time.perf_counter() - started < MIN_TIMING_S and len(timings) < MAX_TIMING_REPEATS
    ):
        start = time.perf_counter()
        call()
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refit.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--uri")
    parser.add_argument("--sample", help="parquet file of sample rows")
    parser.add_argument("--out", help="where to write the JSON summary")
    parser.add_argument("--serve", action="store_true", help="be the smoke server (see the module's docstring)")
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    if not (args.uri and args.sample and args.out):
        parser.error("--uri, --sample and --out are required")
    sample = pd.read_parquet(args.sample)
    result = summarise(args.uri, sample)
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
