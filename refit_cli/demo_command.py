"""``refit demo``: the whole story on a fresh local store, explained as it happens."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from refit_cli.output import cli_errors
from refit_cli.prefect_api import HOME_DIR, use_prefect

SEGMENT = {"region": "south"}
#: The file that marks a folder as the demo's own, so a later demo run may clear it.
DEMO_MARKER = ".refit-demo"


def _say(text: str, as_json: bool) -> None:
    if not as_json:
        typer.secho(text, fg="cyan", bold=text.startswith("==")) if text.startswith("==") else typer.echo(text)


def demo(
    store: Annotated[
        Path, typer.Option(help="Demo store: new, empty, or made by an earlier demo (cleared first).")
    ] = Path(".refit/demo"),
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline config.")] = Path("refit.yaml"),
    rows: Annotated[int, typer.Option(min=5000, help="Base customers.")] = 40_000,
    batches: Annotated[int, typer.Option(min=4, help="Hourly production batches.")] = 48,
    rows_per_batch: Annotated[int, typer.Option(min=100)] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object at the end.")] = False,
) -> None:
    """Generate data, train a champion, let production drift in one segment, detect it, retrain, gate per segment."""
    started = time.perf_counter()
    store = store.resolve()
    with cli_errors(as_json):
        from refit.config_loader import load_config

        load_config(config)  # everything is checked before anything is deleted
        prepare_demo_store(store)
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        quiet_console()
        use_prefect(quiet=as_json, store=str(store))
        summary = _story(store, config, rows, batches, rows_per_batch, as_json)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    if as_json:
        import json

        typer.echo(json.dumps(summary, default=str))
    else:
        _say(f"\n(demo took {summary['seconds']:.0f} s)", as_json)


def quiet_console() -> None:
    """Keep Prefect's per-task INFO lines off the terminal, where the story is told instead, while
    every run's INFO logs still reach the API (the UI's Logs tab). Call before Prefect is imported.

    Only the console handler's level is raised: ``PREFECT_LOGGING_LEVEL=WARNING`` would raise the
    ``prefect`` logger's, and the run loggers under it would send the API nothing below WARNING.
    """
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def prepare_demo_store(store: Path) -> None:
    """Make ``store`` an empty demo store, clearing it only when an earlier demo made it.

    A folder is cleared only when it carries :data:`DEMO_MARKER` (written when the demo
    creates it); an empty folder is used as it is; anything else is refused, untouched.
    The store's Prefect home (``prefect/``: the earlier runs, a running ``refit up``'s lock and
    state) is kept, and does not count as content.
    """
    from refit.errors import ConfigError

    if store.exists() and not store.is_dir():
        raise ConfigError(f"demo store {store} is a file, not a folder: pick another --store")
    content = [p for p in store.iterdir() if p.name != HOME_DIR] if store.is_dir() else []
    if content:
        if not (store / DEMO_MARKER).is_file():
            raise ConfigError(
                f"refusing to clear {store}: it holds files and was not created by 'refit demo' "
                f"(no {DEMO_MARKER} marker); pick a new or empty folder with --store"
            )
        for path in content:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    store.mkdir(parents=True, exist_ok=True)
    (store / DEMO_MARKER).write_text("created by 'refit demo': the next 'refit demo --store' here clears it\n")


Say = Callable[[str], None]


def _story(
    store_path: Path, config_path: Path, rows: int, batches: int, rows_per_batch: int, as_json: bool
) -> dict[str, Any]:
    """The demo's five chapters, told as they run; returns what each retrain and the drift check found."""
    from refit.config_loader import load_config
    from refit.demo import write_base_data
    from refit.io import open_store

    cfg = load_config(config_path)
    store = open_store(str(store_path))
    say: Say = lambda text: _say(text, as_json)  # noqa: E731

    say(f"== 1/5  A subscription business: {rows:,} customers with known churn outcomes")
    base = write_base_data(store, cfg, rows=rows, seed=0)
    say(f"   wrote {base['rows']:,} rows ({base['churn_rate']:.1%} churned) to {base['uris'][0]}")
    first = _first_retrain(config_path, store, cfg.dataset.name, say)
    _production(store, cfg, batches, rows_per_batch, say)
    check = _drift_check(config_path, store, say)
    second = _drift_retrain(config_path, store, check, say)
    say(_EPILOGUE.format(first=first.version, store_path=store_path, name=cfg.dataset.name))
    return {
        "store": str(store_path),
        "first": first.model_dump(mode="json"),
        "drift": check.model_dump(mode="json"),
        "second": second.model_dump(mode="json") if second else None,
    }


def _first_retrain(config_path: Path, store: Any, name: str, say: Say) -> Any:
    from flows.retrain import RetrainParameters, retrain

    say("\n== 2/5  First retrain: there is no champion yet, so only the value thresholds apply")
    first = retrain(
        RetrainParameters(config_path=str(config_path), store=store.uri, trigger="manual", reason="demo: first model")
    )
    say(f"   {first.headline}")
    say(f"   -> {name} version {first.version} is the champion ({first.candidate['family']})")
    return first


def _production(store: Any, cfg: Any, batches: int, rows_per_batch: int, say: Say) -> None:
    """Three weeks of requests scored by the champion, with concept drift in :data:`SEGMENT`."""
    import pandas as pd

    from refit.demo import write_production_data
    from refit.pipeline import load_version, scores
    from refit.registry import Registry

    champion = Registry(store).champion(cfg.dataset.name)
    model = load_version(store, champion)
    start = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta(days=21)
    say(
        f"\n== 3/5  Production: {batches * rows_per_batch:,} requests scored by v{champion.version}, "
        f"captured from serving. Customer behaviour in region=south changes (concept drift: churn rises there "
        f"and the old signals flip); labels arrive days later"
    )
    produced = write_production_data(
        store,
        cfg,
        batches=batches,
        rows_per_batch=rows_per_batch,
        drift="concept",
        segment=SEGMENT,
        seed=11,
        start=str(start),
        predict=lambda df: scores(model, df, cfg.dataset.task),
        model_version=str(champion.version),
    )
    say(f"   captured {produced['rows']:,} requests; {produced['labels']:,} labels have arrived")


def _drift_check(config_path: Path, store: Any, say: Say) -> Any:
    from flows.drift_check import DriftCheckParameters, drift_check

    window_hours = 24 * 22
    say(f"\n== 4/5  Drift check: the last {window_hours // 24} days of captures vs the champion's training data")
    check = drift_check(DriftCheckParameters(config_path=str(config_path), store=store.uri, window_hours=window_hours))
    say(
        f"   feature drift: {'yes' if check.drift_detected else 'no'} (share {check.drift_share:.2f} of features; "
        f"drifted: {', '.join(check.drifted_columns) or 'none'})"
    )
    say(f"   performance decay: {', '.join(check.decayed_segments) or 'none'}")
    say(f"   governor: {check.decision} ({check.reason}): {check.detail}")
    say(f"   Evidently report: {check.report_uri}")
    return check


def _drift_retrain(config_path: Path, store: Any, check: Any, say: Say) -> Any:
    """The retrain the governor triggered, or None when it did not."""
    from flows.retrain import RetrainParameters, retrain

    if check.decision != "trigger":
        say("\n== 5/5  The governor did not trigger a retrain, so the champion stays")
        return None
    say(
        "\n== 5/5  Retrain on base data + the labelled captures; the candidate must beat the champion "
        "overall AND not lose any segment beyond tolerance"
    )
    params = RetrainParameters(
        config_path=str(config_path), store=store.uri, trigger="drift", reason=f"demo: {check.detail}"
    )
    second = retrain(params)
    say(f"   {second.headline}")
    moved = second.champion_after != second.champion_before
    where = f"moved to v{second.champion_after}" if moved else f"stays v{second.champion_before}"
    say(f"   -> version {second.version} registered; champion {where}")
    say(f"   dossier (per-segment table, intervals, plot): {second.dossier.get('markdown')}")
    return second


_EPILOGUE = """
What happened
  * refit trained a first model and made it champion (v{first}).
  * Production behaviour changed for customers in region=south. Feature distributions barely moved,
    so a drift monitor on inputs alone would stay quiet; the labelled captures showed the champion's
    accuracy there had decayed, and the governor turned that into one retrain.
  * The retrained candidate was compared with the champion on the same held-out rows, overall and for
    every segment, with paired bootstrap confidence intervals; the gate's decision and its reasons are
    in the dossier.

Explore (the demo's store is {store_path}):
  export REFIT_STORE={store_path}
  .venv/bin/refit models list
  .venv/bin/refit models diff {name} 1 2
  .venv/bin/refit drift history
  .venv/bin/refit up          # Prefect UI at http://127.0.0.1:4200: this demo's runs, the deployments served
"""
