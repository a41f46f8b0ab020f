"""``refit``: generate demo data, validate files, train, retrain, inspect models, check drift, replay history."""

from __future__ import annotations

import signal

import typer

from refit_cli import data_commands, demo_command, model_commands, ops_commands, replay_command

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(data_commands.generate_app, name="generate")
app.command("validate")(data_commands.validate)
app.command("train")(model_commands.train)
app.command("retrain")(model_commands.retrain)
app.add_typer(model_commands.models_app, name="models")
app.add_typer(ops_commands.drift_app, name="drift")
app.command("webhook")(ops_commands.webhook)
app.command("serve")(ops_commands.serve)
app.command("up")(ops_commands.up)
app.command("demo")(demo_command.demo)
app.command("replay")(replay_command.replay)


def main() -> None:
    # A process started in the background by a non-interactive shell inherits SIGINT as ignored;
    # `refit up`, `serve` and `webhook` must still stop on Ctrl-C / SIGINT (and `up` on SIGTERM).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    app()
