"""The retrain governor: rules of ``decide`` and the append-only ledger under concurrency."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from refit.config import DriftConfig
from refit.policy import Decision, DriftSignal, Governor, Ledger, LedgerEntry, decide

T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)
MODEL = "churn"


def signal(
    hour: int,
    drift: bool = True,
    champion: str | None = "v1",
    source: str = "drift-check",
    alert_id: str | None = None,
    decay: bool = False,
) -> DriftSignal:
    """The signal of the hour-long window starting ``hour`` hours after T0."""
    start = T0 + timedelta(hours=hour)
    return DriftSignal(
        model=MODEL,
        source=source,  # type: ignore[arg-type]
        window_start=start,
        window_end=start + timedelta(hours=1),
        champion_version=champion,
        drift_detected=drift,
        decay_detected=decay,
        alert_id=alert_id,
    )


def run(cfg: DriftConfig, signals: list[tuple[DriftSignal, datetime]]) -> list[Decision]:
    """Feed signals through ``decide`` with an in-memory ledger."""
    ledger: list[LedgerEntry] = []
    decisions = []
    for sig, now in signals:
        d = decide(sig, ledger, now, cfg)
        ledger.append(LedgerEntry(seq=len(ledger), signal=sig, decision=d))
        decisions.append(d)
    return decisions


def test_no_drift_is_none() -> None:
    d = decide(signal(0, drift=False), [], T0, DriftConfig())
    assert (d.action, d.reason) == ("none", "no-drift")
    assert not d.trigger


def test_drift_triggers() -> None:
    d = decide(signal(0), [], T0 + timedelta(hours=1), DriftConfig())
    assert (d.action, d.reason) == ("trigger", "drift")
    assert d.trigger
    assert d.fingerprint == signal(0).fingerprint
    assert d.at == T0 + timedelta(hours=1)


def test_a_decision_is_never_dated_more_than_an_hour_past_the_clock(local_store) -> None:  # type: ignore[no-untyped-def]
    """The governor decides on the data's clock. A date years ahead (a signed alert's window, a
    mistyped --as-of 2062) started a cooldown until then for every later signal, and each of a
    series of future dates passed the cooldown and the daily cap: it is capped at the clock + 1 h."""
    cfg = DriftConfig(cooldown_hours=6, daily_cap=5)
    gov = Governor(local_store, MODEL, cfg, clock=lambda: T0)
    first = gov.submit(signal(0), now=datetime(2099, 1, 1, tzinfo=UTC))
    assert first.decision.trigger and first.decision.at == T0 + timedelta(hours=1)
    # the dates after it are capped too: none passes the cooldown
    later = [gov.submit(signal(i), now=datetime(2100, 1, i, tzinfo=UTC)).decision for i in range(1, 4)]
    assert [d.reason for d in later] == ["cooldown"] * 3
    # and a check 7 hours on, on the real clock, is no longer in a cooldown until 2099
    gov.clock = lambda: T0 + timedelta(hours=7)
    assert gov.submit(signal(9), now=T0 + timedelta(hours=7)).decision.trigger


def test_decay_alone_triggers() -> None:
    d = decide(signal(0, drift=False, decay=True), [], T0, DriftConfig())
    assert d.action == "trigger"


def test_ten_signals_inside_the_cooldown_trigger_once(local_store) -> None:  # type: ignore[no-untyped-def]
    cfg = DriftConfig(cooldown_hours=6, daily_cap=50)
    gov = Governor(local_store, MODEL, cfg)
    entries = [gov.submit(signal(i), now=T0 + timedelta(minutes=30 * i + 1)) for i in range(10)]
    actions = [(e.decision.action, e.decision.reason) for e in entries]
    assert actions[0] == ("trigger", "drift")
    assert actions[1:] == [("suppress", "cooldown")] * 9
    assert [e.seq for e in gov.history()] == list(range(10))
    # After the cooldown the next drifting window triggers again.
    later = gov.submit(signal(20), now=T0 + timedelta(hours=6, minutes=2))
    assert later.decision.action == "trigger"


def test_back_filled_windows_are_held_to_a_later_triggers_cooldown_and_say_so() -> None:
    """Checking old windows after a later trigger (a back-fill, out of order) never retrains
    faster than the cooldown allows, and the reason says the trigger came after this window."""
    cfg = DriftConfig(cooldown_hours=6, daily_cap=50)
    late = T0 + timedelta(days=10)
    first, *backfill = run(cfg, [(signal(240), late)] + [(signal(24 * d), T0 + timedelta(days=d)) for d in range(5)])
    assert first.trigger and [d.reason for d in backfill] == ["cooldown"] * 5
    assert f"last trigger at {late.isoformat()}, after this window's time {T0.isoformat()}" in backfill[0].detail
    # in order (a replay), each window decides on its own clock
    in_order = run(cfg, [(signal(24 * d), T0 + timedelta(days=d)) for d in range(5)])
    assert all(d.trigger for d in in_order)


def test_same_window_and_champion_never_trigger_twice() -> None:
    cfg = DriftConfig(cooldown_hours=0, daily_cap=50)
    first, again = run(cfg, [(signal(0), T0), (signal(0), T0 + timedelta(hours=30))])
    assert first.action == "trigger"
    assert (again.action, again.reason) == ("suppress", "duplicate")
    # An alert about the same window and champion is the same evidence.
    alert = signal(0, source="alert", alert_id="pd-123")
    assert alert.fingerprint == signal(0).fingerprint
    ledger = [LedgerEntry(seq=0, signal=signal(0), decision=first)]
    assert decide(alert, ledger, T0 + timedelta(days=2), cfg).reason == "duplicate"
    # A new champion on the same window is new evidence.
    assert decide(signal(0, champion="v2"), ledger, T0 + timedelta(days=2), cfg).action == "trigger"


def test_k_of_n() -> None:
    cfg = DriftConfig(k_of_n=(2, 3), cooldown_hours=0, daily_cap=50)
    decisions = run(
        cfg,
        [
            (signal(0, drift=True), T0 + timedelta(hours=1)),
            (signal(1, drift=False), T0 + timedelta(hours=2)),
            (signal(2, drift=True), T0 + timedelta(hours=3)),  # 2 of [0, 1, 2]
            (signal(3, drift=False), T0 + timedelta(hours=4)),
            (signal(4, drift=False), T0 + timedelta(hours=5)),
            (signal(5, drift=True), T0 + timedelta(hours=6)),  # 1 of [3, 4, 5]
        ],
    )
    assert [(d.action, d.reason) for d in decisions] == [
        ("suppress", "k-of-n"),
        ("none", "no-drift"),
        ("trigger", "drift"),
        ("none", "no-drift"),
        ("none", "no-drift"),
        ("suppress", "k-of-n"),
    ]
    assert "1 of the last 3" in decisions[-1].detail


def test_k_of_n_counts_a_window_once_and_ignores_later_windows() -> None:
    cfg = DriftConfig(k_of_n=(2, 2), cooldown_hours=0)
    # The same drifting window reported twice (check + alert) is one window, not two.
    decisions = run(cfg, [(signal(0), T0), (signal(0, source="alert", alert_id="a1"), T0)])
    assert [d.reason for d in decisions] == ["k-of-n", "k-of-n"]
    # A late signal for an older window looks back from its own window, not from the newest.
    ledger = [
        LedgerEntry(seq=0, signal=signal(5), decision=decisions[0]),
        LedgerEntry(seq=1, signal=signal(6), decision=decisions[0]),
    ]
    assert decide(signal(1), ledger, T0, cfg).reason == "k-of-n"
    assert decide(signal(7), ledger, T0, cfg).action == "trigger"


def test_daily_cap_counts_triggers_per_utc_day() -> None:
    cfg = DriftConfig(cooldown_hours=0, daily_cap=2)
    day = datetime(2026, 10, 5, tzinfo=UTC)
    decisions = run(
        cfg,
        [
            (signal(0), day + timedelta(hours=1)),
            (signal(1), day + timedelta(hours=2)),
            (signal(2), day + timedelta(hours=23, minutes=59)),
            (signal(3), day + timedelta(days=1, minutes=1)),  # a new UTC day
        ],
    )
    assert [(d.action, d.reason) for d in decisions] == [
        ("trigger", "drift"),
        ("trigger", "drift"),
        ("suppress", "daily-cap"),
        ("trigger", "drift"),
    ]


def test_daily_cap_uses_utc_not_local_time() -> None:
    cfg = DriftConfig(cooldown_hours=0, daily_cap=1)
    first = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
    # 01:30 on the 6th in UTC+2 is 23:30 on the 5th in UTC: the same UTC day.
    second = datetime(2026, 10, 6, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    decisions = run(cfg, [(signal(0), first), (signal(1), second)])
    assert [(d.action, d.reason) for d in decisions] == [("trigger", "drift"), ("suppress", "daily-cap")]
    assert decisions[1].at == datetime(2026, 10, 5, 23, 30, tzinfo=UTC)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(signal(0), [], datetime(2026, 10, 5), DriftConfig())


def test_k_of_n_must_be_sane() -> None:
    with pytest.raises(ValueError, match="k_of_n"):
        DriftConfig(k_of_n=(3, 2))


def test_every_decision_is_in_the_ledger_with_its_signal(local_store) -> None:  # type: ignore[no-untyped-def]
    gov = Governor(local_store, MODEL, DriftConfig(cooldown_hours=6))
    gov.submit(signal(0, drift=False), now=T0)
    gov.submit(signal(1), now=T0 + timedelta(hours=2))
    gov.submit(signal(2, source="alert", alert_id="pd-9"), now=T0 + timedelta(hours=3))
    keys = local_store.list("governor/churn/ledger/")
    assert keys == [f"governor/churn/ledger/{i:012d}.json" for i in range(3)]
    raw = json.loads(local_store.get_bytes(keys[2]))
    assert raw["signal"]["source"] == "alert"
    assert raw["signal"]["alert_id"] == "pd-9"
    assert raw["decision"]["reason"] == "cooldown"
    # A fresh reader (another process) sees the same ledger.
    history = Ledger(local_store, MODEL).entries()
    assert [e.decision.action for e in history] == ["none", "trigger", "suppress"]
    assert history[1].signal == signal(1)


def test_ledger_round_trips_on_both_stores(store) -> None:  # type: ignore[no-untyped-def]
    gov = Governor(store, MODEL, DriftConfig())
    entry = gov.submit(signal(0), now=T0)
    assert entry.seq == 0 and entry.decision.trigger
    assert Ledger(store, MODEL).entries() == [entry]
    assert Governor(store, MODEL, DriftConfig()).submit(signal(0), now=T0).decision.reason == "duplicate"


def test_wrong_model_is_refused(local_store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="model"):
        Governor(local_store, "other", DriftConfig()).submit(signal(0), now=T0)


def test_concurrent_appends_lose_nothing(local_store) -> None:  # type: ignore[no-untyped-def]
    threads, per_thread = 8, 12
    decision = decide(signal(0, drift=False), [], T0, DriftConfig())
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        ledger = Ledger(local_store, MODEL)  # each thread its own reader, like separate workers
        try:
            barrier.wait()
            for i in range(per_thread):
                sig = signal(0, drift=False, source="alert", alert_id=f"{t}-{i}")
                ledger.append(sig, decision)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    entries = Ledger(local_store, MODEL).entries()
    assert [e.seq for e in entries] == list(range(threads * per_thread))
    ids = sorted(e.signal.alert_id for e in entries if e.signal.alert_id)
    assert ids == sorted(f"{t}-{i}" for t in range(threads) for i in range(per_thread))


def test_concurrent_signals_trigger_once(local_store) -> None:  # type: ignore[no-untyped-def]
    """Eight workers submit drifting windows at the same moment: one trigger, the rest cooldown."""
    cfg = DriftConfig(cooldown_hours=6, daily_cap=50)
    threads = 8
    barrier = threading.Barrier(threads)
    results: list[LedgerEntry] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        gov = Governor(local_store, MODEL, cfg)
        barrier.wait()
        entry = gov.submit(signal(i), now=T0 + timedelta(hours=12))
        with lock:
            results.append(entry)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(e.decision.action for e in results) == ["suppress"] * 7 + ["trigger"]
    entries = Ledger(local_store, MODEL).entries()
    assert len(entries) == threads
    assert sum(e.decision.trigger for e in entries) == 1
    assert {e.decision.reason for e in entries if not e.decision.trigger} == {"cooldown"}


class _CountingStore:
    """A real LocalStore behind a wrapper that counts what deciding reads from it."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.gets = 0
        self.lists = 0
        self.keys_listed = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def get(self, key: str):  # type: ignore[no-untyped-def]
        self.gets += 1
        return self.inner.get(key)

    def get_bytes(self, key: str) -> bytes:
        return self.get(key).data  # type: ignore[no-any-return]

    def list(self, prefix: str = "") -> list[str]:
        keys = self.inner.list(prefix)
        self.lists += 1
        self.keys_listed += len(keys)
        return keys  # type: ignore[no-any-return]

    def reads(self) -> int:
        """Objects fetched plus keys listed: what a listing of n keys costs grows with n."""
        return self.gets + self.keys_listed


def test_store_reads_per_decision_do_not_grow_with_the_ledger(local_store) -> None:  # type: ignore[no-untyped-def]
    store = _CountingStore(local_store)
    cfg = DriftConfig(cooldown_hours=6, daily_cap=50)
    gov = Governor(store, MODEL, cfg)  # type: ignore[arg-type]

    def reads_of_ten(first: int) -> int:
        before = store.reads()
        for i in range(first, first + 10):
            gov.submit(signal(0, source="alert", alert_id=f"a-{i}"), now=T0 + timedelta(hours=2))
        return store.reads() - before

    reads_of_ten(0)
    early = reads_of_ten(10)
    for i in range(20, 500):
        gov.submit(signal(0, source="alert", alert_id=f"a-{i}"), now=T0 + timedelta(hours=2))
    late = reads_of_ten(500)
    assert len(local_store.list("governor/churn/ledger/")) == 510
    assert late <= early, (early, late)
    assert late <= 10  # at most one read per decision, whatever the length


def test_a_new_governor_starts_from_the_checkpoint_not_a_listing(local_store) -> None:  # type: ignore[no-untyped-def]
    cfg = DriftConfig(cooldown_hours=6, daily_cap=50)
    gov = Governor(local_store, MODEL, cfg, checkpoint_every=10)
    for i in range(25):
        gov.submit(signal(i % 3, source="alert", alert_id=f"a-{i}"), now=T0 + timedelta(hours=4, minutes=i))
    assert local_store.exists("governor/churn/index.json")
    store = _CountingStore(local_store)
    fresh = Governor(store, MODEL, cfg)  # type: ignore[arg-type]
    decision = fresh.submit(signal(1, source="alert", alert_id="late"), now=T0 + timedelta(hours=5))
    assert store.lists == 0  # the checkpoint (entries 0..19), then entries 20..24 one by one
    assert store.gets == 1 + 5 + 1
    assert (decision.seq, decision.decision.reason) == (25, "cooldown")  # the trigger (entry 0) is known
    replay = decide(signal(1), Ledger(local_store, MODEL).entries()[:25], T0 + timedelta(hours=5), cfg)
    assert replay.reason == decision.decision.reason and replay.detail == decision.decision.detail
    again = fresh.submit(signal(0, source="alert", alert_id="again"), now=T0 + timedelta(hours=5))
    assert again.decision.detail == "this window and champion already triggered (entry 0)"


def test_a_failing_before_trigger_records_nothing(local_store) -> None:  # type: ignore[no-untyped-def]
    gov = Governor(local_store, MODEL, DriftConfig())

    def outbox_down(decision: Decision) -> None:
        assert decision.trigger
        raise OSError("outbox write failed")

    with pytest.raises(OSError, match="outbox"):
        gov.submit(signal(0), now=T0, before_trigger=outbox_down)
    assert Ledger(local_store, MODEL).entries() == []
    seen: list[Decision] = []
    assert gov.submit(signal(0), now=T0, before_trigger=seen.append).decision.trigger
    assert len(seen) == 1
    assert gov.submit(signal(0), now=T0, before_trigger=seen.append).decision.reason == "duplicate"
    assert len(seen) == 1  # only triggers call it


def test_two_governors_on_one_store_see_each_others_decisions(local_store) -> None:  # type: ignore[no-untyped-def]
    cfg = DriftConfig(cooldown_hours=6)
    first, second = Governor(local_store, MODEL, cfg), Governor(local_store, MODEL, cfg)
    assert second.submit(signal(0, drift=False), now=T0).seq == 0  # second has now read the (empty) ledger
    assert first.submit(signal(1), now=T0 + timedelta(hours=2)).decision.trigger
    late = second.submit(signal(2), now=T0 + timedelta(hours=3))
    assert (late.seq, late.decision.reason) == (2, "cooldown")
    assert second.trigger_for(signal(1).fingerprint) == first.history()[1]


def test_one_governor_shared_by_threads_groups_writes_and_triggers_once(local_store) -> None:  # type: ignore[no-untyped-def]
    """Signals arriving while a write is in flight are decided in order and recorded together."""
    cfg = DriftConfig(cooldown_hours=6, daily_cap=50)
    gov = Governor(local_store, MODEL, cfg)
    threads, per_thread = 16, 25
    barrier = threading.Barrier(threads)
    results: list[LedgerEntry] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            entry = gov.submit(signal(i % 4, source="alert", alert_id=f"{t}-{i}"), now=T0 + timedelta(hours=5))
            with lock:
                results.append(entry)

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(e.seq for e in results) == list(range(threads * per_thread))
    assert sum(e.decision.trigger for e in results) == 1
    objects = local_store.list("governor/churn/ledger/")
    assert len(objects) < threads * per_thread  # grouped
    stored = Ledger(local_store, MODEL).entries()
    assert stored == sorted(results, key=lambda e: e.seq)
    assert Ledger(local_store, MODEL).next_seq() == threads * per_thread
    # Another process reads the grouped objects one by one and decides on all of them.
    other = Governor(local_store, MODEL, cfg)
    late = other.submit(signal(9), now=T0 + timedelta(hours=6))
    assert (late.seq, late.decision.reason) == (threads * per_thread, "cooldown")


def test_a_failed_group_write_fails_every_signal_in_it_and_records_none(local_store) -> None:  # type: ignore[no-untyped-def]
    from refit.errors import StoreError

    class Broken(type(local_store)):  # type: ignore[misc]
        def put_if_absent(self, key: str, data: bytes) -> str:
            raise StoreError("disk full")

    gov = Governor(Broken(local_store.root), MODEL, DriftConfig())
    with pytest.raises(StoreError, match="disk full"):
        gov.submit(signal(0), now=T0)
    assert Ledger(local_store, MODEL).entries() == []
    assert Governor(local_store, MODEL, DriftConfig()).submit(signal(0), now=T0).decision.trigger  # nothing was lost
