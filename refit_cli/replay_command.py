"""``refit replay``: a labelled history, window by window, as the deployments would have run it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from refit_cli.options import CONFIG_OPT, JSON_OPT, parse_as_of
from refit_cli.output import cli_errors, emit

DemoDrift = Literal["none", "covariate", "concept"]


def replay(
    config: Annotated[Path, CONFIG_OPT] = Path("refit.yaml"),
    history: Annotated[
        Path | None,
        typer.Option(help="Labelled production rows (CSV or parquet): id, event time, features, target."),
    ] = None,
    window: Annotated[str, typer.Option(help="Window of each drift check, and the step between them: 7d, 36h.")] = "7d",
    start: Annotated[
        str | None, typer.Option("--from", help="First window's start (default: the first row's day).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Replay up to here (default: the last row).")] = None,
    label_delay: Annotated[
        str, typer.Option(help="Without a label_time column, labels arrive this long after the request: 0h, 2d.")
    ] = "0h",
    store: Annotated[
        str | None,
        typer.Option(help="Scratch store for the replay (default: ./.refit-replay/<model>); must hold no versions."),
    ] = None,
    demo_drift: Annotated[
        DemoDrift | None,
        typer.Option(help="Instead of --history: weeks of generated churn traffic with this drift."),
    ] = None,
    demo_weeks: Annotated[int, typer.Option(min=1, help="With --demo-drift: how many weeks.")] = 8,
    demo_rows: Annotated[int, typer.Option(min=100, help="With --demo-drift: rows per week.")] = 2000,
    demo_drift_from: Annotated[int, typer.Option(min=0, help="With --demo-drift: first drifted week.")] = 4,
    segment: Annotated[
        str | None, typer.Option(help="With --demo-drift: drift inside this segment only, e.g. region=south.")
    ] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Replay a history through capture, drift check, governor, retrain and gate on a scratch store;
    writes a timeline (JSON, Markdown, PNG) of every window's decisions and the live metric of the
    serving champion beside the first model and a naive baseline."""
    with cli_errors(as_json):
        result = _run(
            config, history, window, start, end, label_delay, store, demo_drift, demo_weeks, demo_rows,
            demo_drift_from, segment, progress=not as_json,
        )  # fmt: skip
    emit(result, as_json, lambda r: r["markdown"] + "\n" + "\n".join(f"{k}: {v}" for k, v in r["timeline"].items()))


def _run(
    config_path: Path,
    history_path: Path | None,
    window: str,
    start: str | None,
    end: str | None,
    label_delay: str,
    store_uri: str | None,
    demo_drift: DemoDrift | None,
    demo_weeks: int,
    demo_rows: int,
    demo_drift_from: int,
    segment: str | None,
    *,
    progress: bool,
) -> dict[str, Any]:
    from refit.config_loader import load_config
    from refit.errors import ConfigError
    from refit.io import open_store, resolve_store_uri
    from refit.replay import parse_window
    from refit.replay import replay as run_replay

    cfg = load_config(config_path)
    if (history_path is None) == (demo_drift is None):
        raise ConfigError("give exactly one of --history FILE and --demo-drift none|covariate|concept")
    scratch = open_store(store_uri or str(Path(".refit-replay") / cfg.dataset.name))
    if demo_drift is not None:
        frame = _demo_history(scratch, cfg, demo_drift, demo_weeks, demo_rows, demo_drift_from, segment)
    else:
        assert history_path is not None
        frame = _read_history(history_path)
        _copy_sources(open_store(resolve_store_uri()), scratch, cfg.dataset.sources)

    def report(w: Any) -> None:
        if progress:
            retrain = f", retrain {w.retrain_outcome}" if w.retrain_outcome else ""
            typer.echo(
                f"window {w.index} ending {w.end:%Y-%m-%d %H:%M}: {w.rows:,} rows, {w.decision}{retrain}", err=True
            )

    result = run_replay(
        scratch,
        cfg,
        frame,
        window=parse_window(window),
        start=parse_as_of(start),
        end=parse_as_of(end),
        label_delay=parse_window(label_delay, allow_zero=True),
        on_window=report,
    )
    uris = result.save(scratch)
    return {**result.to_dict(), "timeline": uris, "markdown": result.to_markdown()}


def _read_history(path: Path) -> Any:
    import pandas as pd

    from refit.errors import DataError

    if not path.is_file():
        raise DataError(f"history file not found: {path}")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _copy_sources(source: Any, scratch: Any, sources: list[str]) -> None:
    """The config's base data, copied into the scratch store under the same keys (a source given as
    an absolute path or s3:// URI is read where it is)."""
    from refit.data import resolve_sources

    for file in resolve_sources(source, sources):
        if file.store is source and not scratch.exists(file.key):
            scratch.put_bytes(file.key, source.get_bytes(file.key))


def _demo_history(
    scratch: Any, cfg: Any, drift: DemoDrift, weeks: int, rows: int, drift_from: int, segment: str | None
) -> Any:
    from refit.demo import production_history, write_base_data
    from refit.errors import ConfigError

    chosen = None
    if segment:
        column, sep, value = segment.partition("=")
        if not sep:
            raise ConfigError(f"--segment {segment!r}: expected COLUMN=VALUE, e.g. region=south")
        chosen = {column: value}
    write_base_data(scratch, cfg, rows=20_000, seed=7)
    return production_history(weeks=weeks, rows_per_week=rows, drift=drift, drift_from_week=drift_from, segment=chosen)
