"""Removing what runs leave behind: run folders nobody refers to, and killed writes' temp files.

Two kinds of leftovers, each governed by :class:`refit.config.RetentionConfig`:

* ``runs/<model>/<run_id>/`` (and ``runs/<run_id>/``): splits, checkpoints, candidate
  artifacts and dossiers of every run, registered or not. A folder is removed once its run
  started more than ``runs_days`` ago (the time is in the run id) and no committed version
  refers to it: a version's run id, artifact, reference or dossier URIs keep its folder,
  because that is the version's lineage.
* ``.name.tmp`` files in a local store: the local store writes to a temp file and renames
  it, so a process killed mid-write leaves one behind (they are invisible to ``list``). One
  older than ``tmp_files_hours`` is removed; a younger one may be a write in flight. S3
  writes are single PUTs and leave nothing (a multipart upload that never completed is for a
  bucket lifecycle rule to abort).

* ``drift/<model>/calibration/v<n>/*.npz``: the drift nulls of a version that no longer holds an
  alias (they are redrawn if it is promoted again); its column kinds stay.

The registry's own crashed claims are :meth:`refit.registry.Registry.collect_garbage`'s job.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from refit.data import stamp_time
from refit.io.base import Store
from refit.io.layout import LAYOUT
from refit.io.local import LocalStore, _is_temp_name
from refit.registry import Registry

#: :func:`refit.pipeline.new_run_id`: ``20261124T153000123456Z-1a2b3c4d``.
_RUN_ID = re.compile(r"(?P<stamp>\d{8}T\d{12}Z)-[0-9a-f]{8}")
_LOCKS = ".locks"


@dataclass(frozen=True)
class RunFolder:
    """One run's folder under ``runs/``."""

    prefix: str
    run_id: str
    started_at: datetime
    keys: list[str] = field(default_factory=list, compare=False)


@dataclass
class RunsCollected:
    """What :func:`collect_runs` removed and what it kept."""

    removed: list[str] = field(default_factory=list)
    kept_registered: list[str] = field(default_factory=list)
    kept_recent: list[str] = field(default_factory=list)


def run_folders(store: Store, model: str | None = None) -> list[RunFolder]:
    """The run folders under ``runs/<model>/`` (every model's when None) and ``runs/<run_id>/``."""
    folders: dict[str, RunFolder] = {}
    for key in store.list(LAYOUT.runs_prefix):
        parts = key.split("/")
        # runs/<run_id>/... or runs/<model>/<run_id>/...
        for depth in (1, 2):
            if len(parts) <= depth + 1 or (m := _RUN_ID.fullmatch(parts[depth])) is None:
                continue
            if depth == 2 and model is not None and parts[1] != model:
                break
            prefix = "/".join(parts[: depth + 1])
            if prefix not in folders:
                started = stamp_time(m["stamp"])
                assert started is not None  # _RUN_ID matched the stamp's shape
                folders[prefix] = RunFolder(prefix, parts[depth], started)
            folders[prefix].keys.append(key)
            break
    return sorted(folders.values(), key=lambda f: f.prefix)


def _referenced(store: Store, registry: Registry) -> tuple[set[str], list[str]]:
    """Run ids and URIs that committed versions (of every model) refer to."""
    run_ids: set[str] = set()
    uris: list[str] = []
    for name in registry.list_models():
        for mv in registry.list_versions(name):
            if mv.run_id:
                run_ids.add(mv.run_id)
            uris += [u for u in (mv.artifact_uri, mv.reference_uri, *mv.dossier_uris) if u]
    return run_ids, uris


def collect_runs(
    store: Store,
    registry: Registry,
    older_than: timedelta,
    model: str | None = None,
    now: datetime | None = None,
) -> RunsCollected:
    """Delete run folders that started more than ``older_than`` ago and no committed version refers to."""
    now = now or datetime.now(UTC)
    run_ids, uris = _referenced(store, registry)
    out = RunsCollected()
    for folder in run_folders(store, model):
        inside = store.uri_for(folder.prefix).rstrip("/") + "/"
        if folder.run_id in run_ids or any(u == inside[:-1] or u.startswith(inside) for u in uris):
            out.kept_registered.append(folder.prefix)
        elif now - folder.started_at < older_than:
            out.kept_recent.append(folder.prefix)
        else:
            for key in folder.keys:
                store.delete(key)
            out.removed.append(folder.prefix)
    return out


def collect_calibrations(store: Store, registry: Registry, model: str) -> list[str]:
    """Delete the drift nulls of ``model``'s versions that hold no alias (a former champion's):
    they are a cache its checks drew (``LAYOUT.drift_calibration``), redrawn if the version is
    promoted again. Its column kinds (``kinds.json``, a few bytes) stay: the next version
    inherits them. Returns the removed keys."""
    held = set(registry.aliases(model).values())
    removed = []
    for key in store.list(LAYOUT.drift_calibrations(model)):
        folder, _, name = key.rpartition("/")
        version = folder.rsplit("/", 1)[-1]
        if not (version.startswith("v") and version[1:].isdigit()) or int(version[1:]) in held:
            continue
        if name.endswith(".npz"):
            store.delete(key)
            removed.append(key)
    return removed


def collect_temp_files(store: Store, older_than: timedelta, clock: Callable[[], float] = time.time) -> list[str]:
    """Delete a local store's temp files older than ``older_than``; their paths, relative to the root.

    Nothing to do on other stores.
    """
    if not isinstance(store, LocalStore) or not store.root.is_dir():
        return []
    cutoff = clock() - older_than.total_seconds()
    removed = []
    for dirpath, dirnames, filenames in os.walk(store.root):
        if Path(dirpath) == store.root:
            dirnames[:] = [d for d in dirnames if d != _LOCKS]
        for name in filenames:
            if not _is_temp_name(name):
                continue
            path = Path(dirpath) / name
            try:
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed.append(path.relative_to(store.root).as_posix())
            except FileNotFoundError:
                continue  # its write finished (renamed or linked and removed) meanwhile
    return sorted(removed)


__all__ = ["RunFolder", "RunsCollected", "collect_calibrations", "collect_runs", "collect_temp_files", "run_folders"]
