"""``refit up``: one command for local use, and a clean stop on Ctrl-C."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import typer

from refit_cli.prefect_api import LOCK_FILE, prefect_home, remove_up_state, store_uri, write_up_state

CURL_EXAMPLE = """\
  BODY='{{"alert_id":"manual-'$(date +%s)'","model":"{model}","reason":"manual test"}}'
  TS=$(date +%s)
  SIG=$(printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$REFIT_WEBHOOK_SECRET" -hex | sed 's/^.* //')
  curl -sS -X POST http://127.0.0.1:{port}/alerts/drift \\
       -H "X-Refit-Signature: t=$TS,v1=$SIG" -H 'Content-Type: application/json' -d "$BODY\""""


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


#: Prefect's server talks to PostgreSQL through asyncpg: a plain ``postgresql://`` URL (what
#: ``psql`` and most hosting consoles give) is given that driver.
_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+asyncpg://")


def prefect_database_url(url: str) -> str:
    """``url`` as Prefect's server wants it (``postgresql+asyncpg://``); ValueError (one line) for another kind.

    A ``sqlite+aiosqlite://`` URL (Prefect's own setting, when someone set it) is passed on unchanged.
    """
    url = url.strip()
    for scheme in _POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+asyncpg://" + url.removeprefix(scheme)
    if url.startswith("sqlite+aiosqlite://"):  # Prefect's own SQLite setting, passed on as it is
        return url
    shown = url.split("://", 1)[0] + "://..." if "://" in url else repr(url[:20])
    raise ValueError(
        f"--database / PREFECT_API_DATABASE_CONNECTION_URL: expected a postgresql:// URL "
        f"(postgresql://USER:PASSWORD@HOST:5432/DB), got {shown}"
    )


def database_label(url: str) -> str:
    """Where a database URL points, without its credentials (for the banner and the logs)."""
    scheme, _, rest = url.partition("://")
    kind = "SQLite" if scheme.startswith("sqlite") else "PostgreSQL"
    return f"{kind} at {rest.rsplit('@', 1)[-1]}"


def _credentials_problem() -> str | None:
    """Why the webhook cannot start with the environment's secret and token, or None."""
    from refit.config import Settings

    settings = Settings()
    given = [s.get_secret_value() for s in (settings.webhook_secret, settings.webhook_token) if s is not None]
    if any(not value.strip() for value in given):
        return (
            "error: REFIT_WEBHOOK_SECRET or REFIT_WEBHOOK_TOKEN is set but empty or only whitespace: "
            "unset it or give it a value (export REFIT_WEBHOOK_SECRET=$(openssl rand -hex 32))."
        )
    if not given:
        return (
            "error: REFIT_WEBHOOK_SECRET is not set: the webhook refuses unauthenticated alerts. "
            "Set one (export REFIT_WEBHOOK_SECRET=$(openssl rand -hex 32)) or pass --no-webhook."
        )
    return None


def _lock(home: Path) -> IO[str] | None:
    """Hold ``home``'s lock (with this pid in it) for the life of the process; None if another ``refit up`` has it."""
    lock_path = home / LOCK_FILE
    lock = open(lock_path, "a+")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        typer.echo(
            f"error: refit up is already running (pid {lock.read().strip() or '?'}, lock {lock_path}); "
            "stop it with Ctrl-C in its terminal first",
            err=True,
        )
        lock.close()
        return None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


Procs = list[tuple[str, "subprocess.Popen[bytes]"]]


def _prefect_api(
    env: dict[str, str], child_env: dict[str, str], home: Path, ui_port: int, procs: Procs, database: str | None
) -> str | None:
    """The Prefect API to use: ``PREFECT_API_URL``, or a local server started here (None if it did
    not start), on ``database`` (a ``postgresql+asyncpg://`` URL) or else SQLite in ``home``."""
    api_url = env.get("PREFECT_API_URL")
    if api_url:
        typer.echo(f"using the Prefect API at {api_url}")
        return api_url
    api_url = f"http://127.0.0.1:{ui_port}/api"
    server_env = child_env | {
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(ui_port),
        "PREFECT_UI_API_URL": api_url,
    }
    if database is not None:
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = database
    typer.echo(f"starting the Prefect server ({database_label(database) if database else f'SQLite under {home}'}) ...")
    started = _start(
        procs,
        "prefect server",
        ["prefect", "server", "start"],
        server_env,
        f"{api_url}/health",
        120,
        quiet=True,
    )
    if not started:
        why = "can it reach the database?" if database else "is something else using it?"
        typer.echo(f"error: the Prefect server did not start on port {ui_port} ({why})", err=True)
        return None
    return api_url


def _start_webhook(config: Path, port: int, env: dict[str, str], procs: Procs) -> bool:
    argv = ["refit", "webhook", "--port", str(port), "--config", str(config)]
    if not _start(procs, "webhook", argv, env, f"http://127.0.0.1:{port}/healthz", 60):
        typer.echo(f"error: the webhook did not start on port {port}", err=True)
        return False
    return True


def _start(
    procs: Procs,
    name: str,
    argv: list[str],
    env: dict[str, str],
    health_url: str,
    timeout_s: float,
    *,
    quiet: bool = False,
) -> bool:
    """Start ``argv`` (a command of this environment) in its own session and wait until ``health_url`` answers."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / argv[0]), *argv[1:]],
        env=env,
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.DEVNULL if quiet else None,
        start_new_session=True,
    )
    procs.append((name, proc))
    return _wait_http(health_url, timeout_s, proc)


def _announce(api_url: str, webhook: bool, webhook_port: int, model: str, pool: str | None = None) -> None:
    ui = api_url.removesuffix("/api")
    where = f"on work pool {pool}: they run where `prefect worker start --pool {pool}` runs" if pool else "served here"
    typer.echo(f"""
refit is up. Ctrl-C stops everything.
  Prefect UI:   {ui}  (Deployments > retrain/retrain-manual > Run > Custom run)
  Prefect API:  {api_url}
  Webhook:      {f"http://127.0.0.1:{webhook_port}/alerts/drift" if webhook else "not started (--no-webhook)"}
  Deployments:  retrain-weekly, retrain-manual, retrain-on-drift, drift-check-hourly ({where})

refit's own commands (retrain, drift, demo, serve) on this store use this server by themselves.
In a second terminal, point Prefect's CLI at it first:
  {export_line(api_url)}
""")
    if pool:
        typer.echo(f"Then start workers (here, or where refit is installed):\n  prefect worker start --pool {pool}\n")
    if webhook:
        typer.echo(
            "A signed drift alert (paste into a shell where REFIT_WEBHOOK_SECRET is set):\n"
            + CURL_EXAMPLE.format(model=model, port=webhook_port)
            + "\n"
        )


def export_line(api_url: str) -> str:
    """The exact line a second terminal pastes so ``prefect deployment run`` finds these deployments."""
    return f"export PREFECT_API_URL={api_url}"


def _watch(procs: Procs) -> int:
    """Wait until a child exits (1) or Ctrl-C / SIGTERM (KeyboardInterrupt)."""
    while True:
        for name, proc in procs:
            if proc.poll() is not None:
                typer.echo(f"error: {name} exited with {proc.returncode}; stopping", err=True)
                return 1
        time.sleep(1)


def _stop(procs: Procs) -> None:
    """SIGINT every child's process group, newest first; SIGKILL what has not stopped after 20 s."""
    for _, proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + 20
    for _, proc in reversed(procs):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _database(database: str | None, env: dict[str, str]) -> str | None:
    """The server's database (``--database``, else ``PREFECT_API_DATABASE_CONNECTION_URL``) as Prefect
    wants it; None: SQLite in the Prefect home. ValueError (one line) for a URL that is not a database
    Prefect runs on, or ``--database`` where no server is started (``PREFECT_API_URL`` is set)."""
    if env.get("PREFECT_API_URL"):
        if database:
            raise ValueError(
                "--database: PREFECT_API_URL is set, so refit up starts no Prefect server to give a database to: "
                "unset PREFECT_API_URL or leave out --database"
            )
        return None  # the running server has its own database
    given = database or env.get("PREFECT_API_DATABASE_CONNECTION_URL")
    return prefect_database_url(given) if given else None


def run_up(
    config: Path,
    *,
    ui_port: int,
    webhook_port: int,
    webhook: bool,
    env: dict[str, str],
    database: str | None = None,
    pool: str | None = None,
) -> int:
    from refit.config_loader import load_config

    cfg = load_config(config)  # fail fast on a bad config, before starting anything
    problem = _credentials_problem()
    if webhook and problem is not None:
        typer.echo(problem, err=True)
        return 1
    try:
        database = _database(database, env)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    home = prefect_home(env)
    home.mkdir(parents=True, exist_ok=True)
    lock = _lock(home)
    if lock is None:
        return 1
    signal.signal(signal.SIGTERM, _terminate)  # `kill` stops everything as cleanly as Ctrl-C
    # the served deployments and the webhook are told the same store, as an absolute URI
    child_env = env | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "REFIT_STORE": store_uri(env),
    }
    procs: Procs = []
    try:
        api_url = _prefect_api(env, child_env, home, ui_port, procs, database)
        if api_url is None:
            return 1
        child_env["PREFECT_API_URL"] = api_url
        write_up_state(home, api_url)  # how the other refit commands find this server
        child_env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)  # the server's alone: no child needs it
        refit_bin = str(Path(sys.executable).parent / "refit")
        # every deployment runs with the config `refit up` was given, as an absolute path
        config_args = ["--config", str(config.resolve())]
        if pool:  # to the work pool (its workers run them), not served here
            if subprocess.run([refit_bin, "deploy", "--pool", pool, *config_args], env=child_env).returncode:
                typer.echo(f"error: the deployments could not be deployed to work pool {pool}", err=True)
                return 1
        else:
            serve_argv = [refit_bin, "serve", *config_args]
            procs.append(("deployments", subprocess.Popen(serve_argv, env=child_env, start_new_session=True)))
        if webhook and not _start_webhook(config, webhook_port, child_env, procs):
            return 1
        _announce(api_url, webhook, webhook_port, cfg.dataset.name, pool)
        return _watch(procs)
    except KeyboardInterrupt:
        typer.echo("\nstopping ...")
        return 0
    finally:
        _stop(procs)
        remove_up_state(home)
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        lock.close()
