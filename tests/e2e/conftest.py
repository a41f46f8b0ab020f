"""Real processes for the end-to-end tests: a Prefect server, ``refit serve``, ``refit webhook``.

Started once per session (the server alone takes 15 to 20 s) and only by tests that ask for
them; every process runs in its own process group, so teardown stops its children too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import CHROMIUM_ARGS, chromium_path
from tests.conftest import free_port
from tests.reaper import REAPER

BIN = Path(sys.executable).parent
WEBHOOK_SECRET = "whsec-e2e-up-4b1e0c7d9a"
WINDOW_DAYS = 45.0  # REFIT_WINDOW_DAYS: not the default, so runs show whether they got the deployment's value
DEPLOYMENTS = (
    "retrain/retrain-weekly",
    "retrain/retrain-manual",
    "retrain/retrain-on-drift",
    "drift-check/drift-check-hourly",
)

# Small and fast: one tree model, few bootstrap resamples, no cooldown (the tests send alerts
# minutes apart and check de-duplication, not the cooldown, which the unit tests cover).
FAST_OVERRIDES: dict[str, Any] = {
    "training": {
        "seed": 3,
        "max_epochs": 3,
        "smoke_sample_rows": 300,
        "candidates": [{"family": "hist_gradient_boosting", "params": {"max_iter": [40]}, "budget": 1}],
    },
    "gate": {"bootstrap_resamples": 200},
    "drift": {"cooldown_hours": 0, "daily_cap": 100},
}


UI_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # a dev extra: make setup installs it

    executable = chromium_path()  # missing: fails with how to install it (tests/browser.py)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@contextmanager
def screenshot_on_failure(page: Any, name: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        shot = Path(tempfile.gettempdir()) / f"{name}-{uuid.uuid4().hex[:6]}.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
            (shot.with_suffix(".html")).write_text(page.content())
        except Exception:  # the page itself may be gone
            raise exc from None
        raise AssertionError(f"{exc!r}\n(screenshot of the page: {shot}, its HTML beside it)") from exc


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # a server still starting, a 503 from SQLite: try again
            last_error, value = exc, None
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what} (last error: {last_error!r})")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None


def start(name: str, args: list[str], env: dict[str, str], cwd: Path, logs: Path) -> Proc:
    log = logs / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    REAPER.watch_group(popen.pid)
    return Proc(name, popen, log)


def stop(proc: Proc, grace_s: float = 15) -> None:
    """SIGINT to the process group (a clean stop), SIGKILL when it lingers."""
    try:
        if proc.alive():
            try:
                os.killpg(proc.popen.pid, signal.SIGINT)
                proc.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGKILL)  # stragglers of the group (flow-run subprocesses)
        proc.popen.wait(timeout=10)
    finally:
        REAPER.forget_group(proc.popen.pid)


@dataclass
class PrefectServer:
    url: str  # http://127.0.0.1:PORT
    api_url: str  # .../api
    home: Path
    env: dict[str, str]  # what a client process needs to talk to this server
    proc: Proc

    def client(self) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)


TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
ACTIVE = {"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"}


def runs_of(server: PrefectServer, deployment: str) -> list[Any]:
    """Every flow run of ``deployment`` (``flow/deployment``)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with server.client() as client:
        found = client.read_deployment_by_name(deployment)
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])))


def wait_for_completed(server: PrefectServer, serve: Proc, run_id: Any, timeout_s: float) -> Any:
    """The flow run once it has finished; fails (with the serving log) unless it COMPLETED."""
    import uuid

    def ended() -> Any:
        with server.client() as client:
            run = client.read_flow_run(uuid.UUID(str(run_id)))
        return run if run.state_type is not None and run.state_type.value in TERMINAL else None

    run = wait_until(ended, timeout_s, f"flow run {run_id} to finish", every_s=1)
    assert run.state_type.value == "COMPLETED", f"{run.state}\n--- refit serve ---\n{serve.tail()}"
    return run


def wait_for_quiet(server: PrefectServer, timeout_s: float) -> None:
    """Until no retrain run is due, pending or running (left over from other tests).

    Runs the scheduler made for later (next Monday's retrain-weekly) do not count.
    """
    names = ("retrain/retrain-weekly", "retrain/retrain-manual", "retrain/retrain-on-drift")

    def busy(run: Any) -> bool:
        if run.state_type is None or run.state_type.value not in ACTIVE:
            return False
        due = run.expected_start_time or run.next_scheduled_start_time
        return run.state_type.value != "SCHEDULED" or due is None or due <= datetime.now(UTC) + timedelta(minutes=5)

    def quiet() -> bool:
        return not [r for n in names for r in runs_of(server, n) if busy(r)]

    wait_until(quiet, timeout_s, "earlier retrain runs to finish", every_s=1)


@dataclass
class Project:
    root: Path
    config: Path
    store_path: Path
    env: dict[str, str]  # the server's env plus REFIT_STORE, REFIT_WEBHOOK_SECRET

    def store(self) -> Any:
        from refit.io import open_store

        return open_store(str(self.store_path))


@pytest.fixture(scope="session")
def e2e_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def prefect_server(e2e_root: Path) -> Iterator[PrefectServer]:
    port = free_port()
    home = e2e_root / "prefect-home"
    home.mkdir()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_API_URL": api_url,
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    proc = start("prefect-server", [str(BIN / "prefect"), "server", "start"], server_env, e2e_root, e2e_root)
    try:

        def healthy() -> bool:
            assert proc.alive(), f"prefect server exited:\n{proc.tail()}"
            return httpx.get(f"{api_url}/health", timeout=2).status_code == 200

        wait_until(healthy, 120, "the Prefect server's /api/health")
        yield PrefectServer(f"http://127.0.0.1:{port}", api_url, home, env, proc)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def project(e2e_root: Path, prefect_server: PrefectServer) -> Project:
    from refit.config_loader import load_config
    from refit.demo import write_base_data
    from tests.flows.helpers import write_config

    root = e2e_root / "project"
    root.mkdir()
    config = write_config(root, **FAST_OVERRIDES)
    store_path = root / "store"
    write_base_data(Project(root, config, store_path, {}).store(), load_config(config), rows=4000, seed=0)
    env = prefect_server.env | {
        "REFIT_STORE": str(store_path),
        "REFIT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "REFIT_WINDOW_DAYS": str(WINDOW_DAYS),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    return Project(root, config.relative_to(root), store_path, env)


@pytest.fixture(scope="session")
def refit_serve(project: Project, prefect_server: PrefectServer, e2e_root: Path) -> Iterator[Proc]:
    """``refit serve`` in the project folder: the four deployments, polled every 2 s."""
    proc = start("refit-serve", [str(BIN / "refit"), "serve"], project.env, project.root, e2e_root)
    try:
        with prefect_server.client() as client:

            def deployed() -> bool:
                assert proc.alive(), f"refit serve exited:\n{proc.tail()}"
                for name in DEPLOYMENTS:
                    client.read_deployment_by_name(name)
                return bool(client.read_automations_by_name("retrain when drift is detected"))

            wait_until(deployed, 90, "refit serve to create the deployments and the drift automation")
        yield proc
    finally:
        stop(proc)
        if os.environ.get("REFIT_E2E_LOGS"):  # keep the logs of a failing run for a look
            shutil.copytree(
                e2e_root,
                os.environ["REFIT_E2E_LOGS"],
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("*.parquet", "*.db*"),
            )


@pytest.fixture(scope="session")
def refit_webhook(project: Project, refit_serve: Proc, e2e_root: Path) -> Iterator[str]:
    """``refit webhook`` on a free port; its base URL."""
    port = free_port()
    proc = start(
        "refit-webhook",
        [str(BIN / "refit"), "webhook", "--port", str(port), "--config", str(project.config)],
        project.env,
        project.root,
        e2e_root,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert proc.alive(), f"refit webhook exited:\n{proc.tail()}"
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200

        wait_until(healthy, 60, "the webhook's /healthz")
        yield url
    finally:
        stop(proc)
