"""A throwaway PostgreSQL cluster for tests: ``initdb`` in a temporary folder, loopback only.

The ``postgres`` session fixture in ``tests/conftest.py`` starts one per test process on a free
port (trust authentication, no fsync: it holds nothing worth keeping) and stops it at the end;
:meth:`PostgresCluster.create_database` gives each test a database of its own. The server
binaries come from ``PATH`` or the Debian layout (``/usr/lib/postgresql/N/bin``); ``make test``
installs the ``postgresql`` package where they are missing (``make system-deps``, as root).
PostgreSQL refuses to run as root, so under root the cluster runs as the ``postgres`` user the
package creates.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.reaper import REAPER

USER = "refit"


HOW_TO_ENABLE = "run 'sudo make system-deps' (Debian: apt-get install postgresql), which 'make test' does as root"


def pg_bin(path: str | None = None, debian: Path = Path("/usr/lib/postgresql")) -> Path:
    """The folder holding ``initdb`` and ``pg_ctl`` (the newest Debian version when not on ``path``,
    default ``PATH``); missing: a RuntimeError that says how to install them."""
    found = shutil.which("initdb", path=path)
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(debian.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise RuntimeError(f"the PostgreSQL tests need the server's initdb, not installed: {HOW_TO_ENABLE}")
    return versions[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresCluster:
    """A running cluster: ``url(db)`` is a SQLAlchemy/psycopg2 URL on loopback."""

    data: Path
    port: int
    _as_user: list[str]

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its ``postgresql://`` URL."""
        subprocess.run(
            [str(pg_bin() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name],
            check=True,
            capture_output=True,
        )
        return self.url(name)

    def stop_command(self) -> list[str]:
        return [*self._as_user, str(pg_bin() / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]

    def stop(self) -> None:
        subprocess.run(self.stop_command(), capture_output=True)
        REAPER.forget_command(self.stop_command())
        shutil.rmtree(self.data.parent, ignore_errors=True)


def start_postgres() -> PostgresCluster:
    """initdb a cluster in a new temporary folder and start it on a free loopback port (waits until it accepts).

    The folder is made directly under the system's temporary directory: pytest's own are private
    to root, where the ``postgres`` user could not reach them. :meth:`PostgresCluster.stop` removes it.
    """
    base = Path(tempfile.mkdtemp(prefix="refit-pg-"))
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir(exist_ok=True)
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres will not run as root
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
        os.chmod(base, 0o700)
        as_user = ["runuser", "-u", "postgres", "--"]
    bin_dir = pg_bin()
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    cluster = PostgresCluster(data=data, port=port, _as_user=as_user)
    REAPER.watch_command(cluster.stop_command())  # pg_ctl detached the server: stop it should this process die
    return cluster
