"""CaptureWriter: partitions, sampling, flush triggers, and riding out a store outage without loss."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from refit.capture import CaptureStats, CaptureWriter
from refit.datasets import FEATURE_COLUMNS, generate_production
from refit.errors import StoreError
from refit.io import LocalStore
from refit.io.base import Blob, Store
from refit.io.frames import read_frame
from refit.io.layout import LAYOUT

MODEL = "churn"
T0 = pd.Timestamp("2026-03-01 23:30", tz="UTC")


class Clock:
    """An injectable ``time.time``."""

    def __init__(self, start: pd.Timestamp = T0) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now


class FlakyStore(Store):
    """Delegates to ``inner``; ``put_bytes`` raises StoreError while ``down`` (or after ``puts_left`` puts)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.down = False
        self.puts_left: int | None = None
        self.lock = threading.Lock()

    def put_bytes(self, key: str, data: bytes) -> str:
        with self.lock:
            if self.puts_left is not None:
                if self.puts_left == 0:
                    self.down = True
                self.puts_left -= 1
            if self.down:
                raise StoreError(f"cannot write {self.uri_for(key)}: connection refused")
        return self.inner.put_bytes(key, data)

    def get(self, key: str) -> Blob:
        return self.inner.get(key)

    def put_if_absent(self, key: str, data: bytes) -> str:
        return self.inner.put_if_absent(key, data)

    def put_if_unchanged(self, key: str, data: bytes, version: str) -> str:
        return self.inner.put_if_unchanged(key, data, version)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def features(n: int, seed: int = 3) -> pd.DataFrame:
    """Real churn features (str, int, float with NaN, bool columns)."""
    return generate_production(1, n, seed=seed)[0].features.loc[:, list(FEATURE_COLUMNS)]


def read_all(store: Store, prefix: str) -> tuple[pd.DataFrame, list[str]]:
    keys = [k for k in store.list(prefix) if k.endswith(".parquet")]
    if not keys:
        return pd.DataFrame(), []
    return pd.concat([read_frame(store, k) for k in keys], ignore_index=True), keys


def partitions(keys: list[str]) -> set[str]:
    return {k.split("/requests/")[1].rsplit("/", 1)[0] for k in keys}


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until the writer's background flusher has made ``condition`` true."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "the flusher did not get there in time"
        time.sleep(0.005)


def capture_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "refit.capture" and r.levelno == level]


# -- layout and round trip ----------------------------------------------------------------------


def test_rows_land_in_their_date_hour_partitions_and_read_back_as_logged(local_store: Store) -> None:
    feats = features(6)
    stamps = [
        T0,
        T0 + pd.Timedelta(minutes=20),
        T0 + pd.Timedelta(minutes=40),  # 23:30 .. 00:10
        T0 + pd.Timedelta(minutes=45),
        T0 + pd.Timedelta(hours=2),
        T0 + pd.Timedelta(minutes=5),
    ]
    preds = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    writer = CaptureWriter(local_store, MODEL, clock=Clock())
    writer.log(feats.iloc[:4], preds[:4], model_version="3", request_ids=ids("a", 4), timestamps=stamps[:4])
    writer.log(feats.iloc[4:], preds[4:], model_version="4", request_ids=["b0", "b1"], timestamps=stamps[4:])
    assert local_store.list(LAYOUT.capture_requests(MODEL)) == []  # buffered, not written yet
    stats = writer.flush()

    got, keys = read_all(local_store, LAYOUT.capture_requests(MODEL))
    assert partitions(keys) == {"date=2026-03-01/hour=23", "date=2026-03-02/hour=00", "date=2026-03-02/hour=01"}
    hour_23 = read_all(local_store, f"{LAYOUT.capture_requests(MODEL)}date=2026-03-01/hour=23/")[0]
    assert sorted(hour_23["request_id"]) == ["a00000", "a00001", "b1"]
    expected = feats.reset_index(drop=True).assign(
        request_id=[*ids("a", 4), "b0", "b1"],
        event_time=pd.DatetimeIndex(stamps).as_unit("ns"),
        prediction=preds,
        model_version=["3", "3", "3", "3", "4", "4"],
    )
    got = got.sort_values("request_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=True)
    assert str(got["event_time"].dtype) == "datetime64[ns, UTC]" and got["autopay"].dtype == bool
    assert (stats.rows_logged, stats.rows_written, stats.rows_spilled, stats.rows_dropped) == (6, 6, 0, 0)


def test_default_request_ids_are_fresh_uuids_and_default_time_is_the_clock(local_store: Store) -> None:
    clock = Clock(pd.Timestamp("2026-05-04 10:30:15", tz="UTC"))
    with CaptureWriter(local_store, MODEL, clock=clock) as writer:
        writer.log(features(3), [0.7, 0.8, 0.9], model_version="1")
    got, keys = read_all(local_store, LAYOUT.capture_requests(MODEL))
    assert partitions(keys) == {"date=2026-05-04/hour=10"}
    assert got["request_id"].str.fullmatch(r"[0-9a-f]{32}").all() and got["request_id"].nunique() == 3
    assert (got["event_time"] == pd.Timestamp("2026-05-04 10:30:15", tz="UTC")).all()


def test_labels_are_written_by_arrival_date(local_store: Store) -> None:
    writer = CaptureWriter(local_store, MODEL, label_column="churned", clock=Clock())
    arrived = pd.DatetimeIndex(["2026-03-05 08:00", "2026-03-05 09:00", "2026-03-07 00:00"], tz="UTC")
    writer.log_labels(["r1", "r2", "r3"], pd.Series([1, 0, 1], index=[7, 8, 9]), label_time=arrived)
    writer.close()
    got, keys = read_all(local_store, LAYOUT.capture_labels(MODEL))
    assert sorted(k.split("/")[3] for k in keys) == ["date=2026-03-05", "date=2026-03-07"]
    expected = pd.DataFrame({"request_id": ["r1", "r2", "r3"], "churned": [1, 0, 1], "label_time": arrived})
    pd.testing.assert_frame_equal(got.sort_values("request_id").reset_index(drop=True), expected)


# -- sampling -----------------------------------------------------------------------------------


def test_sampling_keeps_about_the_rate_and_decides_per_request_id(tmp_path: Path) -> None:
    from refit.io.local import LocalStore

    n = 20_000
    request_ids = ids("req-", n)
    frame = pd.DataFrame({"x": np.arange(n, dtype=np.int64)})
    kept: dict[str, set[str]] = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        store = LocalStore(tmp_path / name)
        writer = CaptureWriter(store, MODEL, sample_rate=0.25, seed=seed, flush_rows=10**9, label_column="y")
        writer.log(frame, np.zeros(n), model_version="1", request_ids=request_ids, timestamps=T0)
        writer.log_labels(request_ids, np.ones(n, dtype=np.int64), label_time=T0)
        stats = writer.close()
        requests = read_all(store, LAYOUT.capture_requests(MODEL))[0]
        labels = read_all(store, LAYOUT.capture_labels(MODEL))[0]
        kept[name] = set(requests["request_id"])
        assert 0.23 < len(kept[name]) / n < 0.27
        assert stats.rows_sampled_out == n - len(kept[name]) and stats.rows_written == len(kept[name])
        assert set(labels["request_id"]) == kept[name]  # labels follow their requests
        # the rows kept are the rows logged for those ids
        assert (requests["x"].to_numpy() == requests["request_id"].str[4:].astype(int).to_numpy()).all()
    assert kept["a"] == kept["b"]  # same seed, another writer: same requests in
    assert 0.1 < len(kept["a"] & kept["c"]) / len(kept["a"]) < 0.4  # another seed: an independent draw


# -- flush triggers -----------------------------------------------------------------------------


def test_flushes_when_the_buffer_reaches_flush_rows(local_store: Store) -> None:
    writer = CaptureWriter(local_store, MODEL, flush_rows=5, clock=Clock())
    feats = features(12)
    for i in range(4):
        writer.log(feats.iloc[[i]], [0.5], model_version="1", request_ids=[f"r{i}"])
    assert read_all(local_store, LAYOUT.capture_requests(MODEL))[1] == []
    writer.log(feats.iloc[[4]], [0.5], model_version="1", request_ids=["r4"])
    wait_for(lambda: writer.stats.rows_written == 5)  # by the flusher, not by this call
    got, keys = read_all(local_store, LAYOUT.capture_requests(MODEL))
    assert len(keys) == 1 and sorted(got["request_id"]) == [f"r{i}" for i in range(5)]
    writer.log(feats.iloc[5:12], np.full(7, 0.5), model_version="1", request_ids=[f"r{i}" for i in range(5, 12)])
    wait_for(lambda: writer.stats.rows_written == 12)  # one call over the threshold
    got, keys = read_all(local_store, LAYOUT.capture_requests(MODEL))
    assert len(keys) == 2 and len(got) == 12 and writer.stats.rows_queued == 0


def test_flushes_once_the_oldest_row_has_waited_the_interval_without_another_call(local_store: Store) -> None:
    clock = Clock()
    writer = CaptureWriter(local_store, MODEL, flush_interval_s=60, clock=clock)
    feats = features(3)
    writer.log(feats.iloc[[0]], [0.1], model_version="1", request_ids=["r0"])
    clock.now += 59.9
    writer.log(feats.iloc[[1]], [0.2], model_version="1", request_ids=["r1"])
    time.sleep(0.3)  # the flusher looks at the clock meanwhile: not due yet
    assert read_all(local_store, LAYOUT.capture_requests(MODEL))[1] == [] and writer.stats.rows_queued == 2
    clock.now += 0.1  # a quiet server: no call comes, the flusher writes on its own
    wait_for(lambda: writer.stats.rows_written == 2)
    assert sorted(read_all(local_store, LAYOUT.capture_requests(MODEL))[0]["request_id"]) == ["r0", "r1"]
    writer.log(feats.iloc[[2]], [0.3], model_version="1", request_ids=["r2"])
    time.sleep(0.1)
    assert (writer.stats.rows_written, writer.stats.rows_queued) == (2, 1)  # a fresh interval


# -- outages ------------------------------------------------------------------------------------


def test_outage_spills_warns_once_and_recovery_writes_every_row_once(
    local_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="refit.capture")
    flaky = FlakyStore(local_store)
    clock = Clock()
    # no background retries during the test (backoff), flushes asked for: batches are deterministic
    writer = CaptureWriter(flaky, MODEL, retry_backoff_s=60, spill_dir=tmp_path / "spill", clock=clock)
    feats = features(12)
    flaky.down = True
    for i in range(12):  # three flushes, all refused
        writer.log(
            feats.iloc[[i]],
            [i / 12],
            model_version="1",
            request_ids=[f"r{i:02d}"],
            timestamps=T0 + pd.Timedelta(minutes=10 * i),
        )
        if i % 4 == 3:
            writer.flush()
    stats = writer.stats
    assert (stats.rows_written, stats.rows_spilled, stats.spilled_batches, stats.rows_dropped) == (0, 12, 3, 0)
    assert "connection refused" in (stats.last_error or "")
    assert len(list((tmp_path / "spill" / MODEL).glob("*.parquet"))) == 3
    assert local_store.list(LAYOUT.capture_requests(MODEL)) == []
    warnings = capture_records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "spilling" in warnings[0].getMessage()

    flaky.down = False
    writer.log(feats.iloc[[0]], [0.0], model_version="2", request_ids=["new"], timestamps=T0)
    stats = writer.flush()
    got = read_all(local_store, LAYOUT.capture_requests(MODEL))[0]
    assert sorted(got["request_id"]) == sorted([f"r{i:02d}" for i in range(12)] + ["new"])
    assert got["request_id"].is_unique
    # retries: the 2nd and 3rd flush each tried the oldest batch once, recovery wrote all 3
    assert (stats.rows_written, stats.spilled_batches, stats.spill_bytes, stats.retries) == (13, 0, 0, 5)
    assert list((tmp_path / "spill" / MODEL).glob("*.parquet")) == []
    assert any("is back" in r.getMessage() for r in capture_records(caplog, logging.INFO))
    assert len(capture_records(caplog, logging.WARNING)) == 1  # still one warning for the one outage


def test_a_batch_half_written_before_the_outage_is_not_duplicated_by_its_retry(local_store: Store) -> None:
    flaky = FlakyStore(local_store)
    writer = CaptureWriter(flaky, MODEL, clock=Clock())
    stamps = [T0, T0 + pd.Timedelta(hours=1), T0 + pd.Timedelta(hours=2)]  # three partitions
    writer.log(features(3), [0.1, 0.2, 0.3], model_version="1", request_ids=["a", "b", "c"], timestamps=stamps)
    flaky.puts_left = 1  # the first partition's file goes through, then the store fails
    stats = writer.flush()
    assert stats.rows_spilled == 3 and len(local_store.list(LAYOUT.capture_requests(MODEL))) == 1
    flaky.down, flaky.puts_left = False, None
    writer.flush()
    got, keys = read_all(local_store, LAYOUT.capture_requests(MODEL))
    assert len(keys) == 3 and sorted(got["request_id"]) == ["a", "b", "c"]


def test_a_full_spill_drops_the_oldest_batches_counts_them_and_logs_an_error(
    local_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="refit.capture")
    flaky = FlakyStore(local_store)
    flaky.down = True
    feats = features(50)

    def log_batch(writer: CaptureWriter, b: int) -> None:
        writer.log(
            feats.iloc[b * 10 : (b + 1) * 10],
            np.linspace(0, 1, 10),
            model_version="1",
            request_ids=ids(f"b{b}-", 10),
            timestamps=T0,
        )
        writer.flush()

    down_for_good = FlakyStore(local_store)  # the probe's retries must never land in the store read below
    down_for_good.down = True
    probe = CaptureWriter(down_for_good, MODEL, spill_dir=tmp_path / "probe", clock=Clock())
    log_batch(probe, 0)
    one_batch = probe.stats.spill_bytes
    probe.close()  # its batch stays spilled in its own folder
    caplog.clear()

    # room for two batches, not three
    writer = CaptureWriter(
        flaky, MODEL, spill_dir=tmp_path / "spill", max_spill_bytes=int(2.5 * one_batch), clock=Clock()
    )
    for b in range(5):
        log_batch(writer, b)
    stats = writer.stats
    assert (stats.rows_spilled, stats.rows_dropped, stats.spilled_batches) == (50, 30, 2)
    errors = capture_records(caplog, logging.ERROR)
    assert len(errors) == 3 and all("dropped the oldest 10 requests" in r.getMessage() for r in errors)
    assert "30 requests and 0 labels dropped so far" in errors[-1].getMessage()

    flaky.down = False
    stats = writer.flush()
    got = read_all(local_store, LAYOUT.capture_requests(MODEL))[0]
    assert sorted(got["request_id"]) == ids("b3-", 10) + ids("b4-", 10)  # the newest survive
    assert (stats.rows_written, stats.rows_dropped) == (20, 30)


def test_a_batch_bigger_than_the_whole_spill_is_dropped_and_counted(
    local_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="refit.capture")
    flaky = FlakyStore(local_store)
    flaky.down = True
    writer = CaptureWriter(flaky, MODEL, max_spill_bytes=100, clock=Clock())
    writer.log(features(7), np.zeros(7), model_version="1")
    stats = writer.flush()
    assert (stats.rows_spilled, stats.rows_dropped, stats.spilled_batches) == (0, 7, 0)
    assert "over the spill bound" in capture_records(caplog, logging.ERROR)[0].getMessage()


def test_a_batch_too_big_for_the_spill_evicts_nothing(local_store: Store, tmp_path: Path) -> None:
    """The oversized batch was dropped only after the older spilled batches had been evicted to
    make room it could never have: both were lost, where only it had to be."""
    flaky = FlakyStore(local_store)
    flaky.down = True
    writer = CaptureWriter(flaky, MODEL, spill_dir=tmp_path / "spill", max_spill_bytes=20_000, clock=Clock())
    writer.log(features(10), np.zeros(10), model_version="1", request_ids=ids("small-", 10), timestamps=T0)
    writer.flush()
    assert writer.stats.rows_spilled == 10
    writer.log(features(5000), np.zeros(5000), model_version="1", timestamps=T0)  # over 20 kB as parquet
    stats = writer.flush()
    assert (stats.rows_dropped, stats.spilled_batches) == (5000, 1)  # the big one only
    flaky.down = False
    writer.flush()
    got = read_all(local_store, LAYOUT.capture_requests(MODEL))[0]
    assert sorted(got["request_id"]) == ids("small-", 10)  # the spilled batch survived and was written


def test_an_unreadable_spill_file_is_dropped_loudly_and_the_rest_still_written(
    local_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="refit.capture")
    flaky = FlakyStore(local_store)
    flaky.down = True
    writer = CaptureWriter(flaky, MODEL, spill_dir=tmp_path, clock=Clock())
    for b in range(2):
        writer.log(features(3), np.zeros(3), model_version="1", request_ids=ids(f"b{b}-", 3))
        writer.flush()
    oldest = sorted((tmp_path / MODEL).glob("*.parquet"))[0]
    oldest.write_bytes(b"not parquet")
    flaky.down = False
    stats = writer.flush()
    assert sorted(read_all(local_store, LAYOUT.capture_requests(MODEL))[0]["request_id"]) == ids("b1-", 3)
    assert (stats.rows_written, stats.rows_dropped, stats.spilled_batches) == (3, 3, 0)
    assert "cannot read" in capture_records(caplog, logging.ERROR)[0].getMessage()


def test_labels_ride_out_an_outage_too(local_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="refit.capture")
    flaky = FlakyStore(local_store)
    writer = CaptureWriter(
        flaky, MODEL, flush_rows=3, retry_backoff_s=60, label_column="churned", spill_dir=tmp_path, clock=Clock()
    )
    flaky.down = True
    writer.log_labels(["r1", "r2", "r3"], [1, 0, 1], label_time=T0)
    wait_for(lambda: writer.stats.labels_spilled == 3)
    writer.log_labels(["r4", "r5", "r6"], [0, 0, 1], label_time=T0 + pd.Timedelta(days=1))
    wait_for(lambda: writer.stats.labels_spilled == 6)  # backing off: spilled without trying the store
    assert (writer.stats.labels_written, writer.stats.labels_in_spill, writer.stats.retries) == (0, 6, 0)
    assert len(capture_records(caplog, logging.WARNING)) == 1
    flaky.down = False
    stats = writer.close()
    got, keys = read_all(local_store, LAYOUT.capture_labels(MODEL))
    assert sorted(k.split("/")[3] for k in keys) == ["date=2026-03-01", "date=2026-03-02"]
    assert dict(zip(got["request_id"], got["churned"], strict=True)) == {
        "r1": 1,
        "r2": 0,
        "r3": 1,
        "r4": 0,
        "r5": 0,
        "r6": 1,
    }
    assert got["churned"].dtype == np.int64
    # no retry during the outage (backing off), then both batches at close
    assert (stats.labels_written, stats.labels_dropped, stats.retries) == (6, 0, 2)


def test_a_new_writer_retries_what_a_closed_one_left_spilled(
    local_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="refit.capture")
    flaky = FlakyStore(local_store)
    flaky.down = True
    with CaptureWriter(flaky, MODEL, spill_dir=tmp_path, clock=Clock()) as writer:
        writer.log(features(4), np.zeros(4), model_version="1", request_ids=ids("r", 4))
    assert "still spilled" in capture_records(caplog, logging.ERROR)[0].getMessage()
    flaky.down = False
    after_restart = CaptureWriter(flaky, MODEL, spill_dir=tmp_path, clock=Clock())
    assert after_restart.stats.spilled_batches == 1
    stats = after_restart.close()
    assert sorted(read_all(local_store, LAYOUT.capture_requests(MODEL))[0]["request_id"]) == ids("r", 4)
    assert (stats.rows_written, stats.spilled_batches) == (4, 0)


# -- a store that hangs --------------------------------------------------------------------------


class StuckStore(FlakyStore):
    """``put_bytes`` blocks until ``answer`` is set (a store that hangs), then writes."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.answer = threading.Event()
        self.entered = threading.Event()
        self.calls = 0
        self.returned = 0

    def put_bytes(self, key: str, data: bytes) -> str:
        with self.lock:
            self.calls += 1
        self.entered.set()
        self.answer.wait(60)
        try:
            return self.inner.put_bytes(key, data)
        finally:
            with self.lock:
                self.returned += 1


def accounted(stats: CaptureStats) -> int:
    return stats.rows_sampled_out + stats.rows_queued + stats.rows_written + stats.rows_in_spill + stats.rows_dropped


def test_a_full_queue_drops_and_counts_new_rows_instead_of_waiting(
    local_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="refit.capture")
    stuck = StuckStore(local_store)
    writer = CaptureWriter(stuck, MODEL, flush_rows=5, max_queue_rows=10, flush_timeout_s=60, clock=Clock())
    feats = features(20)
    writer.log(feats.iloc[:5], np.zeros(5), model_version="1", request_ids=ids("a", 5))
    assert stuck.entered.wait(10)  # the flusher holds those 5 rows, waiting on the store
    latencies = []
    for i in range(15):  # 10 fill the queue, 5 find it full
        started = time.perf_counter()
        writer.log(feats.iloc[[5 + i]], [0.5], model_version="1", request_ids=[f"b{i:02d}"])
        latencies.append(time.perf_counter() - started)
    stats = writer.stats
    # waiting would take the store's 60 s; a drop returns at once (the bound leaves room for a busy machine)
    assert max(latencies) < 1.0
    assert (stats.rows_logged, stats.rows_queued, stats.rows_dropped, stats.rows_written) == (20, 15, 5, 0)
    assert accounted(stats) == stats.rows_logged and "queue is full" in (stats.last_error or "")
    errors = capture_records(caplog, logging.ERROR)
    assert len(errors) == 1 and "dropping new rows" in errors[0].getMessage()  # once per overflow

    stuck.answer.set()
    stats = writer.close()
    assert (stats.rows_written, stats.rows_dropped, stats.rows_queued, stats.rows_spilled) == (15, 5, 0, 0)
    got = sorted(read_all(local_store, LAYOUT.capture_requests(MODEL))[0]["request_id"])
    assert got == ids("a", 5) + [f"b{i:02d}" for i in range(10)]


def test_flush_is_bounded_while_the_store_hangs_and_the_hung_write_is_not_duplicated(
    local_store: Store, tmp_path: Path
) -> None:
    stuck = StuckStore(local_store)
    writer = CaptureWriter(stuck, MODEL, flush_timeout_s=0.5, spill_dir=tmp_path, clock=Clock())
    writer.log(features(3), np.zeros(3), model_version="1", request_ids=ids("a", 3), timestamps=T0)
    started = time.monotonic()
    stats = writer.flush()
    assert time.monotonic() - started < 2 * writer.flush_timeout_s
    assert (stats.rows_spilled, stats.rows_in_spill, stats.rows_queued) == (3, 3, 0)
    assert stats.last_error == "TimeoutError: the store did not answer within 0.5 s"

    # while that call hangs no other is made: the next flush spills at once
    writer.log(features(2), np.zeros(2), model_version="1", request_ids=ids("b", 2), timestamps=T0)
    started = time.monotonic()
    stats = writer.flush()
    assert time.monotonic() - started < writer.flush_timeout_s
    assert (stats.rows_in_spill, stats.spilled_batches, stuck.calls) == (5, 2, 1)
    assert "has not returned yet" in (stats.last_error or "")

    stuck.answer.set()  # the hung call lands its batch after all ...
    wait_for(lambda: stuck.returned == 1)
    stats = writer.close()  # ... and the retry of its spilled copy overwrites it: each row once
    got, keys = read_all(local_store, LAYOUT.capture_requests(MODEL))
    assert sorted(got["request_id"]) == ids("a", 3) + ids("b", 2) and len(keys) == 2
    assert (stats.rows_written, stats.rows_in_spill, stats.rows_dropped) == (5, 0, 0)
    assert accounted(stats) == stats.rows_logged == 5


def test_backoff_doubles_up_to_its_bound_while_the_store_fails(local_store: Store) -> None:
    flaky = FlakyStore(local_store)
    flaky.down = True
    writer = CaptureWriter(flaky, MODEL, retry_backoff_s=0.05, max_retry_backoff_s=0.2, clock=Clock())
    writer.log(features(1), [0.5], model_version="1", request_ids=["a"])
    writer.flush()  # the first failure; the flusher then retries the spill on its own, backing off
    attempts: list[float] = []
    seen = writer.stats.retries
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        if writer.stats.retries != seen:
            seen = writer.stats.retries
            attempts.append(time.monotonic())
        time.sleep(0.002)
    gaps = np.diff(attempts)
    # 0.1, 0.2, then 0.2 (the bound) each time: about 9 retries in 2 s, not hundreds
    assert 5 <= len(attempts) <= 12, attempts
    # the lower bounds are the backoff's own sleeps; the upper one is a median, so one late wake-up on
    # a busy machine does not fail it, while unbounded doubling (0.2, 0.4, 0.8) would
    assert gaps.min() > 0.08 and gaps[-3:].min() > 0.15 and float(np.median(gaps[-3:])) < 0.35
    flaky.down = False
    assert writer.close().rows_written == 1


# -- concurrency, S3, misuse --------------------------------------------------------------------


def test_eight_threads_through_an_outage_write_every_row_exactly_once(local_store: Store) -> None:
    flaky = FlakyStore(local_store)
    # close() drains for at most flush_timeout_s (then leaves the rest to the flusher, which keeps
    # at it): generous here, so that a loaded machine cannot end the drain before the read below
    writer = CaptureWriter(flaky, MODEL, flush_rows=40, flush_timeout_s=120)
    feats = features(8)
    per_thread = 150
    start = threading.Barrier(9)

    def serve(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            writer.log(feats.iloc[[t]], [0.5], model_version="1", request_ids=[f"t{t}-{i:03d}"])

    threads = [threading.Thread(target=serve, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    flaky.down = True  # an outage that ends in the middle of the traffic
    start.wait()
    for thread in threads[:4]:
        thread.join()
    wait_for(lambda: writer.stats.rows_spilled > 0)  # the flusher met the outage
    flaky.down = False
    for thread in threads[4:]:
        thread.join()
    stats = writer.close()

    got = read_all(local_store, LAYOUT.capture_requests(MODEL))[0]
    expected = sorted(f"t{t}-{i:03d}" for t in range(8) for i in range(per_thread))
    assert sorted(got["request_id"]) == expected
    assert (stats.rows_logged, stats.rows_written, stats.rows_dropped) == (1200, 1200, 0)
    assert stats.rows_spilled > 0 and stats.spilled_batches == 0


def test_round_trip_through_s3(s3_store: Store) -> None:
    feats = features(3)
    stamps = pd.DatetimeIndex(["2026-03-01 10:05", "2026-03-01 10:55", "2026-03-01 11:00"], tz="UTC")
    with CaptureWriter(s3_store, MODEL, clock=Clock()) as writer:
        writer.log(feats, [0.25, 0.5, 0.75], model_version="7", request_ids=["x", "y", "z"], timestamps=stamps)
    got, keys = read_all(s3_store, LAYOUT.capture_requests(MODEL))
    assert partitions(keys) == {"date=2026-03-01/hour=10", "date=2026-03-01/hour=11"}
    expected = feats.reset_index(drop=True).assign(
        request_id=["x", "y", "z"], event_time=stamps.as_unit("ns"), prediction=[0.25, 0.5, 0.75], model_version="7"
    )
    pd.testing.assert_frame_equal(got.sort_values("request_id").reset_index(drop=True), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"predictions": [0.1]}, "one value per row"),
        ({"request_ids": ["a"]}, "one id per row"),
        ({"request_ids": ["a", None]}, "missing ids"),
        ({"timestamps": [T0, None]}, "missing values"),
        ({"timestamps": [1.0, 2.0]}, "not numbers"),
        # text is read as validation reads it (refit.timestamps): pandas guessed month-first
        ({"timestamps": "01/02/2026 10:00"}, r"'01/02/2026 10:00' is refused \(day/month order is ambiguous"),
        ({"timestamps": ["2026-01-02T10:00Z", "soon"]}, r"'soon' is refused \(not an ISO 8601 time"),
        (  # pandas' string dtypes too, not only object columns
            {"timestamps": pd.Series(["01/02/2026 10:00"] * 2, dtype="string[pyarrow]")},
            r"'01/02/2026 10:00' is refused \(day/month order is ambiguous",
        ),
        ({"features": pd.DataFrame({"request_id": ["a", "b"]})}, "columns the writer adds"),
        ({"model_version": 3}, "model_version"),
    ],
)
def test_bad_input_is_a_value_error(local_store: Store, kwargs: dict[str, object], message: str) -> None:
    writer = CaptureWriter(local_store, MODEL, clock=Clock())
    call: dict[str, object] = {"features": features(2), "predictions": [0.1, 0.2], "model_version": "1"} | kwargs
    with pytest.raises(ValueError, match=message):
        writer.log(**call)  # type: ignore[arg-type]
    assert writer.stats.rows_logged == 0


def test_text_timestamps_with_and_without_an_offset_are_each_read_as_written(local_store: Store) -> None:
    """Given both, pandas read the naive time in the offset of the zoned one (08:00 became 06:00)."""
    writer = CaptureWriter(local_store, MODEL, clock=Clock())
    writer.log(
        features(2), [0.1, 0.2], model_version="1", request_ids=["a", "b"],
        timestamps=["2026-01-02T10:00:00+02:00", "2026-01-02 08:00"],
    )  # fmt: skip
    writer.close()
    got = read_all(local_store, LAYOUT.capture_requests(MODEL))[0].sort_values("request_id")
    assert got["event_time"].tolist() == [pd.Timestamp("2026-01-02 08:00", tz="UTC")] * 2


def test_a_closed_writer_refuses_rows_and_removes_its_empty_temp_spill(local_store: Store) -> None:
    flaky = FlakyStore(local_store)
    writer = CaptureWriter(flaky, MODEL, clock=Clock())
    flaky.down = True
    writer.log(features(1), [0.5], model_version="1")
    writer.flush()
    spill = writer.spill_path
    assert spill is not None and spill.is_dir()
    flaky.down = False
    assert writer.close().rows_written == 1
    assert not spill.parent.exists()
    with pytest.raises(ValueError, match="closed"):
        writer.log(features(1), [0.5], model_version="1")


@pytest.mark.slow  # a fresh Python process
def test_rows_still_queued_when_the_process_exits_without_close_are_written(tmp_path: Path) -> None:
    """A server that stops without ``close()``: the exit hook drains the queue into the store."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import math
        import pandas as pd
        from refit.capture import CaptureWriter
        from refit.io import LocalStore

        writer = CaptureWriter(LocalStore({str(tmp_path / "store")!r}), "churn", flush_rows=10**9,
                               flush_interval_s=math.inf, spill_dir={str(tmp_path / "spill")!r})
        ids = [f"r{{i}}" for i in range(50)]
        writer.log(pd.DataFrame({{"x": range(50)}}), [0.5] * 50, model_version="1", request_ids=ids)
        writer.flush()
        late = [f"late{{i}}" for i in range(7)]
        writer.log(pd.DataFrame({{"x": range(7)}}), [0.5] * 7, model_version="1", request_ids=late)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    store = LocalStore(tmp_path / "store")
    keys = store.list(LAYOUT.capture_requests(MODEL))
    ids = sorted(i for k in keys for i in read_frame(store, k)["request_id"])
    assert ids == sorted([f"r{i}" for i in range(50)] + [f"late{i}" for i in range(7)])


def test_one_value_of_another_type_loses_no_row_and_validation_judges_it(
    local_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Parquet holds one type per column: one request whose tenure came as the string "38" (or a
    flag as "maybe") made the whole batch unwritable, and every caller's rows in it were dropped
    (101 of 101), with a warning that blamed the store. Such a column is written as text; read
    back, validation coerces "38" losslessly and quarantines "maybe" with its rule."""
    from refit.io.layout import LAYOUT
    from refit.validation import validate_frame
    from schemas.churn import ChurnCaptureSchema

    caplog.set_level(logging.WARNING, logger="refit.capture")
    writer = CaptureWriter(local_store, MODEL, clock=Clock())
    clean = features(100).assign(customer_id=range(100))
    writer.log(clean, np.full(100, 0.4), model_version="1", request_ids=ids("ok-", 100), timestamps=T0)
    odd = features(2, seed=4).astype({"tenure_months": object, "autopay": object}).assign(customer_id=[100, 101])
    odd.loc[0, "tenure_months"] = "38"
    odd.loc[1, "autopay"] = "maybe"
    writer.log(odd, [0.4, 0.5], model_version="1", request_ids=ids("odd-", 2), timestamps=T0)
    stats = writer.close()
    assert (stats.rows_written, stats.rows_dropped, stats.last_error) == (102, 0, None)
    [warning] = [r.getMessage() for r in caplog.records if "mixed types" in r.getMessage()]
    assert "tenure_months, autopay" in warning and "failing" not in warning  # not blamed on the store

    got = read_all(local_store, LAYOUT.capture_requests(MODEL))[0]
    assert sorted(got["request_id"]) == ids("odd-", 2) + ids("ok-", 100)
    result = validate_frame(got, ChurnCaptureSchema, source="captures")
    valid = result.valid.set_index("request_id")
    assert valid.loc["odd-00000", "tenure_months"] == 38 and len(valid) == 101
    assert valid.loc[ids("ok-", 100), "tenure_months"].tolist() == clean["tenure_months"].tolist()
    [rejected] = result.quarantine["request_id"].tolist()
    assert rejected == "odd-00001" and "autopay" in result.summary.one_line()


def test_nested_values_are_written_as_arrow_nests_them() -> None:
    """Lists, dicts and arrays are "mixed" to pandas' type inference but one type to Arrow: they
    stay as they are (a column of arrays dropped its whole batch; lists became their repr)."""
    from refit.capture.rows import arrow_safe

    frame = pd.DataFrame(
        {
            "tags": [["a", "b"], ["c"], None],
            "extra": [{"k": 1}, {"k": 2}, None],
            "vector": [np.array([1.0, 2.0]), np.array([3.0]), None],
            "age": [41, "38", None],
        }
    )
    out, texted = arrow_safe(frame)
    assert texted == ["age"] and out["age"].tolist() == ["41", "38", None]
    assert out["tags"].tolist() == [["a", "b"], ["c"], None] and out["extra"].tolist()[0] == {"k": 1}
    assert out["vector"].tolist()[0].tolist() == [1.0, 2.0]


def test_captures_without_the_configs_columns_are_one_line_and_for_config_names_them(
    local_store: Store, tmp_path: Path
) -> None:
    """``CaptureWriter(store, name)`` as the README showed it writes ``event_time`` and ``label``;
    for a dataset whose columns are ``applied_at`` and ``defaulted`` the drift check and the
    retrain then ended in a KeyError traceback. It is one line saying what to use, and
    ``CaptureWriter.for_config`` writes the columns the config reads."""
    from refit.capture import read_captures
    from refit.errors import DataError
    from tests.flows.helpers import write_config

    def read(model: str) -> Any:
        return read_captures(
            local_store, model, timestamp_column="applied_at", request_id_column="request_id", target="defaulted"
        )

    plain = CaptureWriter(local_store, "loans", clock=Clock())
    plain.log(features(3), np.zeros(3), model_version="1", request_ids=ids("p-", 3), timestamps=T0)
    plain.log_labels(ids("p-", 3), [0, 1, 0])
    plain.close()
    with pytest.raises(DataError) as info:
        read("loans")
    message = str(info.value)
    assert "\n" not in message and "no column 'applied_at' (dataset.timestamp_column)" in message
    assert "event_time" in message and "CaptureWriter.for_config(store, config)" in message

    from refit.config_loader import load_config

    config = load_config(write_config(tmp_path))
    config = config.model_copy(
        update={
            "dataset": config.dataset.model_copy(
                update={"name": "loans2", "timestamp_column": "applied_at", "target": "defaulted"}
            )
        }
    )
    writer = CaptureWriter.for_config(local_store, config, clock=Clock())
    writer.log(features(3), np.zeros(3), model_version="1", request_ids=ids("c-", 3), timestamps=T0)
    writer.log_labels(ids("c-", 3), [0, 1, 0])
    writer.close()
    window = read("loans2")
    assert window.frame["applied_at"].tolist() == [T0] * 3 and window.labels["defaulted"].tolist() == [0, 1, 0]
