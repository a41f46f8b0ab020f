"""The drift-alert webhook under load: signed alerts at a fixed concurrency against ``refit
webhook`` (a real uvicorn server in its own process) on loopback.

Two scenarios, each with a fresh store: Prefect up (a real local ``prefect server start`` with
the ``retrain-on-drift`` deployment applied, so the dispatcher really creates the run of the
alert the governor lets through) and Prefect down (``PREFECT_API_URL`` at a port nobody
listens on). Every alert has its own id, so the governor decides each one and the ledger grows
by one entry per alert (entries decided at the same moment share one object: the governor's
group commit): latency over the first and the last thousand alerts shows whether a decision's
cost grows with the ledger.

The load generator (a minimal HTTP/1.1 client on asyncio streams, one keep-alive connection per
concurrent sender) runs in this process and shares the machine with the server: its CPU time
is in the latencies. The server's and the client's CPU seconds per request are reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import stop_group

SECRET = "whsec-bench-3e7c19a0"
MODEL = "churn"
SLICE = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(_percentile(values, 50) * 1000, 1),
        "p99_ms": round(_percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


async def _load(url: str, alerts: int, concurrency: int, prefix: str) -> tuple[list[float], list[int], float]:
    """Send ``alerts`` signed alerts over ``concurrency`` keep-alive connections; latency of each.

    A minimal HTTP/1.1 client on asyncio streams (like wrk): httpx's async client spends about
    4 ms of CPU per request here, more than the server does, and would measure itself.
    """
    from refit.webhook import sign

    host, port = url.removeprefix("http://").split(":")
    latencies = [0.0] * alerts
    codes = [0] * alerts
    next_index = iter(range(alerts))

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for i in next_index:
                body = json.dumps({"alert_id": f"{prefix}-{i:05d}", "model": MODEL, "drift_share": 0.4}).encode()
                head = (
                    f"POST /alerts/drift HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nX-Refit-Signature: {sign(body, SECRET)}\r\n\r\n"
                )
                t0 = time.perf_counter()
                writer.write(head.encode() + body)
                status_and_headers = await reader.readuntil(b"\r\n\r\n")
                lines = status_and_headers.decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                await reader.readexactly(int(headers.get("content-length", "0")))
                latencies[i] = time.perf_counter() - t0
                codes[i] = int(lines[0].split()[1])
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return latencies, codes, time.perf_counter() - started


def _scenario(
    root: Path, name: str, api_url: str, env: dict[str, str], config_path: str, alerts: int, concurrency: int
) -> dict[str, Any]:
    import psutil

    from refit.io import open_store
    from refit.io.layout import LAYOUT
    from refit.policy import Ledger

    folder = root / name
    folder.mkdir()
    store_path = folder / "store"
    port = _free_port()
    hook_env = env | {
        "PREFECT_API_URL": api_url,
        "REFIT_STORE": str(store_path),
        "REFIT_WEBHOOK_SECRET": SECRET,
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    log = open(folder / "webhook.log", "wb")  # noqa: SIM115 - closed below
    hook = subprocess.Popen(
        [str(Path(sys.executable).parent / "refit"), "webhook", "--port", str(port), "--config", config_path],
        env=hook_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/healthz", 60, hook)
        server = psutil.Process(hook.pid)
        server_cpu = sum(server.cpu_times()[:2])
        client_cpu = time.process_time()
        latencies, codes, wall = asyncio.run(_load(url, alerts, concurrency, f"bench-{name}"))
        server_cpu = sum(server.cpu_times()[:2]) - server_cpu
        client_cpu = time.process_time() - client_cpu
        time.sleep(1)  # let the outbox settle
        store = open_store(str(store_path))
        ledger = Ledger(store, MODEL)
        ledger_objects, ledger_entries = len(ledger.seqs()), len(ledger.entries())
        outbox = len(store.list(LAYOUT.webhook_outbox(MODEL)))
    finally:
        stop_group(hook, timeout_s=20)
        log.close()
    counts: dict[str, int] = {}
    for code in codes:
        counts[str(code)] = counts.get(str(code), 0) + 1
    first, last = latencies[:SLICE], latencies[-SLICE:]
    return {
        "alerts": alerts,
        "concurrency": concurrency,
        "seconds": round(wall, 2),
        "req_per_s": round(alerts / wall, 1),
        **_ms(latencies),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "first_1000": _ms(first),
        "last_1000": _ms(last),
        "server_cpu_ms_per_alert": round(server_cpu / alerts * 1000, 3),
        "client_cpu_ms_per_alert": round(client_cpu / alerts * 1000, 3),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "status_codes": counts,
        "ledger_entries": ledger_entries,
        "ledger_objects": ledger_objects,
        "outbox_left": outbox,
    }


def _start_prefect(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, float]:
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server_env = env | {
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_API_URL": api_url,
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start"],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_http(f"{api_url}/health", 180, proc)
    return proc, api_url, time.perf_counter() - started


def _apply_retrain_on_drift(api_url: str) -> None:
    os.environ["PREFECT_API_URL"] = api_url
    from deployments.definitions import build_deployments

    for deployment in build_deployments():
        if deployment.name == "retrain-on-drift":
            deployment.apply()


def _runs_of_retrain_on_drift(api_url: str) -> int:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with SyncPrefectClient(api_url) as client:
        found = client.read_deployment_by_name("retrain/retrain-on-drift")
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])))
    return len(runs)


def run(alerts: int = 5000, concurrency: int = 50, config_path: str = "benchmarks/bench.yaml") -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="refit-bench-webhook-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "REFIT_"))}
    env |= {"PREFECT_HOME": str(root / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    os.environ.update({"PREFECT_HOME": env["PREFECT_HOME"], "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    config = str(Path(config_path).resolve())
    out: dict[str, Any] = {}
    try:
        prefect, api_url, startup = _start_prefect(root, env)
        try:
            _apply_retrain_on_drift(api_url)
            out["prefect_up"] = _scenario(root, "up", api_url, env, config, alerts, concurrency)
            out["prefect_up"]["runs_created"] = _runs_of_retrain_on_drift(api_url)
            out["prefect_up"]["prefect_server_startup_s_excluded"] = round(startup, 1)
        finally:
            stop_group(prefect, timeout_s=20)
        down_url = f"http://127.0.0.1:{_free_port()}/api"  # nothing listens there
        out["prefect_down"] = _scenario(root, "down", down_url, env, config, alerts, concurrency)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out
