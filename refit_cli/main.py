"""``refit``: generate demo data, validate files, train, retrain, inspect models, check drift, replay history."""

from __future__ import annotations

import os
import signal
from typing import Annotated

import typer

from refit_cli import data_commands, demo_command, model_commands, ops_commands, replay_command, retrain_command

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(data_commands.generate_app, name="generate")
app.command("validate")(data_commands.validate)
app.command("train")(model_commands.train)
app.command("retrain")(retrain_command.retrain)
app.add_typer(model_commands.models_app, name="models")
app.command("predict")(model_commands.predict)
app.add_typer(ops_commands.drift_app, name="drift")
app.command("webhook")(ops_commands.webhook)
app.command("serve")(ops_commands.serve)
app.command("deploy")(ops_commands.deploy)
app.command("up")(ops_commands.up)
app.command("demo")(demo_command.demo)
app.command("replay")(replay_command.replay)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"refit {version('refit')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("refit (not installed: no version)")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print refit's version and exit."),
    ] = False,
) -> None:
    """Generate demo data, validate files, train, retrain, inspect models, check drift, replay history."""


#: Environment defaults for the Prefect a refit command starts in its own process (a user's
#: explicit setting wins). Prefect's server telemetry writes to the temporary server's SQLite
#: while the flow's own writes hold it, and printed a "database is locked" traceback on the
#: terminal: refit's processes send no telemetry. A command with no server to talk to starts
#: Prefect's local one (refit_cli.prefect_api), which took 20 to 60 s to start on a loaded 2-core
#: machine: Prefect's own 20 s limit failed those commands with a traceback.
PREFECT_ENV_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def apply_prefect_defaults(env: dict[str, str] | os._Environ[str]) -> None:
    for key, value in PREFECT_ENV_DEFAULTS.items():
        env.setdefault(key, value)


def main() -> None:
    apply_prefect_defaults(os.environ)  # before anything imports Prefect
    # A process started in the background by a non-interactive shell inherits SIGINT as ignored;
    # `refit up`, `serve` and `webhook` must still stop on Ctrl-C / SIGINT (and `up` on SIGTERM).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    app()
