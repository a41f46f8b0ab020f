"""Which Prefect a refit command talks to: one answer for every command that runs or serves a flow.

1. ``PREFECT_API_URL`` wins: the environment's, else the active profile's of the user's Prefect
   home (what ``prefect config set`` or ``prefect cloud login`` wrote).
2. Else a running ``refit up`` of this store: found through the state file it keeps beside its
   lock in its Prefect home (:func:`prefect_home`) while it runs, and answering a quick health check.
3. Else Prefect's own local server, started by the command, with ``PREFECT_HOME`` set to that same
   home: the runs land in the SQLite that ``refit up`` serves later, so its UI shows them.

Nothing here imports Prefect: Prefect reads its settings once, when it is imported, so the
choice is made and the environment set before that (:func:`use_prefect`).
"""

from __future__ import annotations

import json
import os
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

#: The folder of a local store that holds its Prefect home (its SQLite, ``refit up``'s lock and state).
HOME_DIR = "prefect"
LOCK_FILE = "refit-up.lock"
STATE_FILE = "refit-up.json"
#: How long one health check of a running ``refit up`` may take.
HEALTH_TIMEOUT_S = 2.0
#: How long a command keeps asking a running ``refit up`` that is slow to answer (a busy machine)
#: before it runs Prefect locally. Starting that local server costs ~15 s idle and several times
#: that under load, so waiting for the server that is already up is the cheaper bet; one that
#: refuses the connection (nothing listens at its address) is given up at once.
UP_PATIENCE_S = 20.0

Env = MutableMapping[str, str]


def store_uri(env: Env, store: str | None = None) -> str:
    """The store a command runs on: ``store`` when given, else ``REFIT_STORE`` of ``env``, else the default."""
    from refit.io import resolve_store_uri

    return resolve_store_uri(store or env.get("REFIT_STORE"))


def prefect_home(env: Env, store: str | None = None) -> Path:
    """``PREFECT_HOME`` if set; else ``prefect/`` in the local store (its SQLite lives with the data),
    or ``~/.refit/prefect`` for an ``s3://`` store. ``refit up`` serves this home; every command uses it."""
    if env.get("PREFECT_HOME"):
        return Path(env["PREFECT_HOME"]).expanduser().resolve()
    uri = store_uri(env, store)
    base = Path.home() / ".refit" if uri.startswith("s3://") else Path(uri)
    return (base / HOME_DIR).resolve()


def write_up_state(home: Path, api_url: str) -> Path:
    """Record, for the other refit commands, that this process (``refit up``) serves ``api_url``."""
    state = {
        "pid": os.getpid(),
        "api_url": api_url,
        "ui_url": api_url.removesuffix("/api"),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = home / STATE_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(state) + "\n")
    partial.replace(path)  # a reader sees the whole file or none
    return path


def remove_up_state(home: Path) -> None:
    """Remove the state file when it is this process's (a later ``refit up`` may have written its own)."""
    state = read_up_state(home)
    if state is not None and state.get("pid") == os.getpid():
        (home / STATE_FILE).unlink(missing_ok=True)


def read_up_state(home: Path) -> dict[str, Any] | None:
    """The state file of a ``refit up`` whose process is alive; None when there is none, it is
    unreadable, or its process is gone (``kill -9``, a crash: a stale file is ignored)."""
    try:
        state = json.loads((home / STATE_FILE).read_text())
        pid, api_url = int(state["pid"]), str(state["api_url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid) or not api_url.startswith(("http://", "https://")):
        return None
    return dict(state)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


Health = Literal["ok", "slow", "refused", "failed"]
#: What the line says of a running ``refit up`` that is not used, by its last health check.
_NOT_USED_WHY = {"refused": "connection refused", "failed": "no healthy answer"}


def _health(api_url: str, timeout_s: float) -> Health:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout_s) as response:  # noqa: S310
            return "ok" if int(response.status) == 200 else "failed"
    except TimeoutError:
        return "slow"
    except urllib.error.HTTPError:  # it answered, with an error status
        return "failed"
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            return "slow"
        return "refused" if isinstance(err.reason, ConnectionRefusedError) else "failed"
    except (OSError, ValueError):
        return "failed"


def _wait_health(api_url: str, patience_s: float) -> Health:
    """``refit up``'s API health: asked again while it is only slow, for up to ``patience_s``; a
    refused connection or any other failure ends the wait at once."""
    deadline = time.monotonic() + patience_s
    while True:
        health = _health(api_url, max(0.1, min(HEALTH_TIMEOUT_S, deadline - time.monotonic())))
        if health != "slow" or time.monotonic() >= deadline:
            return health


def profile_api_url(env: Env) -> tuple[str, str] | None:
    """(profile name, ``PREFECT_API_URL``) of the active Prefect profile of the user's Prefect home, or None."""
    if env.get("PREFECT_PROFILES_PATH"):
        path = Path(env["PREFECT_PROFILES_PATH"]).expanduser()
    else:
        path = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser() / "profiles.toml"
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return None
    name = env.get("PREFECT_PROFILE") or profiles.get("active")
    url = profiles.get("profiles", {}).get(name, {}).get("PREFECT_API_URL") if isinstance(name, str) else None
    return (name, str(url)) if isinstance(name, str) and url else None


Kind = Literal["env", "profile", "up", "local", "process"]


@dataclass(frozen=True)
class PrefectTarget:
    """The Prefect a command uses, and what the process's environment needs for it."""

    kind: Kind
    home: Path | None
    api_url: str | None = None
    note: str = ""

    def environment(self) -> dict[str, str]:
        """The variables to set before Prefect is imported (the user's own settings are left as they are)."""
        if self.kind == "up":
            assert self.home is not None and self.api_url is not None
            return {"PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home)}
        if self.kind == "local":
            assert self.home is not None
            return {"PREFECT_HOME": str(self.home)}
        return {}

    def describe(self) -> str:
        """One line for the terminal."""
        if self.kind == "env":
            return f"Prefect: the API at {self.api_url} (PREFECT_API_URL)"
        if self.kind == "profile":
            return f"Prefect: the API at {self.api_url} ({self.note})"
        if self.kind == "up":
            return f"Prefect: refit up's server at {self.api_url} ({self.note})"
        if self.kind == "local":
            return (
                f"Prefect: a local server on {self.home} ({self.note}; ~15 s to start; "
                "`refit up` serves these runs in its UI)"
            )
        return "Prefect: as this process already set it up"


def resolve_prefect(env: Env, store: str | None = None, *, patience_s: float = UP_PATIENCE_S) -> PrefectTarget:
    """Which Prefect a command on ``store`` (else ``REFIT_STORE``) uses, by the rules of this module's
    docstring; a running ``refit up`` that is slow to answer is waited for up to ``patience_s``."""
    if env.get("PREFECT_API_URL"):
        return PrefectTarget("env", None, env["PREFECT_API_URL"])
    profile = profile_api_url(env)
    if profile is not None:
        return PrefectTarget("profile", None, profile[1], f"PREFECT_API_URL of Prefect profile {profile[0]!r}")
    home = prefect_home(env, store)
    state = read_up_state(home)
    if state is None:
        return PrefectTarget("local", home, note="no refit up running")
    health = _wait_health(state["api_url"], patience_s)
    if health == "ok":
        return PrefectTarget("up", home, state["api_url"], f"pid {state['pid']}, UI {state.get('ui_url', '?')}")
    why = f"not within {patience_s:g} s" if health == "slow" else _NOT_USED_WHY[health]
    late = f"refit up (pid {state['pid']}) did not answer at {state['api_url']} ({why})"
    return PrefectTarget("local", home, note=late)


def use_prefect(*, quiet: bool, store: str | None = None, env: Env | None = None) -> PrefectTarget:
    """Choose the Prefect of a command on ``store`` and set ``env`` (this process's environment) for
    it; one line on stderr saying which, unless ``quiet`` (``--json``). Call before Prefect is imported:
    once it is, its settings are read, and this process keeps the Prefect it already has."""
    env = os.environ if env is None else env
    if env is os.environ and "prefect" in sys.modules:
        return PrefectTarget("process", None)
    target = resolve_prefect(env, store)
    env.update(target.environment())
    if not quiet:
        print(target.describe(), file=sys.stderr, flush=True)
    return target
