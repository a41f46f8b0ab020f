"""The registry on both backends (a local folder, and S3 = moto over real HTTP), and races
between threads against S3's conditional writes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pytest

from refit.errors import ConflictError, RegistryError
from refit.io import Store
from refit.registry import Registry


class Died(BaseException):
    pass


def run_together(n: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` in ``n`` threads released at once; results or exceptions, in order."""
    barrier = threading.Barrier(n)

    def wrapped(i: int) -> Any:
        barrier.wait()
        try:
            return target(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(wrapped, range(n)))


def test_register_promote_resolve_rollback(store: Store) -> None:
    reg = Registry(store)
    sample = pd.DataFrame({"x": [1.0, 2.0, 4.0], "plan": ["a", "b", "a"]})
    v1 = reg.register("churn", artifact_files={"model.bin": b"one"}, metrics={"auc": 0.8}, reference_sample=sample)
    v2 = reg.register("churn", artifact_uri="s3://elsewhere/model-2", metrics={"auc": 0.9}, author="bob")
    assert (v1.version, v2.version) == (1, 2)
    assert v1.artifact_uri == store.uri_for("registry/churn/versions/1/artifact")
    assert reg.read_artifact("churn", 1, "model.bin") == b"one"

    reg.promote("churn", 1, expected_current=None, reason="first", author="alice")
    reg.promote("churn", 2, expected_current=1, reason="better", author="bob")
    assert reg.resolve("churn").version == 2 and reg.resolve("churn@champion").author == "bob"
    with pytest.raises(ConflictError, match="champion of churn moved from 1 to 2 by another writer"):
        reg.promote("churn", 1, expected_current=1)

    back = reg.rollback("churn", reason="prod auc fell", author="oncall")
    assert (back.from_version, back.to_version) == (2, 1)
    assert reg.aliases("churn") == {"champion": 1}
    assert [(e.seq, e.from_version, e.to_version, e.author, e.reason) for e in reg.history("churn")] == [
        (1, None, 1, "alice", "first"),
        (2, 1, 2, "bob", "better"),
        (3, 2, 1, "oncall", "prod auc fell"),
    ]
    pd.testing.assert_frame_equal(reg.reference("churn", 1), sample)
    assert reg.diff("churn", 1, 2).overall[0].delta == pytest.approx(0.1)
    assert reg.list_models() == ["churn"]


def test_crashes_leave_a_consistent_registry(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry(store)
    reg.register("churn", artifact_uri="s3://m/1")
    reg.promote("churn", 1, expected_current=None)
    original = store.put_if_absent

    def dies_on(fragment: str) -> Callable[[str, bytes], str]:
        def put(key: str, data: bytes) -> str:
            if fragment in key:
                raise Died(key)
            return original(key, data)

        return put

    monkeypatch.setattr(store, "put_if_absent", dies_on("/version.json"))
    with pytest.raises(Died):
        reg.register("churn", artifact_files={"m.bin": b"half"})
    monkeypatch.setattr(store, "put_if_absent", dies_on("/history/"))
    v3 = reg.register("churn", artifact_files={"m.bin": b"whole"})
    with pytest.raises(Died):
        reg.promote("churn", v3.version, expected_current=1)
    monkeypatch.setattr(store, "put_if_absent", original)

    assert [v.version for v in reg.list_versions("churn")] == [1, 3]
    assert reg.resolve("churn").version == 1
    with pytest.raises(RegistryError, match="no version 2"):
        reg.promote("churn", 2)
    reg.promote("churn", 3, expected_current=1)
    assert reg.resolve("churn").version == 3 and reg.read_artifact("churn", 3, "m.bin") == b"whole"


@pytest.mark.usefixtures("moto_atomic_objects")
def test_threads_promoting_at_once_on_s3_one_wins(s3_store: Store) -> None:
    reg = Registry(s3_store)
    for i in range(5):
        reg.register("churn", artifact_uri=f"s3://m/{i}")
    reg.promote("churn", 1, expected_current=None)

    results = run_together(4, lambda i: reg.promote("churn", i + 2, expected_current=1, author=f"t{i + 2}"))
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, ConflictError)]
    assert len(winners) == 1 and len(losers) == 3, results
    won = winners[0].to_version
    assert all(
        str(e) == f"champion of churn moved from 1 to {won} by another writer; re-read and retry" for e in losers
    )
    assert reg.aliases("churn") == {"champion": won}
    assert [(e.seq, e.from_version, e.to_version, e.author) for e in reg.history("churn")][1:] == [
        (2, 1, won, f"t{won}")
    ]


@pytest.mark.usefixtures("moto_atomic_objects")
def test_threads_registering_at_once_on_s3_get_distinct_numbers(s3_store: Store) -> None:
    reg = Registry(s3_store)
    results = run_together(
        4, lambda i: reg.register("churn", artifact_files={"m": str(i).encode()}, description=str(i))
    )
    assert sorted(r.version for r in results) == [1, 2, 3, 4]
    for r in results:
        assert reg.read_artifact("churn", r.version, "m") == r.description.encode()


def test_folder_markers_from_the_s3_console_are_not_listed(s3_store: Store, s3_client: Any, s3_bucket: str) -> None:
    """The S3 console's "Create folder" writes a zero-byte object ``prefix/``: listed, its read
    raised InvalidKeyError and stopped the registry's history (and so rollback) and the webhook's
    outbox pass."""
    reg = Registry(s3_store)
    reg.register("churn", artifact_uri="s3://m/1")
    reg.promote("churn", 1, expected_current=None, reason="first")
    for marker in ("registry/churn/history/", "webhook/churn/outbox/", "odd//key.json"):
        s3_client.put_object(Bucket=s3_bucket, Key=f"prefix/{marker}", Body=b"")
    assert s3_store.list("webhook/churn/outbox/") == []
    assert all(not k.endswith("/") and "//" not in k for k in s3_store.list())
    assert [(e.seq, e.to_version, e.reason) for e in reg.history("churn")] == [(1, 1, "first")]
