"""``refit drift``, ``refit drift history``, ``refit webhook``, ``refit serve`` and ``refit up``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from refit_cli.options import AS_OF_OPT, CONFIG_OPT, JSON_OPT, WINDOW_DAYS_OPT, parse_as_of
from refit_cli.output import DRIFT_TRIGGER_EXIT, ERROR_EXIT, cli_errors, emit, heartbeat, quiet_expected_errors
from refit_cli.prefect_api import use_prefect

drift_app = typer.Typer(
    help="Check captured traffic for drift against the champion's reference. Exit status: 0 no retrain "
    f"triggered (no drift, suppressed, or no data), {DRIFT_TRIGGER_EXIT} the governor triggers a retrain "
    f"(--exit-zero: 0), {ERROR_EXIT} an error."
)


@drift_app.callback(invoke_without_command=True)
def drift(
    ctx: typer.Context,
    config: Annotated[Path, CONFIG_OPT] = Path("refit.yaml"),
    window_hours: Annotated[int | None, typer.Option(min=1, help="Captures of the last N hours.")] = None,
    window_rows: Annotated[
        int | None, typer.Option(min=1, help="Or the last N captured requests, whatever their age (replaces hours).")
    ] = None,
    as_of: Annotated[str | None, AS_OF_OPT] = None,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="When the governor says trigger, retrain here now.")
    ] = False,
    window_days: Annotated[float | None, WINDOW_DAYS_OPT] = None,
    exit_zero: Annotated[
        bool, typer.Option("--exit-zero", help=f"Exit 0 even when the governor triggers (else {DRIFT_TRIGGER_EXIT}).")
    ] = False,
    report: Annotated[
        bool,
        typer.Option("--report", help="Store Evidently's HTML report of this check whatever the decision."),
    ] = False,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Run the drift-check flow now, in this process (with --retrain, the retrain too, as of the same time),
    on the Prefect `refit retrain` uses (the line on stderr says which).

    Exit status: as drift_app's help says (refit_cli.output's codes). The config and the
    store are checked before Prefect starts. `refit drift [--config F] [--json] history` passes
    its options on to `history`.
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"config": config, "as_json": as_json}
        return
    with cli_errors(as_json):
        from refit_cli.preflight import checked_inputs

        _, store = checked_inputs(config)
        when = parse_as_of(as_of)
        use_prefect(quiet=as_json, store=store)

        from flows.drift_check import DriftCheckParameters, drift_check

        quiet_expected_errors()
        with heartbeat("drift check", as_json):
            result = drift_check(
                DriftCheckParameters(
                    config_path=str(config),
                    store=store,
                    window_hours=window_hours,
                    window_rows=window_rows,
                    as_of=when,
                    report=True if report else None,
                )
            ).model_dump(mode="json")
        if retrain and result["decision"] == "trigger":
            from flows.retrain import RetrainParameters
            from flows.retrain import retrain as retrain_flow

            with heartbeat("retrain", as_json):
                run = retrain_flow(
                    RetrainParameters(
                        config_path=str(config),
                        store=store,
                        window_days=window_days,
                        as_of=when,
                        trigger="drift",
                        reason=f"refit drift --retrain: {result['detail']}",
                    )
                )
            result["retrain"] = f"retrained in this process: {run.headline}"
            result["retrain_result"] = run.model_dump(mode="json")
    emit(result, as_json, _human_drift)
    if result["decision"] == "trigger" and not exit_zero:
        raise typer.Exit(DRIFT_TRIGGER_EXIT)


def _human_drift(r: dict[str, Any]) -> str:
    lines = [
        f"{'DRIFT' if r['drift_detected'] else 'no drift'} in {r['model']} (champion v{r['champion_version']}): "
        f"share {r['drift_share']:.2f}, drifted: {', '.join(r['drifted_columns']) or 'none'}"
    ]
    if r["decay_detected"]:
        lines.append(f"performance decayed in: {', '.join(r['decayed_segments'])}")
    lines.append(f"governor: {r['decision']} ({r['reason']}) {r['detail']}")
    lines.append(f"retrain: {r['retrain']}")
    lines.append(f"report: {r['report_uri']}")
    return "\n".join(lines)


@drift_app.command("history")
def drift_history(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Pipeline config (YAML).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of per-column scores over time here.")] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Per-column drift scores over time, and every governor decision (trigger or suppress, and why)."""
    parent = ctx.obj if isinstance(ctx.obj, dict) else {}
    as_json = as_json or bool(parent.get("as_json"))
    config = config or parent.get("config") or Path("refit.yaml")
    with cli_errors(as_json):
        from refit.drift import plot_drift_history, read_drift_history
        from refit.io import store_from_settings
        from refit.policy import Ledger
        from refit_cli.preflight import checked_inputs

        cfg, store_uri = checked_inputs(config)
        store = store_from_settings(uri=store_uri)
        history = read_drift_history(store, cfg.dataset.name)
        ledger = Ledger(store, cfg.dataset.name).entries()
        if plot is not None and len(history):
            plot.write_bytes(plot_drift_history(history, title=f"drift of {cfg.dataset.name}"))
        result = {
            "model": cfg.dataset.name,
            "checks": history.to_dict(orient="records"),
            "decisions": [e.model_dump(mode="json") for e in ledger],
            "plot": str(plot) if plot is not None and len(history) else None,
        }
        table = history.to_string(index=False) if len(history) else "no drift checks yet"
    emit(
        result,
        as_json,
        lambda r: (
            table
            + "\n\ngovernor decisions:\n"
            + (
                "\n".join(
                    f"  {d['decision']['at']} {d['signal']['source']:<11} {d['decision']['action']:<8} "
                    f"{d['decision']['reason']}: {d['decision']['detail']}"
                    for d in r["decisions"]
                )
                or "  none"
            )
            + (f"\nplot: {r['plot']}" if r["plot"] else "")
        ),
    )


def webhook(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 4280,
    config: Annotated[Path, CONFIG_OPT] = Path("refit.yaml"),
    insecure_dev: Annotated[
        bool, typer.Option("--insecure-dev", help="Run without authentication (never in production).")
    ] = False,
) -> None:
    """Run the drift-alert receiver (POST /alerts/drift, GET /healthz) with uvicorn."""
    with cli_errors(False):
        from refit.config import Settings
        from refit.config_loader import load_config
        from refit.webhook.app import check_credentials

        settings = Settings()
        check_credentials(settings, insecure_dev)  # a blank or missing secret is the one line, before Prefect
        pipeline_config = load_config(config)
        use_prefect(quiet=False)
        import uvicorn

        from deployments.webhook import WebhookSettings, build_app
        from refit.io import store_from_settings
        from refit.webhook.server import server_config

        if insecure_dev:
            typer.secho(
                "WARNING: --insecure-dev: the webhook accepts UNAUTHENTICATED alerts. Never expose it.",
                fg="red",
                bold=True,
                err=True,
            )
        app, dispatcher = build_app(
            store_from_settings(settings),
            pipeline_config,
            str(config),
            settings,
            insecure_dev=insecure_dev,
            webhook_settings=WebhookSettings(),
        )
        dispatcher.run_retry_loop()
        typer.echo(f"refit webhook listening on http://{host}:{port}/alerts/drift", err=True)
        try:
            # Request heads are bounded (431) before anything reads them: see refit.webhook.server.
            uvicorn.Server(server_config(app, host, port, log_level="info")).run()
        finally:
            dispatcher.stop()


SERVE_CONFIG_OPT = typer.Option(
    "--config",
    "-c",
    help="Pipeline config of every deployment (default: REFIT_CONFIG_PATH, else refit.yaml).",
)


def _deployments_with(config: Path | None) -> tuple[list[Any], Any, str]:
    """The four deployments (on this REFIT_STORE, with ``config`` as an absolute path), their
    settings and the store; a bad config is one line here, not a red run every hour."""
    from deployments.settings import DeploymentSettings
    from refit.config_loader import load_config
    from refit.io import resolve_store_uri

    settings = DeploymentSettings()
    if config is not None:
        # absolute: the runs' worker may start in another folder
        settings = settings.model_copy(update={"config_path": str(config.resolve())})
    load_config(settings.config_path)
    use_prefect(quiet=False)  # after the config check: a bad config is the one line

    from deployments.definitions import build_deployments

    store = resolve_store_uri()
    return build_deployments(settings, store=store), settings, store


def serve(config: Annotated[Path | None, SERVE_CONFIG_OPT] = None) -> None:
    """Serve the deployments (schedules, manual runs, the drift trigger) from this process, on REFIT_STORE."""
    with cli_errors(False):
        deployments, settings, _ = _deployments_with(config)

        from prefect import serve as prefect_serve

        from deployments.notifications import apply_notifications

        typer.echo(apply_notifications(settings), err=True)
    prefect_serve(*deployments, pause_on_shutdown=False)


def deploy(
    pool: Annotated[str, typer.Option("--pool", help="Work pool to deploy to (a process pool is created if missing).")],
    config: Annotated[Path | None, SERVE_CONFIG_OPT] = None,
) -> None:
    """Deploy the four deployments to a work pool (no serving here): `prefect worker start --pool
    NAME` runs them, on any machine with this package installed. Same config and store as `refit serve`."""
    with cli_errors(False):
        deployments, settings, store = _deployments_with(config)

        from deployments.notifications import apply_notifications
        from deployments.pool import deploy_to_pool, ensure_pool

        kind = ensure_pool(pool)
        names = deploy_to_pool(deployments, pool)
        typer.echo(apply_notifications(settings), err=True)
    typer.echo(f"deployed to work pool {pool} ({kind}): {', '.join(names)}")
    typer.echo(f"config {settings.config_path}; store {store}")
    typer.echo(f"run them with: prefect worker start --pool {pool}  (where this package is installed)")


def up(
    config: Annotated[Path, CONFIG_OPT] = Path("refit.yaml"),
    ui_port: Annotated[int, typer.Option(help="Prefect server port (when refit starts one).")] = 4200,
    webhook_port: Annotated[int, typer.Option(help="Webhook port.")] = 4280,
    no_webhook: Annotated[bool, typer.Option("--no-webhook", help="Do not start the webhook receiver.")] = False,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="Run the Prefect server on this PostgreSQL database (postgresql://USER:PASSWORD@HOST/DB; "
            "default: PREFECT_API_DATABASE_CONNECTION_URL, else SQLite beside the store).",
        ),
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option("--pool", help="Deploy to this work pool (as `refit deploy --pool`) instead of serving here."),
    ] = None,
) -> None:
    """Prefect server + served deployments + webhook receiver, for local use. Ctrl-C stops everything."""
    from refit_cli.up import run_up

    raise typer.Exit(
        run_up(
            config,
            ui_port=ui_port,
            webhook_port=webhook_port,
            webhook=not no_webhook,
            env=dict(os.environ),
            database=database,
            pool=pool,
        )
    )
