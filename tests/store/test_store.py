"""Store behaviour on both backends (a local folder, and S3 = moto over real HTTP).

Most tests take the ``store`` fixture, so each runs against ``LocalStore`` and ``S3Store``.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from refit.errors import (
    AccessDeniedError,
    DataError,
    NoSuchBucketError,
    NotFoundError,
    PreconditionFailedError,
    StoreError,
)
from refit.io import LocalStore, S3Store, Store, open_store
from refit.io.frames import frame_bytes, read_frame, write_frame
from refit.io.s3 import make_s3_client

# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_client(s3_endpoint: str):  # type: ignore[no-untyped-def]
    """One client for this module (overrides conftest's per-test one: building a boto3 client
    costs ~0.1 s, and every S3 test here gets its own bucket anyway). Tests that change the
    client (event hooks, credentials, environment) build their own."""
    return make_s3_client(endpoint_url=s3_endpoint, region="us-east-1")


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, f"not a one-line message: {message!r}"
    return message


def temp_files(root: Path) -> list[str]:
    """In-flight temp files anywhere under a local store root."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp"))


def run_threads(n: int, target: Callable[[int], object]) -> list[object]:
    """Run ``target(i)`` in ``n`` threads released together; return results (or exceptions)."""
    barrier = threading.Barrier(n)

    def wrapped(i: int) -> object:
        barrier.wait()
        try:
            return target(i)
        except Exception as exc:  # collected and asserted on by the caller
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(wrapped, range(n)))


def atomic_if_s3(store: Store, request: pytest.FixtureRequest) -> None:
    """S3 race tests run against moto with object requests serialised (see conftest)."""
    if isinstance(store, S3Store):
        request.getfixturevalue("moto_atomic_objects")


# --- round trips, versions, exists, delete, uri_for -----------------------------------------


def test_put_get_round_trip(store: Store) -> None:
    payload = bytes(range(256)) * 10
    version = store.put_bytes("data/raw.bin", payload)
    blob = store.get("data/raw.bin")
    assert blob.data == payload
    assert blob.version == version
    assert store.get_bytes("data/raw.bin") == payload


def test_empty_payload_round_trips(store: Store) -> None:
    version = store.put_bytes("empty", b"")
    assert store.get("empty").data == b""
    assert store.get("empty").version == version
    assert store.exists("empty")


def test_overwrite_changes_the_content_and_version(store: Store) -> None:
    v1 = store.put_bytes("k", b"first")
    v2 = store.put_bytes("k", b"second")
    assert v1 != v2
    blob = store.get("k")
    assert (blob.data, blob.version) == (b"second", v2)
    # writing the first content again gives its version back: versions name contents
    assert store.put_bytes("k", b"first") == v1


def test_version_is_a_content_digest(store: Store) -> None:
    version = store.put_bytes("k", b"hello")
    if isinstance(store, LocalStore):
        assert version == hashlib.sha256(b"hello").hexdigest()[:32]
    else:  # S3's ETag of a single-part upload: the quoted MD5
        assert version == f'"{hashlib.md5(b"hello").hexdigest()}"'


def test_exists(store: Store) -> None:
    assert store.exists("a/b.csv") is False
    store.put_bytes("a/b.csv", b"x")
    assert store.exists("a/b.csv") is True
    assert store.exists("a") is False  # a "folder" is not an object
    assert store.exists("a/b") is False  # a partial name is not an object


def test_delete(store: Store) -> None:
    store.put_bytes("d/x", b"1")
    store.put_bytes("d/y", b"2")
    store.delete("d/x")
    assert store.exists("d/x") is False
    assert store.list("d/") == ["d/y"]
    with pytest.raises(NotFoundError):
        store.get("d/x")
    store.delete("d/x")  # deleting it again is fine
    store.delete("never/existed")  # so is deleting a key that never existed
    assert store.get_bytes("d/y") == b"2"


def test_get_missing_key_names_the_uri(store: Store) -> None:
    with pytest.raises(NotFoundError) as info:
        store.get("no/such/key.csv")
    assert store.uri_for("no/such/key.csv") in one_line(info.value)
    assert not isinstance(info.value, NoSuchBucketError)
    with pytest.raises(NotFoundError):
        store.get_bytes("no/such/key.csv")


def test_get_of_a_folder_is_not_found(store: Store) -> None:
    store.put_bytes("folder/file", b"x")
    with pytest.raises(NotFoundError):
        store.get("folder")


def test_uri_for(store: Store, tmp_path: Path) -> None:
    if isinstance(store, LocalStore):
        root = (tmp_path / "store").resolve()
        assert store.uri == str(root)
        assert store.uri_for("a/b.csv") == f"{root}/a/b.csv"
        assert store.local_path("a/b.csv") == root / "a" / "b.csv"
    else:
        assert isinstance(store, S3Store)
        assert store.uri == f"s3://{store.bucket}/prefix"
        assert store.uri_for("a/b.csv") == f"s3://{store.bucket}/prefix/a/b.csv"


def test_uri_for_store_roots() -> None:
    assert LocalStore("/").uri_for("etc/x") == "/etc/x"
    assert S3Store("s3://bkt", client=None).uri_for("k") == "s3://bkt/k"
    assert S3Store("s3://bkt/", client=None).uri_for("k") == "s3://bkt/k"
    assert S3Store("s3://bkt/p/q/", client=None).uri_for("k") == "s3://bkt/p/q/k"


# --- list and glob ----------------------------------------------------------------------------

KEYS = [
    "data.csv",
    "data/a.csv",
    "data/b.parquet",
    "data/sub/c.csv",
    "data/sub/deep/d.csv",
    "database/e.csv",
    "other/f.csv",
    "z",
]


@pytest.fixture
def filled(store: Store) -> Store:
    for key in reversed(KEYS):  # written out of order: list() must sort
        store.put_bytes(key, key.encode())
    return store


def test_list_everything_sorted(filled: Store) -> None:
    assert filled.list() == KEYS
    assert filled.list("") == KEYS


LIST_CASES = [
    ("data/", ["data/a.csv", "data/b.parquet", "data/sub/c.csv", "data/sub/deep/d.csv"]),
    # a prefix is a string prefix, not a folder: partial names match
    ("data", ["data.csv", "data/a.csv", "data/b.parquet", "data/sub/c.csv", "data/sub/deep/d.csv", "database/e.csv"]),
    ("dat", ["data.csv", "data/a.csv", "data/b.parquet", "data/sub/c.csv", "data/sub/deep/d.csv", "database/e.csv"]),
    ("data/s", ["data/sub/c.csv", "data/sub/deep/d.csv"]),
    ("data/sub/", ["data/sub/c.csv", "data/sub/deep/d.csv"]),
    ("data/sub/deep/", ["data/sub/deep/d.csv"]),
    ("data/a", ["data/a.csv"]),
    ("data/a.csv", ["data/a.csv"]),
    ("other/", ["other/f.csv"]),
    ("z", ["z"]),
    ("missing/", []),
    ("data/zzz", []),
    ("zz", []),
]


def test_list_prefix(filled: Store) -> None:
    # one store filled once, many prefixes (a parametrised test would refill S3 each time)
    got = {prefix: filled.list(prefix) for prefix, _ in LIST_CASES}
    assert got == dict(LIST_CASES)


def test_list_of_an_unused_store_is_empty(store: Store, tmp_path: Path) -> None:
    assert store.list() == []
    assert store.list("data/") == []
    if isinstance(store, LocalStore):
        assert not (tmp_path / "store").exists()  # listing does not create the root


def test_s3_list_stays_inside_the_store_prefix(s3_store: S3Store, s3_client, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3_client.put_object(Bucket=s3_bucket, Key="outside.csv", Body=b"x")
    s3_client.put_object(Bucket=s3_bucket, Key="prefix2/sibling.csv", Body=b"x")
    s3_client.put_object(Bucket=s3_bucket, Key="prefixed.csv", Body=b"x")
    s3_store.put_bytes("inside.csv", b"x")
    assert s3_store.list() == ["inside.csv"]
    assert s3_store.glob("*.csv") == ["inside.csv"]
    assert s3_client.get_object(Bucket=s3_bucket, Key="prefix/inside.csv")["Body"].read() == b"x"


def test_s3_list_paginates(s3_endpoint: str, s3_bucket: str) -> None:
    s3_client = make_s3_client(endpoint_url=s3_endpoint, region="us-east-1")  # hooked below
    store = S3Store(f"s3://{s3_bucket}", s3_client)  # no prefix: the bucket root
    pages: list[int] = []

    def small_pages(params: dict, **kwargs: object) -> None:  # type: ignore[type-arg]
        params["MaxKeys"] = 2  # S3's page is 1000 keys; 2 makes a few keys span pages
        pages.append(1)

    s3_client.meta.events.register("provide-client-params.s3.ListObjectsV2", small_pages)
    keys = [f"k/{i:02d}" for i in range(7)]
    for key in reversed(keys):
        store.put_bytes(key, b"")
    store.put_bytes("kk", b"")
    assert store.list("k/") == keys
    assert len(pages) == 4


def test_local_list_hides_temp_files_and_locks(local_store: LocalStore) -> None:
    local_store.put_bytes("data/a.csv", b"a")
    local_store.put_if_unchanged("data/a.csv", b"b", local_store.get("data/a.csv").version)
    root = local_store.root
    assert (root / ".locks").is_dir() and any((root / ".locks").iterdir())
    # in-flight writes, as _write_temp names them
    (root / "data" / ".a.csv.k2j3h4.tmp").write_bytes(b"partial")
    (root / ".top.csv.x9.tmp").write_bytes(b"partial")
    assert local_store.list() == ["data/a.csv"]
    assert local_store.list("data/") == ["data/a.csv"]
    assert local_store.list(".l") == []
    assert local_store.list(".locks/") == []
    assert local_store.glob("**") == ["data/a.csv"]
    assert local_store.glob("data/*") == ["data/a.csv"]


GLOB_CASES = [
    ("data/*.csv", ["data/a.csv"]),  # '*' does not cross '/'
    ("data/*", ["data/a.csv", "data/b.parquet"]),
    ("data/**", ["data/a.csv", "data/b.parquet", "data/sub/c.csv", "data/sub/deep/d.csv"]),
    ("data/**.csv", ["data/a.csv", "data/sub/c.csv", "data/sub/deep/d.csv"]),
    ("data/**/*.csv", ["data/a.csv", "data/sub/c.csv", "data/sub/deep/d.csv"]),
    ("data/*/*.csv", ["data/sub/c.csv"]),
    ("**/*.csv", ["data.csv", "data/a.csv", "data/sub/c.csv", "data/sub/deep/d.csv", "database/e.csv", "other/f.csv"]),
    ("*.csv", ["data.csv"]),
    ("dat*", ["data.csv"]),
    ("data*/*.csv", ["data/a.csv", "database/e.csv"]),
    ("*/*.csv", ["data/a.csv", "database/e.csv", "other/f.csv"]),
    ("data/?.csv", ["data/a.csv"]),
    ("data/[ab].*", ["data/a.csv", "data/b.parquet"]),
    ("data/[!a]*", ["data/b.parquet"]),
    ("*", ["data.csv", "z"]),
    ("**", KEYS),
    ("nothing/*", []),
    # no wildcard: an exact key, present or not
    ("data/a.csv", ["data/a.csv"]),
    ("data/zz.csv", []),
    ("data", []),
]


def test_glob(filled: Store) -> None:
    got = {pattern: filled.glob(pattern) for pattern, _ in GLOB_CASES}
    assert got == dict(GLOB_CASES)


# --- errors --------------------------------------------------------------------------------


@pytest.fixture
def missing_bucket_store(s3_client) -> S3Store:  # type: ignore[no-untyped-def]
    return S3Store(f"s3://refit-missing-{uuid.uuid4().hex[:12]}/p", s3_client)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s: s.get("k"), id="get"),
        pytest.param(lambda s: s.put_bytes("k", b"x"), id="put_bytes"),
        pytest.param(lambda s: s.put_if_absent("k", b"x"), id="put_if_absent"),
        pytest.param(lambda s: s.put_if_unchanged("k", b"x", '"abc"'), id="put_if_unchanged"),
        pytest.param(lambda s: s.list(), id="list"),
        pytest.param(lambda s: s.list("data/"), id="list-folder-prefix"),
        pytest.param(lambda s: s.exists("k"), id="exists"),
        pytest.param(lambda s: s.delete("k"), id="delete"),
        pytest.param(lambda s: s.glob("*.csv"), id="glob"),
    ],
)
def test_s3_missing_bucket(missing_bucket_store: S3Store, call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NoSuchBucketError) as info:
        call(missing_bucket_store)
    assert f"s3://{missing_bucket_store.bucket}" in one_line(info.value)
    assert "no such bucket" in str(info.value)


def test_s3_exists_is_false_for_a_missing_key_in_an_existing_bucket(s3_store: S3Store) -> None:
    assert s3_store.exists("nope") is False


@pytest.fixture
def denied_s3_store(s3_endpoint: str, s3_client, s3_bucket: str, monkeypatch):  # type: ignore[no-untyped-def]
    """A store whose credentials are a real IAM user with no policy, with moto enforcing auth.

    moto does not check credentials by default; ``INITIAL_NO_AUTH_ACTION_COUNT = 0`` turns
    IAM enforcement on for the in-process server (restored by monkeypatch afterwards).
    """
    import boto3
    import moto.settings
    from botocore.config import Config

    s3_client.put_object(Bucket=s3_bucket, Key="prefix/k", Body=b"secret")
    iam = boto3.client("iam", endpoint_url=s3_endpoint, region_name="us-east-1")
    user = f"nobody-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    client = boto3.session.Session(
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        region_name="us-east-1",
    ).client("s3", endpoint_url=s3_endpoint, config=Config(retries={"mode": "standard"}))
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    return S3Store(f"s3://{s3_bucket}/prefix", client)


DENIED_CALLS = {
    "get": lambda s: s.get("k"),
    "put": lambda s: s.put_bytes("k", b"overwritten"),
    "put-if-absent": lambda s: s.put_if_absent("new", b"x"),
    "put-if-unchanged": lambda s: s.put_if_unchanged("k", b"x", '"abc"'),
    "list": lambda s: s.list(),
    "head": lambda s: s.exists("k"),
    "delete": lambda s: s.delete("k"),
}


def test_s3_access_denied_from_a_real_403(  # type: ignore[no-untyped-def]
    denied_s3_store: S3Store, s3_client, s3_bucket: str, monkeypatch
) -> None:
    messages = {}
    for action, call in DENIED_CALLS.items():
        with pytest.raises(AccessDeniedError) as info:
            call(denied_s3_store)
        messages[action] = one_line(info.value)
    for action, message in messages.items():
        assert message.startswith(f"access denied: {action} s3://{s3_bucket}/prefix"), message
    # and nothing changed: auth off again, the object is still there, unmodified
    import moto.settings

    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    assert s3_client.get_object(Bucket=s3_bucket, Key="prefix/k")["Body"].read() == b"secret"


def _client_error(code: str, status: int, message: str = "msg") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchBucket", 404, NoSuchBucketError),
        ("NoSuchKey", 404, NotFoundError),
        ("404", 404, NotFoundError),
        ("AccessDenied", 403, AccessDeniedError),
        ("403", 403, AccessDeniedError),
        ("InvalidAccessKeyId", 403, AccessDeniedError),
        ("SignatureDoesNotMatch", 403, AccessDeniedError),
        ("PreconditionFailed", 412, PreconditionFailedError),
        ("ConditionalRequestConflict", 409, PreconditionFailedError),
        ("412", 412, PreconditionFailedError),
        ("OperationAborted", 409, StoreError),  # a 409 that is not a lost condition
        ("SlowDown", 503, StoreError),
        ("InternalError", 500, StoreError),
    ],
)
def test_s3_error_mapping(code: str, status: int, expected: type) -> None:
    """Hand-built ClientErrors: mapping only (real 404/403/412 are covered against moto)."""
    store = S3Store("s3://bkt/p", client=None)
    err = store._error(_client_error(code, status, "line one\nline two"), "a/b", "put")
    assert type(err) is expected
    assert "s3://bkt/p/a/b" in one_line(err)


def test_s3_error_mapping_keeps_listing_prefixes() -> None:
    """Listing prefixes like ``data/`` are not keys: mapping them must not raise InvalidKeyError."""
    store = S3Store("s3://bkt/p", client=None)
    err = store._error(_client_error("AccessDenied", 403), "data/", "list")
    assert isinstance(err, AccessDeniedError)
    assert "s3://bkt/p/data/" in str(err)


def test_s3_unreachable_maps_to_store_error() -> None:
    from botocore.exceptions import EndpointConnectionError

    store = S3Store("s3://bkt", client=None)
    err = store._error(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "k", "get")
    assert type(err) is StoreError
    assert one_line(err).startswith("S3 unreachable on get s3://bkt/k")


# --- conditional writes ----------------------------------------------------------------------


def test_put_if_absent(store: Store) -> None:
    version = store.put_if_absent("lease", b"first")
    assert store.get("lease").version == version
    with pytest.raises(PreconditionFailedError) as info:
        store.put_if_absent("lease", b"second")
    assert store.uri_for("lease") in one_line(info.value)
    assert store.get_bytes("lease") == b"first"
    # after a delete it can be created again
    store.delete("lease")
    store.put_if_absent("lease", b"third")
    assert store.get_bytes("lease") == b"third"


def test_put_if_absent_loses_to_a_plain_put(store: Store) -> None:
    store.put_bytes("k", b"plain")
    with pytest.raises(PreconditionFailedError):
        store.put_if_absent("k", b"conditional")
    assert store.get_bytes("k") == b"plain"


def test_put_if_unchanged(store: Store) -> None:
    v1 = store.put_bytes("k", b"one")
    v2 = store.put_if_unchanged("k", b"two", v1)
    assert v2 != v1
    assert store.get("k").data == b"two" and store.get("k").version == v2
    # stale version: refused, content untouched
    with pytest.raises(PreconditionFailedError) as info:
        store.put_if_unchanged("k", b"three", v1)
    assert store.uri_for("k") in one_line(info.value)
    assert store.get("k").data == b"two"
    # the current version works again
    v3 = store.put_if_unchanged("k", b"three", v2)
    assert store.get("k").version == v3


def test_put_if_unchanged_after_delete(store: Store) -> None:
    v1 = store.put_bytes("k", b"one")
    store.delete("k")
    with pytest.raises(PreconditionFailedError) as info:
        store.put_if_unchanged("k", b"two", v1)
    assert store.uri_for("k") in one_line(info.value)
    assert store.exists("k") is False


def test_put_if_unchanged_on_a_key_that_never_existed(store: Store) -> None:
    with pytest.raises(PreconditionFailedError):
        store.put_if_unchanged("never", b"x", "whatever")
    assert store.exists("never") is False


def test_put_if_unchanged_with_a_bogus_version(store: Store) -> None:
    store.put_bytes("k", b"one")
    with pytest.raises(PreconditionFailedError):
        store.put_if_unchanged("k", b"two", '"0123456789abcdef0123456789abcdef"')
    assert store.get_bytes("k") == b"one"


def test_moto_honours_conditional_headers(s3_client, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    """What the S3Store relies on, asserted on the raw client against moto."""
    from botocore.exceptions import ClientError

    def code(**kwargs: object) -> tuple[str, int]:
        with pytest.raises(ClientError) as info:
            s3_client.put_object(Bucket=s3_bucket, Key="k", Body=b"x", **kwargs)
        resp = info.value.response
        return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]

    assert code(IfMatch='"abc"') == ("NoSuchKey", 404)  # IfMatch on a missing key: 404
    etag = s3_client.put_object(Bucket=s3_bucket, Key="k", Body=b"v1", IfNoneMatch="*")["ETag"]
    assert code(IfNoneMatch="*") == ("PreconditionFailed", 412)
    assert code(IfMatch='"0000"') == ("PreconditionFailed", 412)
    etag2 = s3_client.put_object(Bucket=s3_bucket, Key="k", Body=b"v2", IfMatch=etag)["ETag"]
    assert etag2 != etag
    assert code(IfMatch=etag) == ("PreconditionFailed", 412)
    assert s3_client.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"v2"


# --- races ---------------------------------------------------------------------------------

N_THREADS = 6


def test_race_put_if_absent_threads(store: Store, request: pytest.FixtureRequest) -> None:
    atomic_if_s3(store, request)
    for round_ in range(3):
        key = f"race/lease-{round_}"
        results = run_threads(N_THREADS, lambda i, key=key: store.put_if_absent(key, f"winner-{i}".encode()))
        winners = [i for i, r in enumerate(results) if isinstance(r, str)]
        losers = [r for r in results if isinstance(r, PreconditionFailedError)]
        assert len(winners) == 1, results
        assert len(losers) == N_THREADS - 1, results
        blob = store.get(key)
        assert blob.data == f"winner-{winners[0]}".encode()
        assert blob.version == results[winners[0]]


def _increment(store: Store, key: str, times: int) -> int:
    """Read-modify-write ``times`` increments with CAS; returns how many retries it needed."""
    retries = 0
    for _ in range(times):
        while True:
            blob = store.get(key)
            try:
                store.put_if_unchanged(key, str(int(blob.data) + 1).encode(), blob.version)
                break
            except PreconditionFailedError:
                retries += 1
    return retries


def test_race_counter_threads_no_lost_update(store: Store, request: pytest.FixtureRequest) -> None:
    atomic_if_s3(store, request)
    store.put_bytes("counter", b"0")
    per_thread = 10 if isinstance(store, LocalStore) else 3
    results = run_threads(N_THREADS, lambda i: _increment(store, "counter", per_thread))
    assert all(isinstance(r, int) for r in results), results
    assert int(store.get_bytes("counter")) == N_THREADS * per_thread
    # contention really happened (else this test proves nothing about CAS)
    assert sum(results) > 0  # type: ignore[arg-type]


def test_race_counter_with_plain_puts_does_lose_updates(local_store: LocalStore) -> None:
    """Control: the same workload without CAS loses updates, so the test above can fail."""
    local_store.put_bytes("counter", b"0")
    gate = threading.Barrier(N_THREADS)

    def unsafe(i: int) -> None:
        value = int(local_store.get_bytes("counter"))
        gate.wait()  # everyone has read the same value
        local_store.put_bytes("counter", str(value + 1).encode())

    run_threads(N_THREADS, unsafe)
    assert int(local_store.get_bytes("counter")) < N_THREADS


def _mp_put_if_absent(root: str, key: str, i: int, start: Any) -> None:
    start.wait(10)
    try:
        LocalStore(root).put_if_absent(key, f"proc-{i}".encode())
    except PreconditionFailedError:
        os._exit(1)
    except BaseException:
        os._exit(2)
    os._exit(0)


def _mp_increment(root: str, times: int, start: Any) -> None:
    start.wait(10)
    try:
        _increment(LocalStore(root), "counter", times)
    except BaseException:
        os._exit(2)
    os._exit(0)


N_PROCS = 6


def _run_procs(target: Callable[..., None], args_for: Callable[[int], tuple]) -> list[int | None]:  # type: ignore[type-arg]
    ctx = multiprocessing.get_context("fork")  # children only touch the local store
    start = ctx.Event()
    procs = [ctx.Process(target=target, args=(*args_for(i), start)) for i in range(N_PROCS)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(30)
    for p in procs:
        if p.is_alive():  # hung: fail the test, don't leave it behind
            p.kill()
            p.join()
    return [p.exitcode for p in procs]


@pytest.mark.slow  # forked processes
def test_race_put_if_absent_processes(local_store: LocalStore) -> None:
    for round_ in range(2):
        key = f"race/proc-lease-{round_}"
        codes = _run_procs(_mp_put_if_absent, lambda i, key=key: (str(local_store.root), key, i))
        assert sorted(codes) == [0] + [1] * (N_PROCS - 1), codes  # type: ignore[type-var]
        winner = codes.index(0)
        assert local_store.get_bytes(key) == f"proc-{winner}".encode()
    assert temp_files(local_store.root) == []


@pytest.mark.slow  # forked processes
def test_race_counter_processes_no_lost_update(local_store: LocalStore) -> None:
    local_store.put_bytes("counter", b"0")
    per_proc = 10
    codes = _run_procs(_mp_increment, lambda i: (str(local_store.root), per_proc))
    assert codes == [0] * N_PROCS
    assert int(local_store.get_bytes("counter")) == N_PROCS * per_proc
    assert temp_files(local_store.root) == []


def test_race_delete_vs_put_if_unchanged(local_store: LocalStore) -> None:
    """A delete that returned is never undone by a CAS that read the old version."""
    for i in range(30):
        key = f"k{i}"
        version = local_store.put_bytes(key, b"old")
        results = run_threads(
            2,
            lambda t, key=key, version=version: (
                local_store.delete(key) if t == 0 else local_store.put_if_unchanged(key, b"new", version)
            ),
        )
        cas = results[1]
        assert isinstance(cas, str | PreconditionFailedError), cas
        # either order ends with no key: delete-then-CAS refuses, CAS-then-delete removes it
        assert not local_store.exists(key)


def test_delete_waits_for_a_cas_in_progress(local_store: LocalStore, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Deterministic version of the race above: a delete lands between CAS check and replace."""
    import refit.io.local as local_mod

    version = local_store.put_bytes("k", b"old")
    checked = threading.Event()
    real_version = local_mod._version
    calls = {"n": 0}

    def slow_version(data: bytes) -> str:
        calls["n"] += 1
        if calls["n"] == 1:  # put_if_unchanged has just read the current content
            checked.set()
            threading.Event().wait(0.3)  # give the delete every chance to slip in
        return real_version(data)

    monkeypatch.setattr(local_mod, "_version", slow_version)
    order: list[str] = []

    def cas() -> None:
        local_store.put_if_unchanged("k", b"new", version)
        order.append("cas")

    def delete() -> None:
        checked.wait(5)
        local_store.delete("k")
        order.append("delete")

    threads = [threading.Thread(target=cas), threading.Thread(target=delete)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # Both succeeded (a CAS that lost to the delete would have raised), and the key is gone: the
    # delete took effect after the CAS's replace, not between its check and its replace. (The
    # order the threads append in is not evidence: each appends after releasing the lock.)
    assert sorted(order) == ["cas", "delete"]
    assert local_store.exists("k") is False  # the delete that returned last is not undone


# --- local atomicity -------------------------------------------------------------------------


def test_local_reader_never_sees_a_partial_file(local_store: LocalStore) -> None:
    size = 2 * 1024 * 1024
    payloads = [bytes([65 + i]) * size for i in range(3)]
    local_store.put_bytes("big.bin", payloads[0])
    done = threading.Event()
    seen: list[bytes] = []
    bad: list[int] = []

    def writer() -> None:
        try:
            for n in range(24):
                local_store.put_bytes("big.bin", payloads[n % 3])
        finally:
            done.set()

    def reader() -> None:
        while not done.is_set():
            data = local_store.get_bytes("big.bin")
            if data not in payloads:
                bad.append(len(data))
            seen.append(data[:1])

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert bad == [], f"partial reads of sizes {bad[:5]}"
    assert len(seen) >= 5  # the reader really ran alongside the writer
    assert local_store.get_bytes("big.bin") == payloads[23 % 3]


def test_local_failed_replace_keeps_old_content(local_store: LocalStore, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    local_store.put_bytes("d/k.csv", b"old")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    for call in (
        lambda: local_store.put_bytes("d/k.csv", b"new"),
        lambda: local_store.put_if_unchanged("d/k.csv", b"new", local_store.get("d/k.csv").version),
    ):
        with pytest.raises(StoreError) as info:
            call()
        # a full disk is not worth a blind retry: someone has to free space
        assert (
            one_line(info.value) == f"cannot write {local_store.uri_for('d/k.csv')}: No space left on device (ENOSPC)"
        )
        assert info.value.transient is False
    monkeypatch.undo()
    assert local_store.get_bytes("d/k.csv") == b"old"
    assert temp_files(local_store.root) == []
    assert local_store.list() == ["d/k.csv"]


def test_local_failed_temp_write_keeps_old_content(local_store: LocalStore, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    local_store.put_bytes("k", b"old")

    def boom(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", boom)
    for call in (
        lambda: local_store.put_bytes("k", b"new"),
        lambda: local_store.put_if_absent("fresh", b"new"),
        lambda: local_store.put_if_unchanged("k", b"new", local_store.get("k").version),
    ):
        with pytest.raises(StoreError, match=r"Input/output error \(EIO\)") as info:
            call()
        assert info.value.transient is True  # an I/O hiccup may pass: tasks retry it
    monkeypatch.undo()
    assert local_store.get_bytes("k") == b"old"
    assert local_store.exists("fresh") is False
    assert temp_files(local_store.root) == []


def test_local_data_that_cannot_be_written_keeps_old_content(local_store: LocalStore) -> None:
    local_store.put_bytes("k", b"old")
    with pytest.raises(TypeError):
        local_store.put_bytes("k", "not bytes")  # type: ignore[arg-type]
    released = memoryview(b"abc")
    released.release()
    with pytest.raises(ValueError):
        local_store.put_bytes("k", released)  # type: ignore[arg-type]
    assert local_store.get_bytes("k") == b"old"
    assert temp_files(local_store.root) == []


def test_local_failed_link_leaves_no_temp(local_store: LocalStore, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def boom(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", boom)
    with pytest.raises(StoreError, match=r"Operation not permitted \(EPERM\)") as info:
        local_store.put_if_absent("k", b"x")
    assert info.value.transient is False
    monkeypatch.undo()
    assert local_store.exists("k") is False
    assert temp_files(local_store.root) == []


def test_local_conditional_losers_leave_no_temp(local_store: LocalStore) -> None:
    version = local_store.put_bytes("k", b"a")
    local_store.put_bytes("k", b"b")
    with pytest.raises(PreconditionFailedError):
        local_store.put_if_absent("k", b"c")
    with pytest.raises(PreconditionFailedError):
        local_store.put_if_unchanged("k", b"c", version)
    assert temp_files(local_store.root) == []
    assert local_store.get_bytes("k") == b"b"


def test_local_object_in_place_of_a_folder(local_store: LocalStore) -> None:
    """S3 allows both ``a`` and ``a/b``; a folder can't: a clear StoreError, not an OSError."""
    local_store.put_bytes("a", b"file")
    with pytest.raises(StoreError) as info:
        local_store.put_bytes("a/b", b"x")
    assert local_store.uri_for("a/b") in one_line(info.value)
    with pytest.raises(StoreError):
        local_store.put_if_absent("a/b", b"x")
    with pytest.raises(NotFoundError):
        local_store.get("a/b")
    assert local_store.exists("a/b") is False
    local_store.delete("a/b")  # a missing key: fine
    local_store.put_bytes("dir/x", b"x")
    with pytest.raises(StoreError):
        local_store.put_bytes("dir", b"over a folder")
    local_store.delete("dir")  # a folder is not an object: nothing to delete
    assert local_store.get_bytes("a") == b"file"
    assert local_store.get_bytes("dir/x") == b"x"
    assert temp_files(local_store.root) == []


def test_local_read_only_store_is_one_permanent_store_error(local_store: LocalStore, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """EROFS (a store mounted read-only) comes from mkstemp: one line, no retry."""
    import errno
    import tempfile

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(StoreError) as info:
        local_store.put_bytes("k", b"x")
    assert one_line(info.value).endswith("Read-only file system (EROFS)")
    assert info.value.transient is False


def test_local_real_os_errors_are_store_errors(local_store: LocalStore) -> None:
    """Real OS faults (no injection): a name too long for the filesystem, a symlink loop."""
    too_long = "x" * 300
    for call in (
        lambda: local_store.put_bytes(f"d/{too_long}", b"x"),
        lambda: local_store.get(f"d/{too_long}"),
        lambda: local_store.exists(f"d/{too_long}"),
    ):
        with pytest.raises(StoreError, match=r"File name too long \(ENAMETOOLONG\)") as info:
            call()
        assert info.value.transient is False
        one_line(info.value)
    local_store.delete(f"d/{too_long}")  # a key that cannot exist: nothing to delete
    local_store.put_bytes("loop/seed", b"x")
    os.symlink(local_store.root / "loop" / "a", local_store.root / "loop" / "b")
    os.symlink(local_store.root / "loop" / "b", local_store.root / "loop" / "a")
    with pytest.raises(StoreError, match=r"\(ELOOP\)") as info:
        local_store.get("loop/a")
    assert info.value.transient is False
    with pytest.raises(StoreError) as info:  # mkdir answers EEXIST here: still one line, no retry
        local_store.put_bytes("loop/a/k", b"x")
    assert info.value.transient is False
    one_line(info.value)
    assert temp_files(local_store.root) == []


@pytest.mark.parametrize(("status", "transient"), [(500, True), (503, True), (429, True), (400, False), (409, False)])
def test_s3_other_errors_are_transient_only_when_a_retry_may_pass(status: int, transient: bool) -> None:
    store = S3Store("s3://bkt/p", client=None)
    err = store._error(_client_error("SomeCode", status), "a/b", "put")
    assert type(err) is StoreError
    assert err.transient is transient


def test_local_delete_of_a_missing_key_creates_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.delete("a/b")
    assert not (tmp_path / "store").exists()


# --- make_s3_client / open_store ----------------------------------------------------------------


def test_make_s3_client_uses_standard_retries(s3_endpoint: str) -> None:
    client = make_s3_client(endpoint_url=s3_endpoint, region="us-east-1")
    assert client.meta.config.retries["mode"] == "standard"
    assert client.meta.endpoint_url == s3_endpoint


def test_make_s3_client_honours_aws_endpoint_url(s3_endpoint: str, s3_bucket: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    client = make_s3_client()
    assert client.meta.endpoint_url == s3_endpoint
    store = S3Store(f"s3://{s3_bucket}/env", client)
    version = store.put_bytes("x.bin", b"via env")
    assert store.get("x.bin").data == b"via env" and store.get("x.bin").version == version
    # open_store builds the same kind of client when given no client
    opened = open_store(f"s3://{s3_bucket}/env")
    assert isinstance(opened, S3Store)
    assert opened.get_bytes("x.bin") == b"via env"


def test_make_s3_client_without_endpoint_goes_to_aws(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Control for the test above: without the variable the endpoint is AWS (no request sent)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    client = make_s3_client(region="us-east-1")
    assert "amazonaws.com" in client.meta.endpoint_url


def test_open_store_local(tmp_path: Path) -> None:
    a = open_store(str(tmp_path / "s"))
    b = open_store(f"file://{tmp_path / 's'}")
    assert isinstance(a, LocalStore) and isinstance(b, LocalStore)
    a.put_bytes("k", b"v")
    assert b.get_bytes("k") == b"v"


# --- frames through the store ----------------------------------------------------------------


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3],
            "score": [0.5, -1.25, 3.0],
            "segment": ["a", "b, with comma", 'c "quoted"'],
            "flag": [True, False, True],
        }
    )


@pytest.mark.parametrize("key", ["frames/t.parquet", "frames/t.csv"])
def test_frame_round_trip(store: Store, frame: pd.DataFrame, key: str) -> None:
    uri = write_frame(store, key, frame)
    assert uri == store.uri_for(key)
    assert store.list("frames/") == [key]
    back = read_frame(store, key)
    pd.testing.assert_frame_equal(back, frame)


def test_parquet_read_is_pandas_read_for_every_dtype(store: Store) -> None:
    """Frames are read column by column (to bound memory): the frame is pandas' own, dtypes and
    nulls included."""
    import io

    n = 50
    frame = pd.DataFrame(
        {
            "i": range(n),
            "f": [None if k % 7 == 0 else k / 3 for k in range(n)],
            "when": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC"),
            "cat": pd.Categorical(["x", "y"] * (n // 2)),
            "s": pd.array([None if k % 5 == 0 else f"v{k}" for k in range(n)], dtype="string"),
            "o": [f"o{k % 3}" for k in range(n)],
            "nullable_int": pd.array([None if k % 4 == 0 else k for k in range(n)], dtype="Int64"),
            "b": [k % 2 == 0 for k in range(n)],
        }
    )
    write_frame(store, "all.parquet", frame)
    back = read_frame(store, "all.parquet")
    pd.testing.assert_frame_equal(back, pd.read_parquet(io.BytesIO(store.get_bytes("all.parquet"))))
    pd.testing.assert_frame_equal(back, frame)
    back.loc[0, "f"] = 99.0  # the columns are writable (not views of read-only Arrow memory)
    assert back.loc[0, "f"] == 99.0


def test_frame_bytes_are_the_stored_bytes(store: Store, frame: pd.DataFrame) -> None:
    write_frame(store, "t.csv", frame)
    assert store.get_bytes("t.csv") == frame_bytes(frame, "t.csv")
    assert store.get_bytes("t.csv").decode().splitlines()[0] == "id,score,segment,flag"


@pytest.mark.parametrize("key", ["empty.parquet", "empty.csv"])
def test_read_frame_empty_file(store: Store, key: str) -> None:
    store.put_bytes(key, b"")
    with pytest.raises(DataError) as info:
        read_frame(store, key)
    message = one_line(info.value)
    assert message == f"{store.uri_for(key)}: file is empty"


def test_read_frame_csv_with_only_blank_lines(store: Store) -> None:
    store.put_bytes("blank.csv", b"\n\n")
    with pytest.raises(DataError, match="file is empty"):
        read_frame(store, "blank.csv")


def test_read_frame_corrupt_parquet(store: Store, frame: pd.DataFrame) -> None:
    good = frame_bytes(frame, "x.parquet")
    for name, data in {
        "garbage.parquet": b"this is not parquet\n" * 50,
        "truncated.parquet": good[: len(good) // 2],
        "csv-in-disguise.parquet": frame_bytes(frame, "x.csv"),
    }.items():
        store.put_bytes(name, data)
        with pytest.raises(DataError) as info:
            read_frame(store, name)
        message = one_line(info.value)
        assert message.startswith(f"{store.uri_for(name)}: cannot parse parquet")


@pytest.mark.parametrize(
    "data",
    [
        b'id,name\n1,"unterminated\n2,b\n',
        b'id,name\n1,a\n2,"never closed',
    ],
)
def test_read_frame_csv_broken_quote(store: Store, data: bytes) -> None:
    store.put_bytes("bad.csv", data)
    with pytest.raises(DataError) as info:
        read_frame(store, "bad.csv")
    message = one_line(info.value)
    assert message.startswith(f"{store.uri_for('bad.csv')}: cannot parse csv")
    assert "EOF inside string" in message


def test_read_frame_csv_ragged_rows(store: Store) -> None:
    store.put_bytes("ragged.csv", b"a,b\n1,2\n3,4,5\n")
    with pytest.raises(DataError, match="cannot parse csv"):
        read_frame(store, "ragged.csv")


def test_read_frame_csv_every_row_one_field_too_many(store: Store) -> None:
    """pandas would silently turn column 'a' into the index and shift the values left."""
    store.put_bytes("shifted.csv", b"a,b\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError) as info:
        read_frame(store, "shifted.csv")
    assert "more fields than the header" in one_line(info.value)


def test_read_frame_csv_not_utf8(store: Store) -> None:
    store.put_bytes("latin1.csv", "name\ncafé\n".encode("utf-16"))
    with pytest.raises(DataError) as info:
        read_frame(store, "latin1.csv")
    assert one_line(info.value).startswith(f"{store.uri_for('latin1.csv')}: cannot parse csv")


@pytest.mark.parametrize("key", ["data.json", "data.xlsx", "data", "data.csv.gz", "data.PARQUET"])
def test_unsupported_extension(store: Store, frame: pd.DataFrame, key: str) -> None:
    store.put_bytes(key, b"a,b\n1,2\n")
    with pytest.raises(DataError) as info:
        read_frame(store, key)
    message = one_line(info.value)
    assert "unsupported file type" in message and key in message
    with pytest.raises(DataError):
        write_frame(store, key, frame)


# --- a conditional PUT whose response is lost -------------------------------------------------


def _drop_first_put_response(store: S3Store, s3_endpoint: str, landed: bytes | None) -> list[int]:
    """The first PutObject's request reaches S3 (``landed``: the bytes it writes; None: it never
    arrives) and its response is lost on the way back; boto3 retries it for real over HTTP."""
    from botocore.exceptions import ConnectionClosedError

    from refit.io.s3 import make_s3_client

    plain = make_s3_client(endpoint_url=s3_endpoint, region="us-east-1")
    sent: list[int] = []

    def before_send(request: Any, **_: Any) -> None:
        sent.append(1)
        if len(sent) == 1:
            if landed is not None:
                plain.put_object(Bucket=store.bucket, Key=store._key("k"), Body=landed)
            raise ConnectionClosedError(endpoint_url=request.url)

    store.client.meta.events.register("before-send.s3.PutObject", before_send)
    return sent


def test_s3_put_if_absent_whose_response_was_lost_is_a_success(s3_store: S3Store, s3_endpoint: str) -> None:
    sent = _drop_first_put_response(s3_store, s3_endpoint, landed=b"claim-1")
    version = s3_store.put_if_absent("k", b"claim-1")
    assert len(sent) == 2  # the retry went out, and S3 answered it 412
    assert version == s3_store.get("k").version and s3_store.get_bytes("k") == b"claim-1"


def test_s3_retried_put_if_absent_still_fails_on_someone_elses_object(s3_store: S3Store, s3_endpoint: str) -> None:
    sent = _drop_first_put_response(s3_store, s3_endpoint, landed=b"claim-of-another-writer")
    with pytest.raises(PreconditionFailedError, match="put-if-absent"):
        s3_store.put_if_absent("k", b"claim-1")
    assert len(sent) == 2 and s3_store.get_bytes("k") == b"claim-of-another-writer"


def test_s3_put_if_unchanged_whose_response_was_lost_is_a_success(s3_store: S3Store, s3_endpoint: str) -> None:
    old = s3_store.put_bytes("k", b"v1")
    sent = _drop_first_put_response(s3_store, s3_endpoint, landed=b"v2")
    version = s3_store.put_if_unchanged("k", b"v2", old)
    assert len(sent) == 2 and version == s3_store.get("k").version != old


def test_s3_precondition_failure_without_a_retry_is_not_second_guessed(s3_store: S3Store) -> None:
    s3_store.put_bytes("k", b"same")
    with pytest.raises(PreconditionFailedError):
        s3_store.put_if_absent("k", b"same")  # equal bytes, but this write did not happen
