"""Which Prefect a refit command uses (refit_cli.prefect_api): the rules that need no server.

A running ``refit up`` found through its state file, and a local run landing in the home's
database, are proved against real processes in tests/e2e/test_up_e2e.py and
tests/cli/test_cli_prefect_home.py.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from refit_cli.demo_command import DEMO_MARKER, prepare_demo_store
from refit_cli.prefect_api import (
    HEALTH_TIMEOUT_S,
    HOME_DIR,
    STATE_FILE,
    prefect_home,
    read_up_state,
    remove_up_state,
    resolve_prefect,
    use_prefect,
    write_up_state,
)
from tests.conftest import free_port

#: Above the kernel's largest pid (pid_max is at most 2**22): no process has it.
DEAD_PID = 2**22 + 1


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"REFIT_STORE": str(tmp_path / "store"), **extra}


def test_the_home_is_prefect_home_else_beside_the_local_store(tmp_path: Path) -> None:
    assert prefect_home(_env(tmp_path)) == tmp_path / "store" / HOME_DIR
    assert prefect_home(_env(tmp_path), store=str(tmp_path / "demo")) == tmp_path / "demo" / HOME_DIR
    assert prefect_home(_env(tmp_path, PREFECT_HOME=str(tmp_path / "mine"))) == tmp_path / "mine"
    assert prefect_home({"REFIT_STORE": "s3://bucket/refit"}) == Path.home() / ".refit" / HOME_DIR


def test_an_explicit_api_url_wins_and_nothing_is_changed(tmp_path: Path) -> None:
    home = tmp_path / "store" / HOME_DIR
    home.mkdir(parents=True)
    write_up_state(home, f"http://127.0.0.1:{free_port()}/api")  # a refit up of this store does not matter
    target = resolve_prefect(_env(tmp_path, PREFECT_API_URL="http://prefect.internal:4200/api"))
    assert (target.kind, target.api_url, target.environment()) == ("env", "http://prefect.internal:4200/api", {})


def test_the_api_url_of_the_users_active_prefect_profile_wins_too(tmp_path: Path) -> None:
    user_home = tmp_path / "user-prefect"
    user_home.mkdir()
    (user_home / "profiles.toml").write_text(
        'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://team:4200/api"\n[profiles.ephemeral]\n'
    )
    env = _env(tmp_path, PREFECT_HOME=str(user_home))
    target = resolve_prefect(env)
    assert (target.kind, target.api_url, target.environment()) == ("profile", "http://team:4200/api", {})
    assert "profile 'team'" in target.describe()
    # another profile chosen by PREFECT_PROFILE, without an API URL: the local home (the user's PREFECT_HOME)
    local = resolve_prefect(env | {"PREFECT_PROFILE": "ephemeral"})
    assert (local.kind, local.home) == ("local", user_home)


def test_with_no_refit_up_the_command_runs_prefect_in_the_documented_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _env(tmp_path)
    target = use_prefect(quiet=False, env=env)
    home = tmp_path / "store" / HOME_DIR
    assert (target.kind, target.home) == ("local", home)
    assert env["PREFECT_HOME"] == str(home) and "PREFECT_API_URL" not in env
    assert capsys.readouterr().err == f"{target.describe()}\n"
    assert f"a local server on {home} (no refit up running" in target.describe()
    use_prefect(quiet=True, env=_env(tmp_path))  # --json: stdout and stderr stay clean
    assert capsys.readouterr() == ("", "")


def test_a_stale_state_file_is_ignored(tmp_path: Path) -> None:
    home = tmp_path / "store" / HOME_DIR
    home.mkdir(parents=True)
    (home / STATE_FILE).write_text(json.dumps({"pid": DEAD_PID, "api_url": "http://127.0.0.1:4200/api"}))
    assert read_up_state(home) is None
    target = resolve_prefect(_env(tmp_path))
    assert (target.kind, target.home, target.note) == ("local", home, "no refit up running")
    (home / STATE_FILE).write_text("{not json")  # a torn or foreign file: the same
    assert resolve_prefect(_env(tmp_path)).kind == "local"


def test_a_live_refit_up_that_does_not_answer_is_named_and_prefect_runs_locally(tmp_path: Path) -> None:
    home = tmp_path / "store" / HOME_DIR
    home.mkdir(parents=True)
    silent = f"http://127.0.0.1:{free_port()}/api"  # this process is alive; nothing listens there
    write_up_state(home, silent)
    target = resolve_prefect(_env(tmp_path))
    assert target.kind == "local" and target.home == home
    assert target.note == f"refit up (pid {os.getpid()}) did not answer at {silent} (connection refused)"


class _SlowHealth(http.server.BaseHTTPRequestHandler):
    """A Prefect API on a busy machine: the first health checks take longer than one check may wait."""

    slow_answers = 1
    delay_s = HEALTH_TIMEOUT_S + 0.5
    seen = 0
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).seen += 1
        if type(self).seen <= type(self).slow_answers:
            time.sleep(type(self).delay_s)
        with contextlib.suppress(OSError):  # the client may have given up meanwhile
            self.send_response(type(self).status)
            self.end_headers()
            self.wfile.write(b"true")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_api() -> Iterator[tuple[str, type[_SlowHealth]]]:
    handler = type("Handler", (_SlowHealth,), {"seen": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_live_refit_up_slow_to_answer_is_waited_for_not_doubled_by_a_second_server(
    tmp_path: Path, slow_api: tuple[str, type[_SlowHealth]]
) -> None:
    """On a loaded machine (CI beside four test runs) refit up's /health took over 2 s and the command
    started a second Prefect server on the same SQLite, which took 80 s to start there."""
    url, handler = slow_api
    home = tmp_path / "store" / HOME_DIR
    home.mkdir(parents=True)
    write_up_state(home, url)
    target = resolve_prefect(_env(tmp_path), patience_s=HEALTH_TIMEOUT_S * 3)
    assert (target.kind, target.api_url) == ("up", url)
    assert handler.seen == 2  # the first check timed out; the second was answered

    handler.seen, handler.slow_answers = 0, 1_000  # a refit up that never answers in time: run locally, named
    late = resolve_prefect(_env(tmp_path), patience_s=1.0)
    assert late.kind == "local" and late.home == home
    assert late.note == f"refit up (pid {os.getpid()}) did not answer at {url} (not within 1 s)"

    handler.seen, handler.slow_answers, handler.status = 0, 0, 503  # it answers, unhealthy: not waited for
    failed = resolve_prefect(_env(tmp_path), patience_s=30.0)
    assert failed.kind == "local" and handler.seen == 1
    assert failed.note == f"refit up (pid {os.getpid()}) did not answer at {url} (no healthy answer)"


def test_the_state_file_is_refit_ups_own_and_removed_only_by_it(tmp_path: Path) -> None:
    path = write_up_state(tmp_path, "http://127.0.0.1:4321/api")
    state = read_up_state(tmp_path)
    assert state is not None and state["pid"] == os.getpid()
    assert (state["api_url"], state["ui_url"]) == ("http://127.0.0.1:4321/api", "http://127.0.0.1:4321")
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]  # no partial file left
    remove_up_state(tmp_path)
    assert not path.exists()
    other = {"pid": 1, "api_url": "http://127.0.0.1:4321/api"}  # another refit up's (pid 1 is alive)
    path.write_text(json.dumps(other))
    remove_up_state(tmp_path)
    assert json.loads(path.read_text()) == other


def test_the_demo_keeps_its_stores_prefect_home_when_it_clears_the_store(tmp_path: Path) -> None:
    store = tmp_path / "demo"
    prepare_demo_store(store)
    (store / "registry").mkdir()
    (store / "registry" / "v1.json").write_text("{}")
    (store / HOME_DIR).mkdir()
    (store / HOME_DIR / "prefect.db").write_text("earlier runs")
    prepare_demo_store(store)
    assert sorted(p.name for p in store.iterdir()) == sorted([DEMO_MARKER, HOME_DIR])
    assert (store / HOME_DIR / "prefect.db").read_text() == "earlier runs"

    only_home = tmp_path / "up-first"  # `refit up` ran on it before any demo: still an empty store
    (only_home / HOME_DIR).mkdir(parents=True)
    prepare_demo_store(only_home)
    assert (only_home / DEMO_MARKER).is_file() and (only_home / HOME_DIR).is_dir()
