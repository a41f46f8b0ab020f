"""The model registry on a local folder: numbering, aliases by compare-and-swap, history,
rollback, races between processes, and crashes at every step of register and promote."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from refit.errors import ConflictError, RegistryError
from refit.fingerprint import fingerprint_frame
from refit.io.local import LocalStore
from refit.registry import ModelVersion, Registry


class Died(BaseException):
    """The process 'dies' here: no except-Exception clean-up runs."""


class Clock:
    """2026-01-01 00:00 UTC, one minute later at every call."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reg(local_store: LocalStore, clock: Clock) -> Registry:
    return Registry(local_store, clock=clock)


def register(reg: Registry, tag: str = "x", **kwargs: Any) -> ModelVersion:
    kwargs.setdefault("artifact_files", {"model.bin": f"weights-{tag}".encode()})
    kwargs.setdefault("author", "alice")
    return reg.register("churn", description=tag, **kwargs)


def fail_on(store: LocalStore, method: str, when: Callable[[str], bool], exc: BaseException | None = None) -> None:
    """Make ``store.<method>(key, ...)`` raise (Died by default) for keys where ``when(key)``."""
    original = getattr(store, method)

    def patched(key: str, *args: Any) -> Any:
        if when(key):
            raise exc if exc is not None else Died(key)
        return original(key, *args)

    setattr(store, method, patched)


def restore(store: LocalStore, method: str) -> None:
    delattr(store, method)


# --- versions ------------------------------------------------------------------------------


def test_construction_does_no_io(tmp_path: Path) -> None:
    reg = Registry(LocalStore(tmp_path / "nothing-yet"))
    assert not (tmp_path / "nothing-yet").exists()
    assert reg.list_models() == [] and reg.list_versions("churn") == [] and reg.aliases("churn") == {}
    assert not (tmp_path / "nothing-yet").exists()


def test_register_numbers_versions_and_round_trips_metadata(
    reg: Registry, local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    monkeypatch.setenv("REFIT_AUTHOR", "ci-bot")
    v1 = reg.register(
        "churn",
        artifact_files={"model.skops": b"\x00weights", "preprocess/columns.json": b"[]"},
        datasets={"train": fingerprint_frame(train), "test": {"sha256": "ab" * 32, "rows": 40}},
        params={"lr": 0.1, "layers": [8, 4]},
        metrics={"auc": 0.81, "calibration": float("nan")},
        segment_metrics={"region=north": {"auc": 0.79}},
        decision="promote",
        dossier_uris=["s3://b/dossiers/1.html"],
        tags={"team": "growth"},
        description="first",
        git_commit="abc1234",
        run_id="run-1",
    )
    v2 = reg.register("churn", artifact_uri="s3://models/churn/2/", compared_with=1, author="bob")
    assert (v1.version, v2.version) == (1, 2)
    assert [v.version for v in reg.list_versions("churn")] == [1, 2]
    assert reg.list_models() == ["churn"]

    got = reg.get_version("churn", 1)
    assert got == v1
    assert got.author == "ci-bot" and v2.author == "bob"
    assert got.created_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert got.datasets["train"].sha256 == fingerprint_frame(train).sha256
    assert (got.datasets["train"].rows, got.datasets["train"].columns) == (3, 2)
    assert (got.datasets["test"].rows, got.datasets["test"].columns) == (40, None)
    assert got.params == {"lr": 0.1, "layers": [8, 4]}
    assert got.metrics == {"auc": 0.81, "calibration": None}  # NaN is stored as null
    assert got.segment_metrics == {"region=north": {"auc": 0.79}}
    assert (got.decision, got.dossier_uris, got.tags) == ("promote", ["s3://b/dossiers/1.html"], {"team": "growth"})
    assert (got.git_commit, got.run_id, got.description) == ("abc1234", "run-1", "first")
    assert got.artifact_files == ["model.skops", "preprocess/columns.json"]
    assert got.artifact_uri == f"{local_store.uri}/registry/churn/versions/1/artifact"
    assert reg.read_artifact("churn", 1, "model.skops") == b"\x00weights"
    assert reg.read_artifact("churn", 1, "preprocess/columns.json") == b"[]"
    assert (v2.artifact_uri, v2.artifact_files, v2.compared_with) == ("s3://models/churn/2/", [], 1)
    with pytest.raises(RegistryError, match=r"churn:2 has no artifact file 'model.skops'.*s3://models/churn/2/"):
        reg.read_artifact("churn", 2, "model.skops")
    raw = json.loads(local_store.get_bytes("registry/churn/versions/1/version.json"))
    assert raw["version"] == 1 and raw["metrics"]["calibration"] is None


def test_register_rejects_bad_input_without_claiming_a_number(reg: Registry, local_store: LocalStore) -> None:
    with pytest.raises(RegistryError, match="exactly one of artifact_files and artifact_uri"):
        reg.register("churn")
    with pytest.raises(RegistryError, match="exactly one"):
        reg.register("churn", artifact_files={"m": b"1"}, artifact_uri="s3://x")
    with pytest.raises(RegistryError, match="not JSON-serialisable"):
        reg.register("churn", artifact_uri="s3://x", params={"n": np.int64(3)})
    with pytest.raises(RegistryError, match="invalid model name"):
        reg.register("churn/../x", artifact_uri="s3://x")
    assert local_store.list() == []
    assert register(reg).version == 1


def test_run_id_makes_a_retried_registration_return_the_first(reg: Registry) -> None:
    first = register(reg, "a", run_id="flow-run-7")
    again = register(reg, "b", run_id="flow-run-7")
    assert again == first and [v.version for v in reg.list_versions("churn")] == [1]
    assert register(reg, "c", run_id="flow-run-8").version == 2


def test_a_stale_listing_cannot_overwrite_a_version(reg: Registry, local_store: LocalStore) -> None:
    register(reg, "one")
    register(reg, "two")
    local_store.list = lambda prefix="": []  # type: ignore[method-assign]  # a writer that saw nothing
    v = register(reg, "three")
    restore(local_store, "list")
    assert v.version == 3
    assert [(x.version, x.description) for x in reg.list_versions("churn")] == [(1, "one"), (2, "two"), (3, "three")]
    assert reg.read_artifact("churn", 1, "model.bin") == b"weights-one"


# --- aliases, resolve, history, rollback ---------------------------------------------------


def test_set_champion_and_resolve(reg: Registry) -> None:
    register(reg, "one")
    register(reg, "two")
    reg.promote("churn", 1, expected_current=None, reason="first model", author="alice")
    reg.set_alias("churn", "challenger", 2, expected_current=None, author="bob")
    assert reg.aliases("churn") == {"challenger": 2, "champion": 1}
    assert reg.resolve("churn@champion").version == 1
    assert reg.resolve("churn").version == 1
    assert reg.resolve("churn@challenger").description == "two"
    assert reg.resolve("churn:2").version == 2
    assert reg.resolve(" churn:1 ").description == "one"


def test_resolve_errors_name_what_is_missing(reg: Registry) -> None:
    with pytest.raises(RegistryError, match=r"no model 'churn' in the registry"):
        reg.resolve("churn")
    register(reg)
    register(reg)
    with pytest.raises(RegistryError, match=r"churn has no alias 'champion' \(aliases: none\)"):
        reg.resolve("churn")
    reg.promote("churn", 1)
    with pytest.raises(RegistryError, match=r"churn has no alias 'shadow' \(aliases: champion -> 1\)"):
        reg.resolve("churn@shadow")
    with pytest.raises(RegistryError, match=r"churn has no version 7 \(committed versions: 1, 2\)"):
        reg.resolve("churn:7")
    with pytest.raises(RegistryError, match=r"no model 'fraud'"):
        reg.resolve("fraud:1")
    for bad in ("churn:abc", "churn@", "churn@a@b", "", "churn:1@x"):
        with pytest.raises(RegistryError, match="invalid"):
            reg.resolve(bad)
    with pytest.raises(RegistryError, match="invalid alias 'Champion'"):
        reg.set_alias("churn", "Champion", 1)


def test_alias_conflict_when_it_moved(reg: Registry) -> None:
    for tag in "abc":
        register(reg, tag)
    reg.promote("churn", 1, expected_current=None)
    reg.promote("churn", 2, expected_current=1)
    with pytest.raises(ConflictError) as err:
        reg.promote("churn", 3, expected_current=1)
    assert str(err.value) == "champion of churn moved from 1 to 2 by another writer; re-read and retry"
    with pytest.raises(ConflictError, match="champion of churn moved from .unset. to 2"):
        reg.promote("churn", 3, expected_current=None)
    assert reg.aliases("churn") == {"champion": 2}


def test_alias_only_points_at_committed_versions(reg: Registry, local_store: LocalStore) -> None:
    register(reg)
    with pytest.raises(RegistryError, match=r"churn has no version 2"):
        reg.promote("churn", 2)
    fail_on(local_store, "put_if_absent", lambda k: k.endswith("/version.json"))
    with pytest.raises(Died):
        register(reg, "half")
    restore(local_store, "put_if_absent")
    assert local_store.exists("registry/churn/versions/2/artifact/model.bin")  # the payload is there...
    with pytest.raises(RegistryError, match=r"churn has no version 2 \(committed versions: 1\)"):
        reg.promote("churn", 2)  # ...but the version is not committed
    assert reg.aliases("churn") == {} and reg.history("churn") == []


def test_history_records_who_when_why(reg: Registry, clock: Clock) -> None:
    register(reg)
    register(reg)
    e1 = reg.promote("churn", 1, expected_current=None, reason="initial", author="alice")
    e2 = reg.promote("churn", 2, reason="hotfix", author="bob")  # no expectation: forced
    reg.set_alias("churn", "challenger", 1, author="carol", expected_current=None)
    events = reg.history("churn")
    assert [(e.seq, e.alias, e.from_version, e.to_version) for e in events] == [
        (1, "champion", None, 1),
        (2, "champion", 1, 2),
        (3, "challenger", None, 1),
    ]
    assert [(e.author, e.reason, e.forced, e.action) for e in events[:2]] == [
        ("alice", "initial", False, "set"),
        ("bob", "hotfix", True, "set"),
    ]
    assert events[0] == e1 and events[1] == e2
    assert events[0].at == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)  # each registration read the clock twice
    assert [e.seq for e in reg.history("churn", "challenger")] == [3]


def test_moving_an_alias_where_it_points_is_a_no_op(reg: Registry) -> None:
    register(reg)
    first = reg.promote("churn", 1, expected_current=None, author="alice")
    again = reg.promote("churn", 1, expected_current=None, author="bob")  # e.g. a retried task
    assert again == first and len(reg.history("churn")) == 1


def test_rollback_walks_back_the_champion_lineage(reg: Registry) -> None:
    for tag in "abc":
        register(reg, tag)
    with pytest.raises(RegistryError, match="no previous version to roll back to"):
        reg.rollback("churn", reason="nothing yet")
    reg.promote("churn", 1, expected_current=None)
    with pytest.raises(RegistryError, match="champion of churn has no previous version"):
        reg.rollback("churn", reason="only one")
    reg.promote("churn", 2, expected_current=1)
    reg.promote("churn", 3, expected_current=2)
    back = reg.rollback("churn", reason="auc dropped in prod", author="oncall")
    assert (back.action, back.from_version, back.to_version, back.reason, back.author, back.forced) == (
        "rollback",
        3,
        2,
        "auc dropped in prod",
        "oncall",
        False,
    )
    assert reg.resolve("churn").version == 2
    assert reg.rollback("churn", reason="again").to_version == 1
    with pytest.raises(RegistryError, match="no previous version"):
        reg.rollback("churn", reason="too far")
    reg.promote("churn", 3, expected_current=1)
    assert reg.rollback("churn", reason="3 is bad").to_version == 1
    assert [e.to_version for e in reg.history("churn")] == [1, 2, 3, 2, 1, 3, 1]


def test_remove_alias(reg: Registry) -> None:
    register(reg)
    reg.set_alias("churn", "shadow", 1)
    with pytest.raises(ConflictError):
        reg.remove_alias("churn", "shadow", expected_current=2)
    ev = reg.remove_alias("churn", "shadow", expected_current=1, reason="done")
    assert (ev.action, ev.from_version, ev.to_version) == ("remove", 1, None)
    assert reg.aliases("churn") == {}
    assert reg.remove_alias("churn", "shadow") == ev  # already gone: a no-op
    with pytest.raises(RegistryError, match="churn has no alias 'never'"):
        reg.remove_alias("churn", "never")


# --- races ---------------------------------------------------------------------------------


def test_losing_the_event_race_is_a_conflict(reg: Registry, local_store: LocalStore) -> None:
    """Two writers read the same state; the other one writes its event first."""
    for tag in "abc":
        register(reg, tag)
    reg.promote("churn", 1, expected_current=None, author="alice")
    original = local_store.put_if_absent
    fired = []

    def racing(key: str, data: bytes) -> str:
        if "/history/" in key and not fired:
            fired.append(key)
            Registry(local_store).promote("churn", 3, expected_current=1, author="other")  # sneaks in
        return original(key, data)

    local_store.put_if_absent = racing  # type: ignore[method-assign]
    with pytest.raises(ConflictError, match="champion of churn moved from 1 to 3 by another writer"):
        reg.promote("churn", 2, expected_current=1, author="me")
    assert fired == ["registry/churn/history/000000000002.json"]
    assert reg.aliases("churn") == {"champion": 3}
    assert [(e.seq, e.author) for e in reg.history("churn")] == [(1, "alice"), (2, "other")]


def test_a_move_of_another_alias_is_retried_not_a_conflict(reg: Registry, local_store: LocalStore) -> None:
    for tag in "ab":
        register(reg, tag)
    reg.promote("churn", 1, expected_current=None)
    original = local_store.put_if_absent
    fired = []

    def racing(key: str, data: bytes) -> str:
        if "/history/" in key and not fired:
            fired.append(key)
            Registry(local_store).set_alias("churn", "challenger", 2, author="other")
        return original(key, data)

    local_store.put_if_absent = racing  # type: ignore[method-assign]
    ev = reg.promote("churn", 2, expected_current=1)
    assert ev.seq == 3  # seq 2 went to the challenger move
    assert reg.aliases("churn") == {"challenger": 2, "champion": 2}


def _promote_in_process(root: str, version: int, barrier: Any, results: Any) -> None:
    reg = Registry(LocalStore(root))
    barrier.wait()
    try:
        ev = reg.promote("churn", version, expected_current=1, reason=f"to {version}", author=f"proc-{version}")
        results.put(("ok", version, ev.seq))
    except ConflictError as exc:
        results.put(("conflict", version, str(exc)))


@pytest.mark.slow
def test_two_processes_promoting_at_once_one_wins(reg: Registry, local_store: LocalStore) -> None:
    for tag in "abc":
        register(reg, tag)
    reg.promote("churn", 1, expected_current=None)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_promote_in_process, args=(local_store.uri, v, barrier, results)) for v in (2, 3)]
    for p in procs:
        p.start()
    outcomes = sorted((results.get(timeout=60) for _ in procs), key=lambda r: r[0] != "ok")
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    (ok, winner, seq), (conflict, loser, message) = outcomes
    assert (ok, conflict, seq) == ("ok", "conflict", 2)
    assert {winner, loser} == {2, 3}
    assert message == f"champion of churn moved from 1 to {winner} by another writer; re-read and retry"
    assert reg.aliases("churn") == {"champion": winner}
    assert [(e.to_version, e.author) for e in reg.history("churn")][1:] == [(winner, f"proc-{winner}")]


# --- crashes -------------------------------------------------------------------------------


def test_crash_before_version_json_leaves_an_invisible_slot(
    reg: Registry, local_store: LocalStore, clock: Clock
) -> None:
    register(reg, "one")
    register(reg, "two")
    reg.promote("churn", 2, expected_current=None)
    fail_on(local_store, "put_if_absent", lambda k: k.endswith("/version.json"))
    with pytest.raises(Died):
        register(reg, "half", reference_sample=pd.DataFrame({"x": [1.0]}))
    restore(local_store, "put_if_absent")
    assert sorted(local_store.list("registry/churn/versions/3/")) == [
        "registry/churn/versions/3/.claim",
        "registry/churn/versions/3/artifact/model.bin",
        "registry/churn/versions/3/reference/sample.parquet",
    ]
    assert [v.version for v in reg.list_versions("churn")] == [1, 2]
    assert reg.resolve("churn").version == 2
    with pytest.raises(RegistryError, match="no version 3"):
        reg.get_version("churn", 3)

    v = register(reg, "rerun")  # the rerun skips the claimed slot
    reg.promote("churn", v.version, expected_current=2)
    assert v.version == 4 and reg.resolve("churn").description == "rerun"
    assert [v.version for v in reg.list_versions("churn")] == [1, 2, 4]

    assert reg.collect_garbage("churn") == []  # the claim is fresh: maybe a slow writer
    clock.now += timedelta(hours=2)
    assert reg.collect_garbage("churn") == [3]
    assert local_store.list("registry/churn/versions/3/") == [
        "registry/churn/versions/3/.claim",
        "registry/churn/versions/3/version.json",  # a tombstone: the number stays taken
    ]
    assert [v.version for v in reg.list_versions("churn")] == [1, 2, 4]
    assert register(reg, "five").version == 5
    assert reg.collect_garbage("churn") == []


def test_a_slow_writer_cannot_commit_into_a_collected_slot(reg: Registry, local_store: LocalStore) -> None:
    original = local_store.put_if_absent

    def gc_first(key: str, data: bytes) -> str:
        if key.endswith("/version.json") and b"abandoned" not in data:
            assert reg.collect_garbage("churn", older_than=timedelta(0)) == [1]
        return original(key, data)

    local_store.put_if_absent = gc_first  # type: ignore[method-assign]
    with pytest.raises(RegistryError, match="version 1 of churn was abandoned .* register again"):
        register(reg)
    restore(local_store, "put_if_absent")
    assert reg.list_versions("churn") == []
    assert register(reg).version == 2


def test_a_failed_registration_cleans_up_its_slot(reg: Registry, local_store: LocalStore) -> None:
    fail_on(local_store, "put_if_absent", lambda k: k.endswith("sample.parquet"), OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        register(reg, reference_sample=pd.DataFrame({"x": [1.0]}))
    restore(local_store, "put_if_absent")
    assert local_store.list("registry/churn/versions/") == [
        "registry/churn/versions/1/.claim",
        "registry/churn/versions/1/version.json",
    ]
    assert json.loads(local_store.get_bytes("registry/churn/versions/1/version.json"))["abandoned"] is True
    assert reg.list_versions("churn") == [] and register(reg).version == 2


def test_crash_between_register_and_promote_keeps_the_old_champion(reg: Registry, local_store: LocalStore) -> None:
    register(reg, "one")
    reg.promote("churn", 1, expected_current=None)
    v2 = register(reg, "two")
    fail_on(local_store, "put_if_absent", lambda k: "/history/" in k)
    with pytest.raises(Died):
        reg.promote("churn", v2.version, expected_current=1)
    restore(local_store, "put_if_absent")
    assert [v.version for v in reg.list_versions("churn")] == [1, 2]  # committed, not champion
    assert reg.resolve("churn").version == 1
    assert len(reg.history("churn")) == 1
    ev = reg.promote("churn", 2, expected_current=1, reason="rerun")
    assert (ev.seq, ev.from_version, ev.to_version) == (2, 1, 2)
    assert reg.resolve("churn").version == 2


def test_crash_after_the_event_is_logged_the_move_stands(reg: Registry, local_store: LocalStore) -> None:
    """The history event is the commit point; aliases.json catches up at the next write."""
    for tag in "abc":
        register(reg, tag)
    reg.promote("churn", 1, expected_current=None)
    for method in ("put_if_absent", "put_if_unchanged"):
        fail_on(local_store, method, lambda k: k.endswith("aliases.json"))
    with pytest.raises(Died):
        reg.promote("churn", 2, expected_current=1, reason="better auc", author="alice")
    for method in ("put_if_absent", "put_if_unchanged"):
        restore(local_store, method)
    assert json.loads(local_store.get_bytes("registry/churn/aliases.json")) == {"seq": 1, "aliases": {"champion": 1}}
    # readers replay the logged move: all views agree
    assert reg.aliases("churn") == {"champion": 2} and reg.resolve("churn").version == 2
    assert [(e.to_version, e.reason) for e in reg.history("churn")] == [(1, ""), (2, "better auc")]
    # the retried promote finds the move done; a stale writer conflicts
    assert reg.promote("churn", 2, expected_current=1).reason == "better auc"
    with pytest.raises(ConflictError, match="moved from 1 to 2"):
        reg.promote("churn", 3, expected_current=1)
    reg.promote("churn", 3, expected_current=2)
    assert json.loads(local_store.get_bytes("registry/churn/aliases.json")) == {"seq": 3, "aliases": {"champion": 3}}
    assert reg.rollback("churn", reason="r").to_version == 2


# --- reference and diff --------------------------------------------------------------------


def test_reference_sample_round_trips_and_is_all_a_version_keeps_for_drift(
    reg: Registry, local_store: LocalStore
) -> None:
    """The sample is the drift reference; nothing else is written beside it (column summaries
    were written at every registration and never read)."""
    sample = pd.DataFrame(
        {
            "tenure": [1.0, 2.0, 3.0, 4.0, None],
            "plan": ["basic", "basic", "premium", None, "basic"],
            "autopay": [True, False, True, True, True],
            "at": pd.to_datetime(["2026-01-01", "2026-01-03", None, "2026-01-02", "2026-01-05"], utc=True),
            "n": pd.array([5, 5, 5, 5, 5], dtype="Int64"),
        }
    )
    v = register(reg, reference_sample=sample)
    assert v.reference_uri == f"{local_store.uri}/registry/churn/versions/1/reference/sample.parquet"
    pd.testing.assert_frame_equal(reg.reference("churn", 1), sample)
    assert local_store.list("registry/churn/versions/1/reference/") == [
        "registry/churn/versions/1/reference/sample.parquet"
    ]
    register(reg)
    with pytest.raises(RegistryError, match="churn:2 was registered without a reference sample"):
        reg.reference("churn", 2)


def test_diff_puts_metrics_side_by_side(reg: Registry) -> None:
    register(
        reg,
        metrics={"auc": 0.80, "logloss": 0.50},
        segment_metrics={"region=north": {"auc": 0.70}, "region=south": {"auc": 0.90}},
    )
    register(
        reg,
        metrics={"auc": 0.85, "logloss": 0.45, "brier": 0.1},
        segment_metrics={"region=north": {"auc": 0.75}, "region=east": {"auc": 0.60}},
    )
    reg.promote("churn", 1)
    d = reg.diff("churn", "champion", 2)
    assert (d.a, d.b) == (1, 2)
    assert [(m.metric, m.a, m.b) for m in d.overall] == [
        ("auc", 0.8, 0.85),
        ("brier", None, 0.1),
        ("logloss", 0.5, 0.45),
    ]
    assert [m.delta for m in d.overall] == [pytest.approx(0.05), None, pytest.approx(-0.05)]
    assert list(d.segments) == ["region=east", "region=north", "region=south"]
    assert d.segments["region=north"][0].delta == pytest.approx(0.05)
    assert (d.segments["region=east"][0].a, d.segments["region=east"][0].b) == (None, 0.6)
    assert (d.segments["region=south"][0].a, d.segments["region=south"][0].delta) == (0.9, None)
    frame = d.to_frame()
    assert frame.shape == (6, 5)
    assert frame.loc[frame["segment"].isna(), "metric"].tolist() == ["auc", "brier", "logloss"]
    with pytest.raises(RegistryError, match="no version 9"):
        reg.diff("churn", 1, 9)


@pytest.fixture(autouse=True)
def _no_refit_author(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("REFIT_AUTHOR", raising=False)
    yield
