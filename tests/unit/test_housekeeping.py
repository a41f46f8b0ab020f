"""Garbage collection of what runs leave behind: run folders no version refers to (after the
retention period), temp files of killed local writes (after a safety age, never one in
flight), and versions registered for promotion that were never promoted (listed, not removed)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from refit.config import PipelineConfig, RetentionConfig
from refit.config_loader import parse_config
from refit.errors import ConfigError
from refit.housekeeping import collect_calibrations, collect_runs, collect_temp_files, run_folders
from refit.io import Store
from refit.io.local import LocalStore
from refit.registry import Registry

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def run_id(days_ago: float, tag: str) -> str:
    stamp = (NOW - timedelta(days=days_ago)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{tag * 8}"


def test_run_folders_older_than_retention_and_unreferenced_are_removed(store: Store) -> None:
    old, recent, registered, dossier_only = run_id(9, "a"), run_id(2, "b"), run_id(30, "c"), run_id(30, "d")
    bare, other_model = run_id(9, "e"), run_id(9, "f")
    keys = [
        f"runs/churn/{old}/split/train.parquet",
        f"runs/churn/{old}/checkpoints/k/epoch-1.pt",
        f"runs/churn/{recent}/split/train.parquet",
        f"runs/churn/{registered}/split/train.parquet",
        f"runs/churn/{dossier_only}/dossier/dossier.md",
        f"runs/{bare}/validated.parquet",
        f"runs/other/{other_model}/split/train.parquet",
        "runs/churn/notes/readme.txt",  # not a run folder: never touched
        "data/base.parquet",
    ]
    for key in keys:
        store.put_bytes(key, b"x")
    reg = Registry(store)
    reg.register("churn", artifact_uri="s3://m/1", run_id=registered)
    reg.register("churn", artifact_uri="s3://m/2", dossier_uris=[store.uri_for(keys[4])])
    assert [f.run_id for f in run_folders(store, "churn")] == [bare, registered, dossier_only, old, recent]

    out = collect_runs(store, reg, timedelta(days=7), model="churn", now=NOW)
    assert out.removed == [f"runs/{bare}", f"runs/churn/{old}"]
    assert out.kept_registered == [f"runs/churn/{registered}", f"runs/churn/{dossier_only}"]
    assert out.kept_recent == [f"runs/churn/{recent}"]
    left = set(store.list(""))
    assert not any(k.startswith((f"runs/churn/{old}/", f"runs/{bare}/")) for k in left)
    assert set(keys[2:5]) | set(keys[6:]) <= left  # the other model's run is the other model's gc
    assert collect_runs(store, reg, timedelta(days=7), model="churn", now=NOW).removed == []
    assert collect_runs(store, reg, timedelta(days=7), model="other", now=NOW).removed == [f"runs/other/{other_model}"]


def test_run_folders_are_found_at_both_depths(local_store: LocalStore) -> None:
    a, b = run_id(1, "a"), run_id(1, "b")
    local_store.put_bytes(f"runs/churn/{a}/x", b"1")
    local_store.put_bytes(f"runs/{b}/y", b"1")
    local_store.put_bytes("runs/churn/not-a-run/z", b"1")
    found = {f.prefix: f.started_at for f in run_folders(local_store)}
    assert found == {f"runs/churn/{a}": NOW - timedelta(days=1), f"runs/{b}": NOW - timedelta(days=1)}


def test_temp_files_of_killed_writes_are_removed_after_the_safety_age(local_store: LocalStore) -> None:
    local_store.put_bytes("registry/churn/versions/1/version.json", b"{}")
    # a write killed after its temp file was written, before the rename: what _write_temp leaves
    killed = local_store._write_temp("registry/churn/versions/2/artifact/model.skops", b"half")
    in_flight = local_store._write_temp("runs/churn/x/split/train.parquet", b"being written")
    assert local_store.list("") == ["registry/churn/versions/1/version.json"]  # invisible to list
    two_hours_ago = time.time() - 7200
    os.utime(killed, (two_hours_ago, two_hours_ago))

    removed = collect_temp_files(local_store, timedelta(hours=1))
    assert removed == [killed.relative_to(local_store.root).as_posix()]
    assert not killed.exists() and in_flight.exists()
    assert local_store.get_bytes("registry/churn/versions/1/version.json") == b"{}"
    assert collect_temp_files(local_store, timedelta(hours=1)) == []
    # the in-flight one is collected only once it is old too
    assert collect_temp_files(local_store, timedelta(hours=1), clock=lambda: time.time() + 7200) == [
        in_flight.relative_to(local_store.root).as_posix()
    ]


def test_temp_file_collection_is_a_no_op_on_s3_and_on_an_empty_store(s3_store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert collect_temp_files(s3_store, timedelta(0)) == []
    assert collect_temp_files(LocalStore(tmp_path / "never-written"), timedelta(0)) == []


def test_versions_registered_for_promotion_and_never_promoted_are_named(local_store: LocalStore) -> None:
    reg = Registry(local_store)
    reg.register("churn", artifact_uri="s3://m/1", decision={"outcome": "PROMOTE"}, run_id="r1")
    reg.promote("churn", 1, expected_current=None)
    reg.register("churn", artifact_uri="s3://m/2", decision={"outcome": "PROMOTE"}, run_id="r2")  # killed here
    reg.register("churn", artifact_uri="s3://m/3", decision={"outcome": "REJECT"}, run_id="r3")
    reg.register("churn", artifact_uri="s3://m/4", tags={"outcome": "PROMOTE"})
    assert reg.never_promoted("churn") == [2, 4]
    note = reg.promotion_note(reg.get_version("churn", 2))
    assert note is not None and note.startswith("registered by run r2 for promotion but never promoted")
    assert reg.promotion_note(reg.get_version("churn", 1)) is None
    assert reg.promotion_note(reg.get_version("churn", 3)) is None
    reg.promote("churn", 2, expected_current=1)
    reg.promote("churn", 1, expected_current=2)
    assert reg.never_promoted("churn") == [4]  # 2 held the alias once: not pending any more


def test_drift_nulls_go_with_their_champion_and_the_kinds_stay(local_store: LocalStore) -> None:
    """The nulls of a version that no longer holds an alias are removed by gc; the champion's and
    any aliased version's stay, and every version's column kinds stay (the next one inherits them)."""
    from refit.io.layout import LAYOUT

    reg = Registry(local_store)
    for n in (1, 2, 3):
        reg.register("churn", artifact_uri=f"s3://m/{n}")
        local_store.put_bytes(LAYOUT.drift_calibration("churn", n, 861), b"nulls")
        local_store.put_bytes(LAYOUT.drift_kinds("churn", n), b"{}")
    reg.promote("churn", 1, expected_current=None)
    reg.promote("churn", 3, expected_current=1)
    reg.set_alias("churn", "shadow", 2)
    removed = collect_calibrations(local_store, reg, "churn")
    assert removed == [LAYOUT.drift_calibration("churn", 1, 861)]  # the former champion's
    assert local_store.exists(LAYOUT.drift_calibration("churn", 2, 861))  # an aliased version's
    assert local_store.exists(LAYOUT.drift_calibration("churn", 3, 861))  # the champion's
    assert all(local_store.exists(LAYOUT.drift_kinds("churn", n)) for n in (1, 2, 3))
    assert collect_calibrations(local_store, reg, "churn") == []


def test_retention_is_run_config_with_defaults() -> None:
    assert RetentionConfig() == RetentionConfig(runs_days=7.0, tmp_files_hours=1.0)
    assert PipelineConfig.model_fields["retention"].default_factory is RetentionConfig
    raw = {
        "dataset": {
            "name": "churn",
            "sources": ["data/x.parquet"],
            "schema": "schemas.churn:ChurnTrainingSchema",
            "target": "churned",
            "task": "regression",
            "id_column": "customer_id",
            "timestamp_column": "event_time",
        },
        "gate": {"primary_metric": "rmse"},
        "retention": {"runs_days": 30},
    }
    assert parse_config(raw).retention == RetentionConfig(runs_days=30, tmp_files_hours=1.0)
    with pytest.raises(ConfigError, match="retention.tmp_files_hours"):
        parse_config({**raw, "retention": {"tmp_files_hours": 0}})
    with pytest.raises(ConfigError, match="retention.runs_days"):
        parse_config({**raw, "retention": {"runs_days": 0}})
