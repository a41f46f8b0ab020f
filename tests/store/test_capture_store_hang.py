"""CaptureWriter against an S3 endpoint that hangs (accepts TCP, never answers): serving never
waits on it, every logged row is accounted for, and the spill reaches the store once it answers.

The endpoint is a real socket server on loopback; the client is a real boto3 S3 client (the
serving timeouts) behind the refit S3 store. Once "recovered", the endpoint relays new
connections to moto's S3 server.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from refit.capture import CaptureWriter
from refit.datasets import FEATURE_COLUMNS, generate_production
from refit.errors import StoreError
from refit.io.frames import read_frame
from refit.io.layout import LAYOUT
from refit.io.s3 import BATCH_TIMEOUTS, SERVING_TIMEOUTS, S3Store, make_s3_client

MODEL = "churn"
# The most one log() call may take while the store hangs: a call that waited on the store would
# take its flush timeout (1 s), so half of it is the line; a busy CI machine's scheduling pauses
# must not fail this (the test prints the max and p99 it saw: 4 ms and 0.7 ms here).
LOG_BUDGET_S = 0.5

pytestmark = pytest.mark.slow


class HangingEndpoint:
    """A TCP server on 127.0.0.1 that accepts connections and never answers them.

    After :meth:`recover` it closes the connections it held (the hung requests fail, as when
    an endpoint restarts) and relays every new connection to a real S3 server.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self.held: list[socket.socket] = []
        self.upstream: tuple[str, int] | None = None
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                upstream = self.upstream
                if upstream is None:
                    self.held.append(conn)  # read nothing, answer nothing
                    continue
            threading.Thread(target=_relay, args=(conn, upstream), daemon=True).start()

    def recover(self, upstream_url: str) -> None:
        host, port = upstream_url.removeprefix("http://").split(":")
        with self.lock:
            self.upstream = (host, int(port))
            held, self.held = self.held, []
        for conn in held:
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()
        with self.lock:
            held, self.held = self.held, []
        for conn in held:
            conn.close()


def _relay(client: socket.socket, upstream: tuple[str, int]) -> None:
    try:
        server = socket.create_connection(upstream)
    except OSError:
        client.close()
        return

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    back = threading.Thread(target=pipe, args=(server, client), daemon=True)
    back.start()
    pipe(client, server)
    back.join(30)
    client.close()
    server.close()


@pytest.fixture
def endpoint() -> Iterator[HangingEndpoint]:
    hanging = HangingEndpoint()
    yield hanging
    hanging.close()


def serving_store(endpoint: HangingEndpoint, bucket: str) -> S3Store:
    client = make_s3_client(endpoint_url=endpoint.url, region="us-east-1", timeouts=SERVING_TIMEOUTS)
    return S3Store(f"s3://{bucket}/prefix", client)


def log_for(writer: CaptureWriter, seconds: float, *, pause_s: float = 0.001) -> tuple[list[str], list[float]]:
    """One-row ``log`` calls for ``seconds``; the request ids logged and each call's latency."""
    row = generate_production(1, 1, seed=3)[0].features.loc[:, list(FEATURE_COLUMNS)]
    ids: list[str] = []
    latencies: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ids.append(f"r{len(ids):06d}")
        started = time.perf_counter()
        writer.log(row, [0.5], model_version="1", request_ids=ids[-1:])
        latencies.append(time.perf_counter() - started)
        time.sleep(pause_s)
    return ids, latencies


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "not reached in time"
        time.sleep(0.01)


def test_log_never_waits_on_a_hanging_store_and_close_accounts_for_every_row(
    endpoint: HangingEndpoint, tmp_path: Path
) -> None:
    writer = CaptureWriter(
        serving_store(endpoint, "captures"), MODEL, flush_rows=50, flush_timeout_s=1.0, spill_dir=tmp_path
    )
    ids, latencies = log_for(writer, 3.0)
    closing = time.perf_counter()
    stats = writer.close()
    close_s = time.perf_counter() - closing
    print(
        f"\n{len(ids)} log() calls while the store hung: max {max(latencies) * 1e3:.2f} ms, "
        f"p99 {sorted(latencies)[int(len(latencies) * 0.99)] * 1e3:.2f} ms; close() {close_s:.2f} s; {stats}"
    )

    assert endpoint.accepted >= 1  # the store was really tried, and hung
    assert max(latencies) < LOG_BUDGET_S
    assert close_s < 2 * writer.flush_timeout_s + 1.0
    assert stats.rows_logged == len(ids) and stats.rows_queued == 0
    assert (stats.rows_written, stats.rows_dropped) == (0, 0)
    assert stats.rows_written + stats.rows_spilled + stats.rows_dropped == stats.rows_logged
    assert "TimeoutError" in (stats.last_error or "")
    # what was spilled is on disk, every row once, for a writer with this spill_dir to retry
    spilled = sorted((tmp_path / MODEL).glob("*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in spilled) == stats.rows_in_spill == len(ids)
    on_disk = pd.concat([pd.read_parquet(p, columns=["request_id"]) for p in spilled])["request_id"]
    assert sorted(on_disk) == ids


def test_rows_spilled_while_the_store_hung_reach_it_once_it_answers(
    endpoint: HangingEndpoint, s3_endpoint: str, s3_store: S3Store, tmp_path: Path
) -> None:
    writer = CaptureWriter(
        serving_store(endpoint, s3_store.bucket),
        MODEL,
        flush_rows=20,
        flush_timeout_s=1.0,
        retry_backoff_s=0.2,
        max_retry_backoff_s=1.0,
        spill_dir=tmp_path,
    )
    ids, latencies = log_for(writer, 1.5, pause_s=0.005)
    assert max(latencies) < LOG_BUDGET_S
    wait_for(lambda: writer.stats.rows_spilled > 0, timeout=10)
    assert writer.stats.rows_written == 0

    endpoint.recover(s3_endpoint)
    # no flush() asked for: the flusher's own backed-off retry drains the spill
    wait_for(lambda: writer.stats.rows_in_spill == 0 and writer.stats.rows_queued == 0, timeout=30)
    stats = writer.close()

    keys = [k for k in s3_store.list(LAYOUT.capture_requests(MODEL)) if k.endswith(".parquet")]
    got = pd.concat([read_frame(s3_store, k) for k in keys], ignore_index=True)["request_id"]
    assert sorted(got) == ids  # every row, once (a retry overwrites what a hung call landed)
    assert (stats.rows_written, stats.rows_dropped, stats.rows_in_spill) == (len(ids), 0, 0)
    assert stats.rows_spilled > 0 and stats.retries >= 1
    assert list((tmp_path / MODEL).glob("*.parquet")) == []


def test_the_serving_s3_client_gives_up_on_a_hanging_endpoint_in_seconds(endpoint: HangingEndpoint) -> None:
    store = serving_store(endpoint, "captures")
    assert store.client.meta.config.read_timeout == SERVING_TIMEOUTS.read_s
    started = time.monotonic()
    with pytest.raises(StoreError, match="unreachable"):
        store.put_bytes("x.bin", b"x")
    took = time.monotonic() - started
    t = SERVING_TIMEOUTS  # each attempt: 1 s waiting for "100 Continue", then read_s for the answer
    assert t.max_attempts * (t.read_s + 1) <= took < t.max_attempts * (t.read_s + 1) + 2.0
    assert endpoint.accepted == t.max_attempts


def test_pipeline_steps_keep_the_patient_s3_timeouts() -> None:
    config = make_s3_client(endpoint_url="http://127.0.0.1:9", region="us-east-1").meta.config
    assert (config.connect_timeout, config.read_timeout) == (BATCH_TIMEOUTS.connect_s, BATCH_TIMEOUTS.read_s) == (5, 60)
    assert config.retries == {"mode": "standard", "total_max_attempts": 6}  # boto3's max_attempts=5 retries, as before


def test_open_store_builds_the_quick_serving_client_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from refit.io import open_store

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    serving = open_store("s3://captures-bucket/p", endpoint_url="http://127.0.0.1:9", timeouts=SERVING_TIMEOUTS)
    batch = open_store("s3://captures-bucket/p", endpoint_url="http://127.0.0.1:9")
    assert isinstance(serving, S3Store) and isinstance(batch, S3Store)
    assert serving.client.meta.config.read_timeout == SERVING_TIMEOUTS.read_s == 3
    assert batch.client.meta.config.read_timeout == BATCH_TIMEOUTS.read_s == 60
