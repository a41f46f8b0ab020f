"""``refit retrain``: the retrain flow in this process, with an exit status per outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from refit_cli.options import AS_OF_OPT, CONFIG_OPT, JSON_OPT, WINDOW_DAYS_OPT, parse_as_of
from refit_cli.output import ERROR_EXIT, RETRAIN_EXIT_CODES, cli_errors, emit, heartbeat, quiet_expected_errors
from refit_cli.prefect_api import use_prefect


def retrain(
    config: Annotated[Path, CONFIG_OPT] = Path("refit.yaml"),
    window_days: Annotated[float | None, WINDOW_DAYS_OPT] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote despite the gate (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why: kept with the version and the promotion.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Evaluate only; register nothing.")] = False,
    as_of: Annotated[str | None, AS_OF_OPT] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Run the retrain flow now, in this process, on Prefect's API from PREFECT_API_URL, else a running
    `refit up`'s of this store, else a local one in the store's Prefect home (the line on stderr says which).

    Exit status: 0 promoted (or the first model), 3 rejected, 4 inconclusive, 5 smoke test
    failed, 1 error. A dry run exits with the status its gate decision would have. The config,
    the store and the options are checked before Prefect starts: a typo is one line and no run.
    """
    with cli_errors(as_json):
        from refit.errors import ConfigError
        from refit_cli.preflight import checked_inputs

        _, store = checked_inputs(config)
        when = parse_as_of(as_of)
        use_prefect(quiet=as_json, store=store)

        from pydantic import ValidationError

        from flows.retrain import RetrainParameters
        from flows.retrain import retrain as retrain_flow

        try:
            params = RetrainParameters(
                config_path=str(config),
                store=store,
                window_days=window_days,
                as_of=when,
                force=force,
                reason=reason,
                dry_run=dry_run,
                trigger="cli",
            )
        except ValidationError as exc:
            raise ConfigError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
        quiet_expected_errors()
        with heartbeat("retrain", as_json):
            result = retrain_flow(params)
    emit(result.model_dump(mode="json"), as_json, _human_retrain)
    raise typer.Exit(RETRAIN_EXIT_CODES.get(result.outcome, ERROR_EXIT))


def _human_retrain(r: dict[str, Any]) -> str:
    lines = [r["headline"]]
    if r.get("version") is not None:
        lines.append(
            f"registered {r['model']} version {r['version']}; champion: "
            f"{r.get('champion_before') or 'none'} -> {r.get('champion_after') or 'none'}"
        )
    elif r.get("dry_run"):
        lines.append("dry run: nothing registered")
    if r.get("dossier", {}).get("markdown"):
        lines.append(f"dossier: {r['dossier']['markdown']}")
    return "\n".join(lines)
