"""``refit up``: one command for local use, and a clean stop on Ctrl-C."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer

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


def prefect_home(env: dict[str, str]) -> Path:
    """PREFECT_HOME if set; else a folder beside the local store (so its SQLite lives with the data)."""
    if env.get("PREFECT_HOME"):
        return Path(env["PREFECT_HOME"])
    store = store_uri(env)
    base = Path(store) if not store.startswith("s3://") else Path.home() / ".refit"
    return (base / "prefect").resolve()


def store_uri(env: dict[str, str]) -> str:
    """The store ``refit up`` runs everything on: ``REFIT_STORE`` of ``env``, else the default."""
    from refit.io import resolve_store_uri

    return resolve_store_uri(env.get("REFIT_STORE"))


def run_up(config: Path, *, ui_port: int, webhook_port: int, webhook: bool, env: dict[str, str]) -> int:
    from refit.config import Settings, load_config

    cfg = load_config(config)  # fail fast on a bad config, before starting anything
    settings = Settings()
    given = [s.get_secret_value() for s in (settings.webhook_secret, settings.webhook_token) if s is not None]
    if webhook and any(not value.strip() for value in given):
        typer.echo(
            "error: REFIT_WEBHOOK_SECRET or REFIT_WEBHOOK_TOKEN is set but empty or only whitespace: "
            "unset it or give it a value (export REFIT_WEBHOOK_SECRET=$(openssl rand -hex 32)).",
            err=True,
        )
        return 1
    if webhook and not given:
        typer.echo(
            "error: REFIT_WEBHOOK_SECRET is not set: the webhook refuses unauthenticated alerts. "
            "Set one (export REFIT_WEBHOOK_SECRET=$(openssl rand -hex 32)) or pass --no-webhook.",
            err=True,
        )
        return 1
    home = prefect_home(env)
    home.mkdir(parents=True, exist_ok=True)
    lock_path = home / "refit-up.lock"
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
        return 1
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)  # `kill` stops everything as cleanly as Ctrl-C
    # the served deployments and the webhook are told the same store, as an absolute URI
    child_env = env | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "REFIT_STORE": store_uri(env),
    }
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    bin_dir = Path(sys.executable).parent
    try:
        api_url = env.get("PREFECT_API_URL")
        if api_url:
            typer.echo(f"using the Prefect API at {api_url}")
        else:
            api_url = f"http://127.0.0.1:{ui_port}/api"
            server_env = child_env | {
                "PREFECT_SERVER_API_HOST": "127.0.0.1",
                "PREFECT_SERVER_API_PORT": str(ui_port),
                "PREFECT_UI_API_URL": api_url,
            }
            typer.echo(f"starting the Prefect server (SQLite under {home}) ...")
            server = subprocess.Popen(
                [str(bin_dir / "prefect"), "server", "start"],
                env=server_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            procs.append(("prefect server", server))
            if not _wait_http(f"{api_url}/health", 120, server):
                typer.echo(
                    f"error: the Prefect server did not start on port {ui_port} (is something else using it?)", err=True
                )
                return 1
        child_env["PREFECT_API_URL"] = api_url
        procs.append(
            ("deployments", subprocess.Popen([str(bin_dir / "refit"), "serve"], env=child_env, start_new_session=True))
        )
        if webhook:
            hook = subprocess.Popen(
                [str(bin_dir / "refit"), "webhook", "--port", str(webhook_port), "--config", str(config)],
                env=child_env,
                start_new_session=True,
            )
            procs.append(("webhook", hook))
            if not _wait_http(f"http://127.0.0.1:{webhook_port}/healthz", 60, hook):
                typer.echo(f"error: the webhook did not start on port {webhook_port}", err=True)
                return 1
        ui = api_url.removesuffix("/api")
        typer.echo(f"""
refit is up. Ctrl-C stops everything.
  Prefect UI:   {ui}  (Deployments > retrain/retrain-manual > Run > Custom run)
  Prefect API:  {api_url}
  Webhook:      {f"http://127.0.0.1:{webhook_port}/alerts/drift" if webhook else "not started (--no-webhook)"}
  Deployments:  retrain-weekly, retrain-manual, retrain-on-drift, drift-check-hourly
""")
        if webhook:
            typer.echo(
                "A signed drift alert (paste into a shell where REFIT_WEBHOOK_SECRET is set):\n"
                + CURL_EXAMPLE.format(model=cfg.dataset.name, port=webhook_port)
                + "\n"
            )
        while True:
            for name, proc in procs:
                if proc.poll() is not None:
                    typer.echo(f"error: {name} exited with {proc.returncode}; stopping", err=True)
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        typer.echo("\nstopping ...")
        return 0
    finally:
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
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        lock.close()
