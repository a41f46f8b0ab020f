"""``refit generate`` and ``refit validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from refit_cli.options import CONFIG_OPT, JSON_OPT
from refit_cli.output import cli_errors, emit

generate_app = typer.Typer(no_args_is_help=True, help="Generate the demo churn data into the store.")


def _parse_segment(segment: str | None) -> dict[str, str] | None:
    if not segment:
        return None
    column, sep, value = segment.partition("=")
    if not sep or not column or not value:
        raise typer.BadParameter(f"expected COL=VALUE, got {segment!r}", param_hint="--segment")
    return {column: value}


@generate_app.command("base")
def generate_base_cmd(
    rows: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 0,
    parts: Annotated[int, typer.Option(min=1, help="Split into this many parquet files.")] = 1,
    config: Annotated[Path, CONFIG_OPT] = Path("refit.yaml"),
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Base training data: labelled customers, written where the config's sources point."""
    with cli_errors(as_json):
        from refit.config_loader import load_config
        from refit.demo import write_base_data
        from refit.io import store_from_settings

        cfg = load_config(config)
        result = write_base_data(store_from_settings(), cfg, rows=rows, seed=seed, parts=parts, progress=not as_json)
    emit(
        result,
        as_json,
        lambda r: f"wrote {r['rows']:,} rows ({r['churn_rate']:.1%} churned) to:\n  " + "\n  ".join(r["uris"]),
    )


@generate_app.command("production")
def generate_production_cmd(
    batches: Annotated[int, typer.Option(min=1, help="Hourly batches of traffic.")] = 6,
    rows_per_batch: Annotated[int, typer.Option(min=1)] = 2_000,
    drift: Annotated[str, typer.Option(help="none | covariate | concept")] = "none",
    segment: Annotated[str | None, typer.Option(help="Drift only in this segment, COL=VALUE.")] = None,
    strength: Annotated[float, typer.Option(min=0.0, help="Scale of the injected drift.")] = 1.0,
    seed: Annotated[int, typer.Option()] = 1,
    start: Annotated[
        str | None,
        typer.Option(help="UTC start of the first batch (ISO); default: 14 days ago, so most labels have arrived."),
    ] = None,
    config: Annotated[Path, CONFIG_OPT] = Path("refit.yaml"),
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Production traffic captured from serving, and the labels that arrive later."""
    if drift not in ("none", "covariate", "concept"):
        raise typer.BadParameter("must be none, covariate or concept", param_hint="--drift")
    drift_kind: Literal["none", "covariate", "concept"] = drift  # type: ignore[assignment]
    with cli_errors(as_json):
        from refit.config_loader import load_config
        from refit.demo import write_production_data
        from refit.io import store_from_settings

        cfg = load_config(config)
        result = write_production_data(
            store_from_settings(),
            cfg,
            batches=batches,
            rows_per_batch=rows_per_batch,
            drift=drift_kind,
            segment=_parse_segment(segment),
            strength=strength,
            seed=seed,
            start=start,
        )
    emit(
        result,
        as_json,
        lambda r: (
            f"wrote {r['rows']:,} production requests in {r['batches']} batches "
            f"(drift: {r['drift']}{' in ' + r['segment'] if r['segment'] else ''}) and {r['labels']:,} labels "
            f"under {r['requests_prefix']}"
        ),
    )


def _human_summary(r: dict[str, Any]) -> str:
    lines = [
        f"{'PASS' if r['passed'] else 'FAIL'} {r['file']}: {r['valid_rows']:,} of {r['rows']:,} rows valid, "
        f"{r['invalid_rows']:,} quarantined ({r['invalid_fraction']:.2%}, max {r['max_invalid_fraction']:.2%})"
    ]
    for f in r["failures"]:
        lines.append(f"  {f['column']}: {f['rule']} x{f['count']} e.g. {', '.join(f['examples'][:3])}")
    if r.get("quarantine_uri"):
        lines.append(f"  rejected rows: {r['quarantine_uri']}")
    lines.append(f"  summary: {r['summary_uri']}")
    return "\n".join(lines)


def validate(
    path: Annotated[str, typer.Argument(help="A parquet or CSV file: local path, s3:// URI, or a key in the store.")],
    config: Annotated[Path, CONFIG_OPT] = Path("refit.yaml"),
    kind: Annotated[str, typer.Option(help="training | capture: which contract to check.")] = "training",
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Validate one file against the dataset's schema. Exit 0 when it passes, 1 when it does not."""
    with cli_errors(as_json):
        from refit.config_loader import load_config
        from refit.data import validate_file
        from refit.io import store_from_settings

        cfg = load_config(config)
        result = validate_file(store_from_settings(), cfg, path, kind=kind)
    emit(result, as_json, _human_summary)
    if not result["passed"]:
        if not as_json:
            typer.echo(f"error: {result['error']}", err=True)
        raise typer.Exit(1)
