"""Shared fixtures: a real S3-protocol server on loopback, stores on both backends."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

# Tests never talk to AWS and never send telemetry.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's ThreadedMotoServer: a real S3 API over HTTP on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_client(s3_endpoint: str):  # type: ignore[no-untyped-def]
    from refit.io.s3 import make_s3_client

    return make_s3_client(endpoint_url=s3_endpoint, region="us-east-1")


@pytest.fixture
def s3_bucket(s3_client) -> str:  # type: ignore[no-untyped-def]
    """A fresh bucket per test (valid S3 name)."""
    name = f"refit-test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(s3_client, s3_bucket):  # type: ignore[no-untyped-def]
    from refit.io.s3 import S3Store

    return S3Store(f"s3://{s3_bucket}/prefix", s3_client)


@pytest.fixture
def local_store(tmp_path):  # type: ignore[no-untyped-def]
    from refit.io.local import LocalStore

    return LocalStore(tmp_path / "store")


@pytest.fixture(params=["local", "s3"])
def store(request):  # type: ignore[no-untyped-def]
    """Both backends, so every store-facing test runs against each."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def moto_atomic_objects(monkeypatch):  # type: ignore[no-untyped-def]
    """Serialise moto's object requests, so conditional writes are atomic as on real S3.

    moto 5's ``put_object`` checks ``If-Match`` / ``If-None-Match`` and then writes, with no
    lock in between, and an overwrite closes the old object's buffer while a concurrent GET may
    still read it (a 500). Under thread contention that loses updates *in moto*, not in refit.
    Race tests that want to check refit's side of compare-and-swap (headers sent, 412 mapped
    to PreconditionFailedError, retry loops) against a server as atomic as S3 use this.
    The server is in-process, so patching its handler class takes effect immediately.
    """
    import threading

    from moto.s3.responses import S3Response

    lock = threading.Lock()
    original = S3Response.key_response

    def key_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(S3Response, "key_response", key_response)
