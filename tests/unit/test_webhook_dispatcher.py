"""The webhook's dispatcher with a stand-in for Prefect: nothing lost, nothing waits, nothing grows.

``FakePrefect`` keeps Prefect's one promise the dispatcher leans on: a second start with the
same idempotency key returns the first run. Faults are injected into a real ``LocalStore``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from deployments.webhook import PrefectDispatcher, build_app, idempotency_key
from refit.config import Settings
from refit.config_loader import load_config
from refit.errors import StoreError
from refit.io.local import LocalStore
from refit.policy import Ledger
from refit.webhook import DriftAlert, sign
from tests.flows.helpers import write_config

SECRET = "whsec-unit-dispatcher-1f2e3d"
MODEL = "churn"


class FakePrefect:
    """Creates one run per idempotency key, like Prefect; can be down or hung."""

    def __init__(self) -> None:
        self.runs: dict[str, str] = {}
        self.calls = 0
        self.down = False
        self.hang_s = 0.0
        self.lock = threading.Lock()

    def __call__(self, alert: DriftAlert) -> str:
        with self.lock:
            self.calls += 1
        if self.hang_s:
            time.sleep(self.hang_s)
        if self.down:
            raise ConnectionError("connection refused")
        with self.lock:
            return self.runs.setdefault(idempotency_key(alert), str(uuid.uuid4()))


class FaultyStore(LocalStore):
    """A real LocalStore whose writes under ``fail_prefix`` raise ``fail_times`` times."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.fail_prefix: str | None = None
        self.fail_times = 0

    def _maybe_fail(self, key: str) -> None:
        if self.fail_prefix is not None and key.startswith(self.fail_prefix) and self.fail_times > 0:
            self.fail_times -= 1
            raise StoreError(f"injected write failure: {key}")

    def put_bytes(self, key: str, data: bytes) -> str:
        self._maybe_fail(key)
        return super().put_bytes(key, data)

    def put_if_absent(self, key: str, data: bytes) -> str:
        self._maybe_fail(key)
        return super().put_if_absent(key, data)


class CountingStore(LocalStore):
    """A real LocalStore that counts the calls that read the governor's objects.

    (The champion lookup is cached for a couple of seconds, so its reads depend on the clock;
    they are not the ledger's and are left out.)
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads = 0

    def _count(self, key: str) -> None:
        if key.startswith("governor/"):
            self.reads += 1

    def get(self, key: str) -> Any:
        self._count(key)
        return super().get(key)

    def list(self, prefix: str = "") -> list[str]:
        self._count(prefix)
        return super().list(prefix)

    def exists(self, key: str) -> bool:
        self._count(key)
        return super().exists(key)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path, drift={"cooldown_hours": 6, "daily_cap": 3})


def make_dispatcher(store: LocalStore, config_path: Path, prefect: FakePrefect, **kwargs: Any) -> PrefectDispatcher:
    return PrefectDispatcher(store, load_config(config_path), str(config_path), start_run=prefect, **kwargs)


def alert(alert_id: str) -> DriftAlert:
    return DriftAlert(alert_id=alert_id, model=MODEL, reason="unit drift", drift_share=0.4)


def post(client: TestClient, alert_id: str) -> Any:
    body = json.dumps({"alert_id": alert_id, "model": MODEL, "drift_share": 0.4}).encode()
    return client.post("/alerts/drift", content=body, headers={"X-Refit-Signature": sign(body, SECRET)})


def test_a_failed_outbox_write_then_a_retry_starts_exactly_one_run(tmp_path: Path, config_path: Path) -> None:
    """Item 4: the trigger is recorded only once the outbox holds the alert."""
    store = FaultyStore(tmp_path / "store")
    prefect = FakePrefect()
    app, dispatcher = build_app(
        store, load_config(config_path), str(config_path), Settings(webhook_secret=SecretStr(SECRET)), start_run=prefect
    )
    store.fail_prefix, store.fail_times = f"webhook/{MODEL}/outbox/", 1
    with TestClient(app, raise_server_exceptions=False) as client:
        first = post(client, "a-1")
        assert first.status_code == 500, first.text
        assert Ledger(store, MODEL).entries() == []  # no trigger recorded behind a missing outbox entry
        retry = post(client, "a-1")
        assert retry.status_code == 202, retry.text
        assert retry.json()["status"] == "accepted"
        again = post(client, "a-1")
    assert again.status_code == 200 and again.json()["status"] == "suppressed"
    assert list(prefect.runs) == [idempotency_key(alert("a-1"))]
    assert retry.json()["flow_run_id"] == prefect.runs[idempotency_key(alert("a-1"))]
    assert store.list(f"webhook/{MODEL}/outbox/") == []
    assert dispatcher.retry_pending() == []
    assert len(prefect.runs) == 1


def test_a_failed_ledger_write_leaves_the_alert_in_the_outbox_and_the_retry_starts_one_run(
    tmp_path: Path, config_path: Path
) -> None:
    store = FaultyStore(tmp_path / "store")
    prefect = FakePrefect()
    dispatcher = make_dispatcher(store, config_path, prefect)
    store.fail_prefix, store.fail_times = f"governor/{MODEL}/ledger/", 1
    with pytest.raises(StoreError, match="injected"):
        dispatcher(alert("b-1"))
    assert len(store.list(f"webhook/{MODEL}/outbox/")) == 1  # kept: the decision was never recorded
    assert prefect.runs == {}
    started = dispatcher.retry_pending()  # the background task decides it and starts its run
    assert started == [prefect.runs[idempotency_key(alert("b-1"))]]
    # The sender's own retry finds the evidence acted on, and Prefect is not asked again.
    assert dispatcher(alert("b-1")).status == "suppressed"
    assert len(prefect.runs) == 1 and store.list(f"webhook/{MODEL}/outbox/") == []


def test_prefect_down_queues_the_trigger_and_the_retry_task_starts_it(tmp_path: Path, config_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    prefect = FakePrefect()
    prefect.down = True
    dispatcher = make_dispatcher(store, config_path, prefect)
    queued = dispatcher(alert("c-1"))
    assert queued.status == "queued" and "ConnectionError" in (queued.reason or "")
    # While Prefect is known to be down, requests do not call it at all.
    assert [dispatcher(alert(f"c-{i}")).status for i in range(2, 6)] == ["suppressed"] * 4
    assert prefect.calls == 1
    assert dispatcher.retry_pending() == []  # still down: kept
    assert len(store.list(f"webhook/{MODEL}/outbox/")) == 1
    prefect.down = False
    assert dispatcher.retry_pending() == [prefect.runs[idempotency_key(alert("c-1"))]]
    assert store.list(f"webhook/{MODEL}/outbox/") == [] and len(prefect.runs) == 1


def test_a_hung_prefect_holds_a_request_for_the_deadline_only(tmp_path: Path, config_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    prefect = FakePrefect()
    prefect.hang_s = 3.0
    dispatcher = make_dispatcher(store, config_path, prefect, prefect_deadline_s=0.3)
    # Waiting on the hung call (or on a lock it holds) costs about its 3 s; half of that is the
    # line, so a busy machine's scheduling delay cannot fail this (latency is a benchmark's target).
    waited_s = prefect.hang_s / 2
    start = time.monotonic()
    assert dispatcher(alert("d-1")).status == "queued"
    assert time.monotonic() - start < waited_s  # gave up at the 0.3 s deadline
    start = time.monotonic()
    assert dispatcher(alert("d-2")).status == "suppressed"
    assert time.monotonic() - start < waited_s  # no lock held by the hung call
    dispatcher.stop()


def test_store_reads_per_alert_do_not_grow_with_the_ledger(tmp_path: Path, config_path: Path) -> None:
    """Item 5: an alert costs the same store reads on a ledger of 20 entries or of 420."""
    store = CountingStore(tmp_path / "store")
    dispatcher = make_dispatcher(store, config_path, FakePrefect())

    def reads_of_ten(first: int) -> int:
        before = store.reads
        for i in range(first, first + 10):
            dispatcher(alert(f"e-{i}"))
        return store.reads - before

    reads_of_ten(0)
    early = reads_of_ten(10)
    for i in range(20, 420):
        dispatcher(alert(f"e-{i}"))
    late = reads_of_ten(420)
    assert len(store.list(f"governor/{MODEL}/ledger/")) == 430
    assert late <= early, (early, late)


def test_an_alerts_window_end_is_the_retrains_as_of(tmp_path: Path, config_path: Path) -> None:
    from datetime import UTC, datetime

    from refit.webhook import PayloadError, parse_alerts

    end = datetime(2012, 8, 1, tzinfo=UTC)
    body = {"alert_id": "w-1", "model": MODEL, "drift_share": 0.4, "window": {"end": "2012-08-01T00:00:00Z"}}
    [generic] = parse_alerts(json.dumps(body))
    assert generic.window_end == end
    [flat] = parse_alerts(json.dumps({"alert_id": "w-2", "model": MODEL, "window_end": "2012-08-01T02:00:00+02:00"}))
    assert flat.window_end == end
    manager = {
        "version": "4",
        "groupKey": "g",
        "status": "firing",
        "alerts": [
            {"status": "firing", "labels": {"model": MODEL}, "annotations": {"window_end": "2012-08-01T00:00:00Z"}}
        ],
    }
    [am] = parse_alerts(json.dumps(manager))
    assert am.window_end == end
    with pytest.raises(PayloadError, match="window end 'yesterday' is not an ISO 8601 time"):
        parse_alerts(json.dumps(body | {"window": {"end": "yesterday"}}))

    prefect = FakePrefect()
    store = LocalStore(tmp_path / "store")
    dispatcher = make_dispatcher(store, config_path, prefect)
    assert dispatcher(generic).status == "accepted"
    # the retrain runs as of the alert's window, and the governor recorded that window, not the wall clock
    assert dispatcher.run_parameters(generic)["as_of"] == "2012-08-01T00:00:00+00:00"
    assert Ledger(store, MODEL).entries()[-1].signal.window_end == end
    # and decided on that window's clock, as the drift check decides: not 2026's wall clock, which
    # would put a 2012 replay's checks in this trigger's cooldown
    assert Ledger(store, MODEL).entries()[-1].decision.at == end
    # an alert that names no window: the retrain runs as of now
    assert dispatcher.run_parameters(alert("plain"))["as_of"] is None


def test_an_alert_dated_in_the_future_is_refused_and_cannot_move_the_governors_clock(
    tmp_path: Path, config_path: Path
) -> None:
    """A signed alert whose window ends in 2099 was decided at 2099: every later alert, and the
    scheduled checks, were then in its cooldown, and alerts dated 2100-01-01, -02, ... each passed
    the cooldown and the daily cap. The receiver refuses a window more than an hour ahead of its
    clock (422, one line), and the dispatcher never decides later than now."""
    from datetime import UTC, datetime, timedelta

    store = LocalStore(tmp_path / "store")
    prefect = FakePrefect()
    app, dispatcher = build_app(
        store, load_config(config_path), str(config_path), Settings(webhook_secret=SecretStr(SECRET)), start_run=prefect
    )

    def post_dated(alert_id: str, end: datetime) -> Any:
        body = json.dumps({"alert_id": alert_id, "model": MODEL, "drift_share": 0.4, "window_end": end.isoformat()})
        return client.post("/alerts/drift", content=body.encode(), headers={"X-Refit-Signature": sign(body, SECRET)})

    with TestClient(app, raise_server_exceptions=False) as client:
        poison = post_dated("poison", datetime(2099, 1, 1, tzinfo=UTC))
        assert poison.status_code == 422, poison.text
        assert "window_end 2099-01-01T00:00:00+00:00 is after this receiver's clock" in poison.json()["detail"]
        for day in range(3):
            assert post_dated(f"future-{day}", datetime(2100, 1, 1 + day, tzinfo=UTC)).status_code == 422
        assert Ledger(store, MODEL).entries() == [] and prefect.calls == 0  # nothing recorded, nothing run
        # a window that closes within the hour (a monitor's clock a little ahead) is taken
        soon = post_dated("closes-soon", datetime.now(UTC) + timedelta(minutes=20))
        assert soon.status_code == 202, soon.text
        # and decided on its window's clock, at most an hour ahead: the next genuine alert meets
        # the ordinary cooldown
        [entry] = Ledger(store, MODEL).entries()
        assert entry.decision.at <= datetime.now(UTC) + timedelta(hours=1)
        assert post(client, "genuine").json()["reason"].startswith("cooldown")

    # the dispatcher on its own (the outbox's retries call it too): the governor caps the date
    later = DriftAlert(alert_id="direct", model=MODEL, window_end=datetime(2099, 1, 1, tzinfo=UTC))
    other = make_dispatcher(LocalStore(tmp_path / "other"), config_path, FakePrefect())
    other(later)
    assert Ledger(other.store, MODEL).entries()[-1].decision.at <= datetime.now(UTC) + timedelta(hours=1)


def test_an_object_in_the_outbox_that_is_not_an_alert_does_not_stop_the_others(
    tmp_path: Path, config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One unreadable outbox object (a person's note, a truncated file) ended every pass before
    the entries after it: their runs never started."""
    store = LocalStore(tmp_path / "store")
    prefect = FakePrefect()
    prefect.down = True
    dispatcher = make_dispatcher(store, config_path, prefect)
    assert dispatcher(alert("z-1")).status == "queued"
    store.put_bytes(f"webhook/{MODEL}/outbox/a-note.json", b"not json")
    store.put_bytes(f"webhook/{MODEL}/outbox/a-stub.json", b'{"alert": {}}')
    prefect.down = False
    dispatcher._failed_at = None
    with caplog.at_level("WARNING", logger="refit.webhook"):
        assert dispatcher.retry_pending() == [prefect.runs[idempotency_key(alert("z-1"))]]
        assert dispatcher.retry_pending() == []
    # kept for a person to look at, and said once each
    assert store.list(f"webhook/{MODEL}/outbox/") == [
        f"webhook/{MODEL}/outbox/a-note.json",
        f"webhook/{MODEL}/outbox/a-stub.json",
    ]
    assert sum("is not a pending alert" in r.getMessage() for r in caplog.records) == 2


def test_an_alert_id_reused_for_a_later_window_starts_a_run_of_its_own(tmp_path: Path, config_path: Path) -> None:
    """Prefect's idempotency key was the alert id alone: a sender reusing it for a later window
    (a rule name as id) had the governor record a trigger, got the earlier finished run back and
    "accepted", and no retrain ran."""
    from datetime import UTC, datetime, timedelta, timezone

    prefect = FakePrefect()
    dispatcher = make_dispatcher(LocalStore(tmp_path / "store"), config_path, prefect)
    first_end = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)

    def dated(end: datetime) -> DriftAlert:
        return DriftAlert(alert_id="rule-drift", model=MODEL, drift_share=0.4, window_end=end)

    first = dispatcher(dated(first_end))
    again = dispatcher(dated(first_end))  # a redelivery: the same run, not a second
    later = dispatcher(dated(first_end + timedelta(days=1)))  # past the cooldown
    assert (first.status, again.status, later.status) == ("accepted", "suppressed", "accepted")
    assert later.flow_run_id != first.flow_run_id and len(prefect.runs) == 2
    # queued while Prefect is down, each window keeps its own outbox entry (one name overwrote the other)
    down = FakePrefect()
    down.down = True
    queued = make_dispatcher(LocalStore(tmp_path / "down"), config_path, down)
    assert [queued(dated(first_end + timedelta(days=d))).status for d in (0, 1)] == ["queued", "queued"]
    assert len(queued.store.list(f"webhook/{MODEL}/outbox/")) == 2
    down.down, queued._failed_at = False, None
    assert len(queued.retry_pending()) == 2 and len(down.runs) == 2
    assert idempotency_key(dated(first_end)) == idempotency_key(
        dated(first_end.astimezone(timezone(timedelta(hours=2))))
    )
