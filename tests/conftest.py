"""Shared fixtures: a real S3-protocol server on loopback, stores on both backends.

Also the two lanes: ``make test`` runs everything, ``make test-fast`` leaves out tests marked
``slow`` or ``e2e``. Whole directories are marked here (cli/ runs the ``refit`` command, flows/
starts a Prefect API, e2e/ real servers); a test elsewhere that starts a process must carry
``@pytest.mark.slow`` itself, and :func:`processes_only_when_slow` fails it when it does not.

Both lanes run on pytest-xdist workers (``-n 2 --dist loadscope``): every worker is a test
process of its own, with its own session fixtures (a Prefect API, an S3 server, a Prefect home),
each on a free port or in a temporary folder. :func:`xdist_scope` keeps on one worker the tests
that share something expensive, so that it is built once.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.process
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reaper import REAPER

# Tests never talk to AWS and never send telemetry.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# One OpenMP / BLAS thread (before scikit-learn or torch load; inherited by every subprocess):
# the tests fit tiny data, where threads cost more than they give, and on a busy 2-core machine
# spinning OpenMP workers stretched a 120-row fit from under 1 s to 20 s. Set it to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# A Prefect home of this test process's own (each xdist worker is one), set before Prefect loads:
# an inherited one (the controller's, a developer's) would be shared by every worker.
PREFECT_HOME = tempfile.mkdtemp(prefix=f"refit-prefect-home-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-")
atexit.register(shutil.rmtree, PREFECT_HOME, ignore_errors=True)
os.environ["PREFECT_HOME"] = PREFECT_HOME


TESTS = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent

#: Directories whose every test starts a process or a server, and the markers they get.
MARKED_DIRECTORIES: dict[str, tuple[str, ...]] = {
    "cli": ("slow",),  # the `refit` command in a subprocess
    "flows": ("slow",),  # a session-wide prefect_test_harness (a Prefect API subprocess)
    "e2e": ("slow", "e2e"),  # a real prefect server, `refit serve`, `refit webhook`, Chromium
}


#: Test modules that share the session's real servers (``prefect_server`` and what runs on it:
#: a Prefect server, ``refit serve``, ``refit webhook``, ~30 s of CPU to start): one xdist scope,
#: so that one worker starts them once.
SHARED_SERVER_MODULES: dict[str, str] = {
    "tests/e2e/test_up_e2e.py": "e2e-stack",
    "tests/e2e/test_ui_manual_run.py": "e2e-stack",
}
#: Test modules whose tests import Evidently (~6 s of CPU once per process, on the first drift
#: check or report): one xdist scope, so that one worker pays the import, not both.
SHARED_IMPORT_MODULES: dict[str, str] = {
    "tests/unit/test_drift.py": "evidently-users",
    "tests/unit/test_drift_calibration.py": "evidently-users",
    "tests/unit/test_compat_evidently.py": "evidently-users",
}
#: Modules of long, independent tests (no fixture above function scope): each test is a scope
#: of its own, so both workers share them. Every other module is one scope (its module fixtures,
#: a champion trained once, are built once).
SPLIT_MODULES: frozenset[str] = frozenset(
    {"tests/unit/test_replay.py", "tests/cli/test_cli_demo.py", "tests/cli/test_cli_retrain.py"}
)
#: Scopes handed out first, longest work first, so that the workers finish together. After the
#: slow lane's, the fast lane's longest modules (4 to 12 s each at rest, 2026-12-01): every other
#: module is handed out by its number of tests, and a long one among the last kept a worker busy
#: seconds after the other had finished.
LONG_FIRST: tuple[str, ...] = (
    "e2e-stack", "tests/unit/test_replay.py", "tests/e2e/", "tests/flows/", "tests/cli/", "evidently-users",
    "tests/store/test_store.py", "tests/store/test_capture_join.py", "tests/unit/test_capture_writer.py",
    "tests/unit/test_training_torch.py", "tests/unit/test_compat_pandera.py", "tests/store/test_registry_s3.py",
    "tests/unit/test_training_search.py", "tests/unit/test_validation.py", "tests/store/test_registry_races.py",
)  # fmt: skip


def xdist_scope(nodeid: str) -> str:
    """The xdist scope of a test (tests of one scope run on one worker, in order)."""
    module = nodeid.split("::", 1)[0]
    if module in SHARED_SERVER_MODULES:
        return SHARED_SERVER_MODULES[module]
    if module in SHARED_IMPORT_MODULES:
        return SHARED_IMPORT_MODULES[module]
    return nodeid if module in SPLIT_MODULES else module


def long_first_rank(scope: str) -> int:
    """Where a scope comes in :data:`LONG_FIRST` (after all of it when it is not there)."""
    return next((i for i, prefix in enumerate(LONG_FIRST) if scope.startswith(prefix)), len(LONG_FIRST))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope`` with the scopes of :func:`xdist_scope`, long work first.

    (xdist's own ``loadgroup``, grouping by ``xdist_group`` marks, does not group under pytest
    9.2: pytest-dev/pytest-xdist#1386. The controller sees node ids only, hence the tables above;
    :func:`check_xdist_scopes` keeps them true.)
    """
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class RefitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            if not getattr(self, "_ordered", False):  # the first assignment: the queue is complete
                self._ordered = True
                for scope in sorted(self.workqueue, key=lambda s: (long_first_rank(s), -len(self.workqueue[s]))):
                    self.workqueue.move_to_end(scope)
            super()._assign_work_unit(node)

    return RefitScheduling(config, log)


def check_xdist_scopes(item: pytest.Item, module: str) -> None:
    """Fail the collection when the tables above no longer say the truth about a test of ``module``."""
    fixtures = set(getattr(item, "fixturenames", ()))
    if "prefect_server" in fixtures and module not in SHARED_SERVER_MODULES:
        raise pytest.UsageError(f"{module} uses prefect_server: add it to SHARED_SERVER_MODULES in tests/conftest.py")
    if module in SPLIT_MODULES:
        info = getattr(item, "_fixtureinfo", None)  # pytest's; the check is skipped without it
        for name, defs in getattr(info, "name2fixturedefs", {}).items():
            if any(d.scope not in ("function", "session") for d in defs):
                raise pytest.UsageError(
                    f"{module} has a {defs[-1].scope}-scoped fixture ({name}): remove it from SPLIT_MODULES in "
                    "tests/conftest.py, or each worker builds it again"
                )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            relative = Path(str(item.path)).resolve().relative_to(TESTS)
        except ValueError:
            continue
        check_xdist_scopes(item, (Path(TESTS.name) / relative).as_posix())
        for name in MARKED_DIRECTORIES.get(relative.parts[0], ()):
            item.add_marker(name)


class UnmarkedProcessError(AssertionError):
    pass


@pytest.fixture(autouse=True)
def processes_only_when_slow(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test that starts a Python process (2 to 4 s of imports each) must be marked ``slow``.

    Keeps ``make test-fast`` fast as tests are added: an unmarked test that starts Python in a
    subprocess (``python``, ``refit``, ``prefect``, the smoke test's child) or a multiprocessing
    process fails here, naming what it started.
    """
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    started: list[str] = []

    def refuse(what: str) -> None:
        started.append(what)
        raise UnmarkedProcessError(f"{request.node.nodeid} starts {what} but is not marked slow: add @pytest.mark.slow")

    popen_init = subprocess.Popen.__init__

    def popen(self, args, *more, **kwargs):  # type: ignore[no-untyped-def]
        argv = [args] if isinstance(args, (str, os.PathLike)) else list(args)
        program = Path(str(argv[0]).split()[0])
        # Python or a console script of this environment (refit, prefect, lint-imports); libraries'
        # own quick probes (uname, lscpu) are not what makes a test slow
        if program.parent == VENV_BIN or program.name.startswith("python"):
            refuse(f"a subprocess ({' '.join(map(str, argv))[:120]})")
        popen_init(self, args, *more, **kwargs)

    def start(self) -> None:  # type: ignore[no-untyped-def]
        refuse(f"a multiprocessing process ({self.name})")

    monkeypatch.setattr(subprocess.Popen, "__init__", popen)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start)
    yield
    if started:  # also when the test caught the error itself
        pytest.fail(f"{request.node.nodeid} started {started[0]} but is not marked slow: add @pytest.mark.slow")


def pytest_configure(config: pytest.Config) -> None:
    REAPER.start()  # stops this process's servers should it die without its teardown (tests/reaper.py)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One Prefect API for the session (a fresh SQLite database, ~20 s to start); its URL.

    The flow tests run against it in process; the CLI tests hand its URL to ``refit retrain``
    and ``refit drift`` so that each of those processes does not start a temporary server of its
    own (15 to 20 s each).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        url = PREFECT_API_URL.value()
        assert url, "prefect_test_harness set no API URL"
        server = _harness_server_pid()
        REAPER.watch_process(server)
        yield str(url)
    REAPER.forget_process(server)


def _harness_server_pid() -> int:
    """The process of the API server ``prefect_test_harness`` started (its default server)."""
    from prefect.server.api.server import SubprocessASGIServer

    process = SubprocessASGIServer._instances[None].server_process
    assert process is not None, "prefect_test_harness started no server process"
    return process.pid


#: The environment every test ``mlflow server`` starts with. MLflow 3 starts a job runner and
#: seven Huey consumer processes beside the server by default (each imports mlflow: seconds of
#: CPU apiece, a minute per server on a loaded 2-core machine); refit logs runs, artifacts and
#: registry versions, none of which is a server job, so the tests run the server without them.
MLFLOW_SERVER_ENV: dict[str, str] = {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


class MlflowServer:
    """A real ``mlflow server`` on a loopback port: SQLite backend store in ``folder``, artifacts
    in ``folder/artifacts`` or at ``artifacts`` (an ``s3://`` destination: ``env`` then carries
    ``MLFLOW_S3_ENDPOINT_URL``). :meth:`stop` and :meth:`start` again keep the port and the
    backend store: the same server, back after an outage. 15 s to well over a minute to start on
    a busy machine."""

    def __init__(self, folder: Path, artifacts: str | None = None, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.artifacts = artifacts or str(folder / "artifacts")
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 300) -> MlflowServer:
        import time
        import urllib.request

        logfile = self.folder / "server.log"
        with logfile.open("a") as log:
            self.proc = subprocess.Popen(
                [
                    str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                    "--workers", "1", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
                    "--artifacts-destination", self.artifacts,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **MLFLOW_SERVER_ENV, **self.env},
                start_new_session=True,  # its own process group: the server and the workers it forks stop together
            )  # fmt: skip
        REAPER.watch_group(self.proc.pid)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server did not start: {logfile.read_text()[-2000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM to the server's process group (SIGKILL after 30 s); returns once it is gone."""
        import signal

        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        REAPER.forget_group(proc.pid)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` for the session (:class:`MlflowServer`: SQLite backend store,
    artifacts in a folder it serves); its URL."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL cluster for the session (``tests/postgres.py``: initdb in a temporary
    folder, a free loopback port, ~3 s to start); ``postgres.create_database(name)`` gives a test
    a database of its own and returns its URL."""
    from tests.postgres import start_postgres

    cluster = start_postgres()
    try:
        yield cluster
    finally:
        cluster.stop()


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
