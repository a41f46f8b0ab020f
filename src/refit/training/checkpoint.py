"""Per-epoch training checkpoints in a Store.

Layout under a run's prefix: ``epoch-0003.pt`` (``torch.save`` bytes) and ``latest.json``,
a pointer written after the checkpoint it names, holding its sha256. A reader therefore never
sees a pointer to a half-written checkpoint, and a damaged one is detected, not loaded.
Checkpoints are loaded with ``weights_only=True``: no pickled code runs on resume.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from typing import Any

import torch

from refit.errors import NotFoundError
from refit.io.base import Store

log = logging.getLogger(__name__)

POINTER = "latest.json"


class CheckpointSink:
    """Where one run's checkpoints go: ``store`` under ``prefix`` (e.g. ``checkpoints/<run_key>``)."""

    def __init__(self, store: Store, prefix: str, keep_last: int = 2) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.keep_last = max(1, keep_last)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def save(self, epoch: int, state: dict[str, Any]) -> str:
        """Write the checkpoint of ``epoch`` (1-based), then the pointer; prune old ones."""
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        name = f"epoch-{epoch:04d}.pt"
        self.store.put_bytes(self._key(name), data)
        pointer = {"epoch": epoch, "key": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        self.store.put_bytes(self._key(POINTER), json.dumps(pointer).encode())
        self._prune(keep={name})
        return self.store.uri_for(self._key(name))

    def _prune(self, keep: set[str]) -> None:
        names = sorted(k.rsplit("/", 1)[-1] for k in self.store.list(self.prefix + "/") if k.endswith(".pt"))
        old = [n for n in names if n not in keep][: max(0, len(names) - self.keep_last)]
        for name in old:
            self.store.delete(self._key(name))

    def load_latest(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The newest checkpoint, or None when there is none or it cannot be trusted."""
        try:
            pointer = json.loads(self.store.get_bytes(self._key(POINTER)))
            data = self.store.get_bytes(self._key(pointer["key"]))
        except NotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable checkpoint pointer under %s: %s", self.prefix, exc)
            return None
        if hashlib.sha256(data).hexdigest() != pointer.get("sha256"):
            log.warning("ignoring checkpoint %s: sha256 does not match its pointer", pointer["key"])
            return None
        try:
            state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
        except Exception as exc:  # an unpickling error must not stop a fresh start
            log.warning("ignoring checkpoint %s: %s", pointer["key"], str(exc).splitlines()[0])
            return None
        return state if isinstance(state, dict) else None

    def clear(self) -> None:
        """Delete every checkpoint of this run (the pointer first)."""
        self.store.delete(self._key(POINTER))
        for key in self.store.list(self.prefix + "/"):
            self.store.delete(key)
