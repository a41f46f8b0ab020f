"""The drift-alert receiver behind a real uvicorn server, spoken to over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from refit.config import Settings
from refit.errors import ConfigError
from refit.webhook import DispatchResult, DispatchUnavailable, DriftAlert, create_app, sign
from refit.webhook.server import server_config
from tests.conftest import free_port

pytestmark = pytest.mark.e2e

SECRET = "whsec-e2e-7f3a9c1d5e"
TOKEN = "tok-e2e-0b8d6f2a4c"
MiB = 1 << 20


class RecordingDispatcher:
    """Starts a 'run' per new alert_id, suppresses repeats; can play Prefect being down."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[DriftAlert] = []
        self.runs: dict[str, str] = {}
        self.unavailable = False
        self.broken = False

    def __call__(self, alert: DriftAlert) -> DispatchResult:
        with self.lock:
            self.seen.append(alert)
            if self.unavailable:
                raise DispatchUnavailable("Prefect API unreachable; alert recorded for retry", retry_after_s=17)
            if self.broken:
                raise RuntimeError("bug in the dispatcher")
            if alert.alert_id in self.runs:
                return DispatchResult("suppressed", reason=f"duplicate of run {self.runs[alert.alert_id]}")
            run_id = str(uuid.uuid4())
            self.runs[alert.alert_id] = run_id
            return DispatchResult("accepted", flow_run_id=run_id)


DISPATCHER = RecordingDispatcher()


@contextlib.contextmanager
def serving(app: Any, **config: Any) -> Iterator[int]:
    """``app`` behind a real uvicorn server (``server_config``: the receiver's bounds) on a free
    port, in a thread; yields the port."""
    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, log_level="warning", lifespan="off", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    app = create_app(DISPATCHER, settings=Settings(webhook_secret=SecretStr(SECRET), webhook_token=SecretStr(TOKEN)))
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    with DISPATCHER.lock:
        DISPATCHER.seen.clear()
        DISPATCHER.runs.clear()
        DISPATCHER.unavailable = DISPATCHER.broken = False
    return DISPATCHER


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as c:
        yield c


def _alert(alert_id: str | None = None, **extra: Any) -> bytes:
    data = {"alert_id": alert_id or f"drift-{uuid.uuid4().hex[:8]}", "model": "churn", "drift_share": 0.4, **extra}
    return json.dumps(data).encode()


def _post(client: httpx.Client, body: bytes, timestamp: int | None = None, **headers: str) -> httpx.Response:
    headers = {"X-Refit-Signature": sign(body, SECRET, timestamp), "Content-Type": "application/json", **headers}
    return client.post("/alerts/drift", content=body, headers=headers)


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_signed_alert_starts_a_run_then_repeats_are_suppressed(
    client: httpx.Client, dispatcher: RecordingDispatcher
) -> None:
    body = _alert("drift-001")
    first = _post(client, body)
    assert first.status_code == 202, first.text
    answer = first.json()
    assert answer["status"] == "accepted" and answer["alert_id"] == "drift-001"
    assert str(uuid.UUID(answer["flow_run_id"])) == dispatcher.runs["drift-001"]

    again = _post(client, body)
    assert again.status_code == 200
    assert again.json()["status"] == "suppressed"
    assert again.json()["reason"] == f"duplicate of run {answer['flow_run_id']}"
    assert "flow_run_id" not in again.json()
    assert [a.alert_id for a in dispatcher.seen] == ["drift-001", "drift-001"]
    assert dispatcher.seen[0].drift_share == 0.4 and dispatcher.seen[0].model == "churn"


def test_bearer_token_is_accepted_instead_of_a_signature(client: httpx.Client, dispatcher: RecordingDispatcher) -> None:
    response = client.post("/alerts/drift", content=_alert("tok-1"), headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 202 and response.json()["alert_id"] == "tok-1"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Refit-Signature": "t=1,v1=" + "0" * 64},
        {"X-Refit-Signature": "garbage"},
        {"X-Refit-Signature": sign(b"other body", SECRET)},
        {"X-Refit-Signature": sign(b"x", "wrong-secret")},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
    ],
)
def test_unauthenticated_requests_get_401_and_leak_nothing(
    client: httpx.Client, dispatcher: RecordingDispatcher, headers: dict[str, str]
) -> None:
    response = client.post("/alerts/drift", content=_alert(), headers=headers)
    assert response.status_code == 401
    assert response.json()["status"] == "unauthorized" and response.json()["detail"]
    raw = response.text + json.dumps(dict(response.headers))
    assert SECRET not in raw and TOKEN not in raw
    assert dispatcher.seen == []


def test_stale_signature_gets_401(client: httpx.Client, dispatcher: RecordingDispatcher) -> None:
    body = _alert()
    response = _post(client, body, timestamp=int(time.time()) - 301)
    assert response.status_code == 401
    assert "300 s window" in response.json()["detail"]
    assert _post(client, body, timestamp=int(time.time()) - 290).status_code == 202  # still inside
    assert len(dispatcher.seen) == 1


def test_body_over_1_mib_gets_413_and_never_reaches_the_dispatcher(
    client: httpx.Client, dispatcher: RecordingDispatcher
) -> None:
    big = b"{" + b" " * (MiB - 1)  # 1 MiB + 1 bytes, signed, so only the size can refuse it
    assert len(big + b"}") == MiB + 1
    response = _post(client, big + b"}")
    assert response.status_code == 413
    assert response.json()["status"] == "too_large"
    assert dispatcher.seen == []


def test_chunked_body_without_content_length_is_cut_off(client: httpx.Client, dispatcher: RecordingDispatcher) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"alert_id": "big", "model": "churn", "pad": "'
        for _ in range(20):
            yield b"x" * 65536  # 1.25 MiB in all
        yield b'"}'

    headers = {"X-Refit-Signature": sign(b"irrelevant", SECRET)}
    response = client.post("/alerts/drift", content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert dispatcher.seen == []


def test_a_small_head_and_a_large_body_in_one_write_are_served(base_url: str, dispatcher: RecordingDispatcher) -> None:
    """The head bound counts the head only, however the bytes are cut into reads."""
    import socket

    body = _alert("one-write")
    body = body[:-1] + b" " * (200_000 - len(body)) + b"}"
    head = (
        "POST /alerts/drift HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Refit-Signature: {sign(body, SECRET)}\r\nConnection: close\r\n\r\n"
    ).encode()
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        assert sock.recv(64).startswith(b"HTTP/1.1 202 ")
    assert [a.alert_id for a in dispatcher.seen] == ["one-write"]


def test_body_of_exactly_1_mib_is_read(client: httpx.Client, dispatcher: RecordingDispatcher) -> None:
    body = _alert("exactly-1mib")
    body = body[:-1] + b" " * (MiB - len(body)) + b"}"
    assert len(body) == MiB
    assert _post(client, body).status_code == 202
    assert [a.alert_id for a in dispatcher.seen] == ["exactly-1mib"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"alert_id": "a", "model": ', "body is not valid JSON"),
        (b'{"model": "churn"}', "alert_id: Field required"),
        (b'{"alert_id": "a", "model": "../../etc"}', "invalid model name"),
        (b'{"alerts": [], "version": "4", "groupKey": "g", "status": "firing"}', "alerts: List should have"),
    ],
)
def test_malformed_signed_body_gets_422(
    client: httpx.Client, dispatcher: RecordingDispatcher, body: bytes, detail: str
) -> None:
    response = _post(client, body)
    assert response.status_code == 422
    assert response.json()["status"] == "invalid" and detail in response.json()["detail"]
    assert dispatcher.seen == []


def test_deeply_nested_signed_body_gets_422_not_500(client: httpx.Client, dispatcher: RecordingDispatcher) -> None:
    for depth in (40, 100_000):  # past the depth limit, and past Python's recursion limit
        body = b'{"alert_id": "deep", "model": "churn", "window": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"
        response = _post(client, body)
        assert response.status_code == 422, (depth, response.text)
        assert "nested more than 32 levels" in response.json()["detail"]
    assert dispatcher.seen == []


def test_alertmanager_notification_firing_then_resolved(client: httpx.Client, dispatcher: RecordingDispatcher) -> None:
    alert = {
        "status": "firing",
        "labels": {"alertname": "FeatureDrift", "model": "churn"},
        "annotations": {"summary": "drift share 0.42", "drift_share": "0.42"},
        "startsAt": "2026-11-03T08:15:30Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "c2a3f0e1b4d5a697",
    }
    notification = {
        "version": "4",
        "groupKey": '{}:{alertname="FeatureDrift", model="churn"}',
        "status": "firing",
        "receiver": "refit",
        "groupLabels": {"alertname": "FeatureDrift"},
        "commonLabels": {"alertname": "FeatureDrift", "model": "churn"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": [alert],
    }
    fired = _post(client, json.dumps(notification).encode())
    assert fired.status_code == 202 and fired.json()["alert_id"].startswith("am-")
    assert dispatcher.seen[0].reason == "drift share 0.42"

    notification["status"] = alert["status"] = "resolved"
    alert["endsAt"] = "2026-11-03T09:00:00Z"
    resolved = _post(client, json.dumps(notification).encode())
    assert resolved.status_code == 200 and resolved.json()["status"] == "ignored"
    assert len(dispatcher.seen) == 1  # the resolved notification was acknowledged, not dispatched


def test_dispatcher_unavailable_gives_503_with_retry_after(
    client: httpx.Client, dispatcher: RecordingDispatcher
) -> None:
    dispatcher.unavailable = True
    response = _post(client, _alert("while-down"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "17"
    assert response.json() == {
        "status": "unavailable",
        "detail": "Prefect API unreachable; alert recorded for retry",
        "alert_id": "while-down",
        "retry_after_s": 17,
    }
    dispatcher.unavailable = False
    assert _post(client, _alert("while-down")).status_code == 202  # the sender's retry goes through


def test_dispatcher_bug_gives_500_without_details(
    client: httpx.Client, dispatcher: RecordingDispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher.broken = True
    with caplog.at_level(logging.ERROR, logger="refit.webhook"):
        response = _post(client, _alert("bug"))
    assert response.status_code == 500
    assert "bug in the dispatcher" not in response.text
    assert any("the dispatcher failed" in r.getMessage() for r in caplog.records)


# --- in-process: what a real server cannot be made to do ------------------------------------


def _call_asgi(app: Any, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, bytes]:
    """Drive the ASGI app directly, so the body can disagree with its Content-Length."""
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/alerts/drift",
        "raw_path": b"/alerts/drift",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_lying_content_length_does_not_bypass_the_limit() -> None:
    seen: list[DriftAlert] = []
    app = create_app(lambda a: seen.append(a) or DispatchResult("ignored"), secrets=SECRET)  # type: ignore[func-returns-value]
    chunks = [b"{" + b" " * 65535] * 16 + [b"}"]  # 1 MiB + 1 bytes
    headers = [(b"content-length", b"10"), (b"x-refit-signature", sign(b"".join(chunks), SECRET).encode())]
    status, body = _call_asgi(app, headers, chunks)
    assert status == 413 and json.loads(body)["status"] == "too_large"
    assert seen == []
    # The same bytes under the limit are read in full (and reach the dispatcher's parser).
    payload = _alert("small")
    headers = [(b"x-refit-signature", sign(payload, SECRET).encode())]
    status, _ = _call_asgi(app, headers, [payload[:10], payload[10:]])
    assert status == 200 and [a.alert_id for a in seen] == ["small"]


def test_max_body_bytes_and_clock_are_injected() -> None:
    app = create_app(lambda a: DispatchResult("ignored"), secrets=SECRET, max_body_bytes=100, clock=lambda: 1000.0)
    payload = _alert("t")
    status, _ = _call_asgi(app, [(b"x-refit-signature", sign(payload, SECRET, 1000).encode())], [payload])
    assert status == 200
    status, _ = _call_asgi(app, [(b"x-refit-signature", sign(payload, SECRET, 1301).encode())], [payload])
    assert status == 401
    status, _ = _call_asgi(app, [], [b"x" * 101])
    assert status == 413


def test_async_dispatchers_run_on_the_loop() -> None:
    class AsyncDispatcher:
        async def __call__(self, alert: DriftAlert) -> DispatchResult:
            await asyncio.sleep(0)
            return DispatchResult("accepted", flow_run_id=f"run-{alert.alert_id}")

    async def async_fn(alert: DriftAlert) -> DispatchResult:
        return DispatchResult("suppressed", reason="cooldown")

    payload = _alert("async")
    headers = [(b"x-refit-signature", sign(payload, SECRET).encode())]
    status, body = _call_asgi(create_app(AsyncDispatcher(), secrets=SECRET), headers, [payload])
    assert (status, json.loads(body)["flow_run_id"]) == (202, "run-async")
    status, body = _call_asgi(create_app(async_fn, secrets=SECRET), headers, [payload])
    assert (status, json.loads(body)["reason"]) == (200, "cooldown")


def test_no_secret_and_no_token_is_refused_unless_insecure_dev(caplog: pytest.LogCaptureFixture) -> None:
    noop = lambda a: DispatchResult("ignored")  # noqa: E731
    with pytest.raises(ConfigError, match="REFIT_WEBHOOK_SECRET or REFIT_WEBHOOK_TOKEN"):
        create_app(noop)
    with pytest.raises(ConfigError, match="REFIT_WEBHOOK_SECRET or REFIT_WEBHOOK_TOKEN"):
        create_app(noop, settings=Settings(webhook_secret=None, webhook_token=None))
    with pytest.raises(ConfigError, match="empty"):
        create_app(noop, secrets="")
    for blank in (" ", "\t\n ", SecretStr("   ")):
        with pytest.raises(ConfigError, match="empty or only whitespace"):
            create_app(noop, secrets=blank)
        with pytest.raises(ConfigError, match="empty or only whitespace"):
            create_app(noop, settings=Settings(webhook_secret=SecretStr(SECRET), webhook_token=SecretStr("  ")))
    with caplog.at_level(logging.WARNING, logger="refit.webhook"):
        app = create_app(noop, insecure_dev=True)
    assert any("INSECURE" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    status, _ = _call_asgi(app, [], [_alert("open")])
    assert status == 200


def test_a_head_or_body_trickled_past_its_deadline_gets_408_and_the_connection_closes() -> None:
    """A sender trickling a head or a body held its connection (and up to 1 MiB) for as long as it
    liked, before any authentication could refuse it; many such senders tied up the receiver."""
    import socket

    seen: list[DriftAlert] = []
    app = create_app(lambda a: seen.append(a) or DispatchResult("ignored"), secrets=SECRET, body_deadline_s=1.0)  # type: ignore[func-returns-value]

    def answer(sock: socket.socket) -> bytes:
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data  # the server closed the connection

    with serving(app, head_deadline_s=1.0) as port:
        # a connection that sends nothing at all is closed too (it held a slot of the cap forever)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            started = time.monotonic()
            assert answer(sock).startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 5
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /alerts/drift HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
            started = time.monotonic()
            reply = answer(sock)
            assert reply.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 5
        body = _alert("slow-body")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /alerts/drift HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nX-Refit-Signature: {sign(body, SECRET)}\r\n\r\n".encode()
                + body[:10]
            )
            reply = answer(sock)
            assert reply.startswith(b"HTTP/1.1 408 ") and b'"status":"timeout"' in reply
        assert seen == []
        # a request that arrives in time is served as before
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert _post(client, _alert("in-time")).status_code == 200
        assert [a.alert_id for a in seen] == ["in-time"]
    assert server_config(app, "127.0.0.1", 0).limit_concurrency == 1024
