"""``refit train`` and ``refit models ...`` (``refit retrain``: retrain_command.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from refit_cli.options import CONFIG_OPT, JSON_OPT, WINDOW_DAYS_OPT
from refit_cli.output import cli_errors, emit

models_app = typer.Typer(no_args_is_help=True, help="Inspect and move registered model versions.")


def _epoch_progress(enabled: bool, max_epochs: int) -> tuple[Any, Any]:
    """A tqdm bar per torch trial on a terminal; nothing otherwise."""
    if not enabled:
        return None, lambda: None
    from tqdm.auto import tqdm

    bars: dict[Any, Any] = {}

    def on_epoch(row: dict[str, Any]) -> None:
        key = (row.get("family"), row.get("trial"))
        if key not in bars:
            for bar in bars.values():
                bar.close()
            bars[key] = tqdm(total=max_epochs, desc=f"{key[0]} trial {key[1]}", unit="epoch", leave=True)
        bar = bars[key]
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k in ("train_loss", "val_loss") and v is not None})

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return on_epoch, close


def train(
    config: Annotated[Path, CONFIG_OPT] = Path("refit.yaml"),
    window_days: Annotated[float | None, WINDOW_DAYS_OPT] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Validate, split and train on the configured data; print the candidate artifact's URI."""
    with cli_errors(as_json):
        import sys

        from refit import pipeline
        from refit.config import load_config
        from refit.io import store_from_settings

        cfg = load_config(config)
        on_epoch, close = _epoch_progress(not as_json and sys.stderr.isatty(), cfg.training.max_epochs)
        try:
            run = pipeline.run_retrain(
                store_from_settings(),
                cfg,
                pipeline.RetrainOptions(window_days=window_days),
                until="train-candidates",
                on_epoch=on_epoch,
            )
        finally:
            close()
        data, splits, candidate = run.need("data"), run.need("splits"), run.need("candidate")
    result = {
        "ok": True,
        "run_id": run.run_id,
        "artifact_uri": candidate.artifact_uri,
        "family": candidate.family,
        "params": candidate.params,
        "validation": candidate.validation_metrics,
        "device": candidate.device,
        "train_s": candidate.train_s,
        "samples_per_s": candidate.samples_per_s,
        "trials": candidate.trials,
        "data": {
            "rows": splits.rows,
            "quarantined": data.invalid_rows,
            "fingerprint": data.fingerprint.sha256,
            "window_days": run.options.window_days,
        },
    }
    emit(result, as_json, lambda r: r["artifact_uri"])


def _registry() -> Any:
    from refit.io import store_from_settings
    from refit.registry import Registry
    from refit_cli.preflight import existing_store

    return Registry(store_from_settings(uri=existing_store()))


@models_app.command("list")
def models_list(as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """Every model, its versions and aliases."""
    with cli_errors(as_json):
        reg = _registry()
        out = []
        for name in reg.list_models():
            versions = reg.list_versions(name)
            out.append(
                {
                    "name": name,
                    "versions": [v.version for v in versions],
                    "aliases": reg.aliases(name),
                    "latest": versions[-1].created_at if versions else None,
                }
            )
    emit(
        {"models": out},
        as_json,
        lambda r: (
            "\n".join(f"{m['name']}: versions {m['versions']}, aliases {m['aliases']}" for m in r["models"])
            or "no models yet"
        ),
    )


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME:VERSION")],
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """One version's metadata: lineage, metrics, decision."""
    with cli_errors(as_json):
        reg = _registry()
        version = reg.resolve(ref)
        data = version.model_dump(mode="json")
        data["note"] = reg.promotion_note(version)
        if version.manifest_sha256 is None:
            data["integrity"] = "no manifest sha256 recorded: its artifact cannot be verified against the registry"
    emit(data, as_json, lambda r: json.dumps(r, indent=2, default=str))


EXPECT_OPT = typer.Option(
    "--expect-version",
    min=1,
    help="The champion you mean to replace; the move fails if it is no longer champion "
    "(default: the champion when the command started).",
)


def promote_champion(reg: Any, name: str, version: int, reason: str, expect: int | None) -> Any:
    """Point champion at ``version`` if it is still ``expect`` (compared inside the registry's
    compare-and-swap): of two operators who saw the same champion, exactly one moves it."""
    return reg.promote(name, version, expected_current=expect, reason=reason, forced=True, exclusive=True)


def rollback_champion(reg: Any, name: str, reason: str, expect: int | None) -> Any:
    """Roll champion back one step if it is still ``expect``: two operators undoing the same
    promotion move it back once, not twice."""
    return reg.rollback(name, reason=reason, expected_current=expect)


def _move_champion(
    name: str, expect_version: int | None, as_json: bool, what: str, move: Callable[[Any, int | None], Any]
) -> None:
    """Run ``move(registry, expected champion)`` and print the alias event it returns.

    The expected champion is ``expect_version``, or the champion when the command started.
    """
    from refit.registry import CHAMPION

    with cli_errors(as_json):
        reg = _registry()
        expect = reg.aliases(name).get(CHAMPION) if expect_version is None else expect_version
        event = move(reg, expect)
    emit(
        event.model_dump(mode="json"),
        as_json,
        lambda r: f"champion of {name}{what}: {r['from_version']} -> {r['to_version']}",
    )


@models_app.command("promote")
def models_promote(
    name: str,
    version: int,
    reason: Annotated[str, typer.Option(help="Why (recorded in the history).")],
    expect_version: Annotated[int | None, EXPECT_OPT] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Point champion at VERSION by hand (recorded as forced, with the reason)."""
    _move_champion(
        name, expect_version, as_json, "", lambda reg, expect: promote_champion(reg, name, version, reason, expect)
    )


@models_app.command("rollback")
def models_rollback(
    name: str,
    reason: Annotated[str, typer.Option(help="Why (recorded in the history).")],
    expect_version: Annotated[int | None, EXPECT_OPT] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Move champion back to the previous champion in one step."""
    _move_champion(
        name, expect_version, as_json, " rolled back", lambda reg, expect: rollback_champion(reg, name, reason, expect)
    )


@models_app.command("diff")
def models_diff(name: str, a: str, b: str, as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """Metrics of two versions (numbers or aliases) overall and per segment, side by side."""
    with cli_errors(as_json):
        diff = _registry().diff(name, int(a) if a.isdigit() else a, int(b) if b.isdigit() else b)
        data = diff.model_dump(mode="json")
        table = diff.to_frame().to_string(index=False)
    emit(data, as_json, lambda r: table)


@models_app.command("gc")
def models_gc(
    name: str,
    older_than_hours: Annotated[
        float,
        typer.Option(min=0, help="Only slots claimed at least this long ago (a run may still be registering)."),
    ] = 1.0,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Pipeline config whose 'retention' section applies (default: refit.yaml if present)."
        ),
    ] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Clean up after crashed and finished runs: version slots a crashed run claimed and never
    committed (their numbers stay taken), run folders no version refers to (older than
    retention.runs_days), and temp files of killed writes (older than retention.tmp_files_hours).
    Lists the versions registered for promotion that were never promoted; it removes no version."""
    from datetime import timedelta

    with cli_errors(as_json):
        from refit.config import RetentionConfig, load_config
        from refit.housekeeping import collect_runs, collect_temp_files

        path = config or Path("refit.yaml")
        retention = load_config(path).retention if config or path.is_file() else RetentionConfig()
        reg = _registry()
        cleaned = reg.collect_garbage(name, older_than=timedelta(hours=older_than_hours))
        runs = collect_runs(reg.store, reg, timedelta(days=retention.runs_days), model=name)
        tmp = collect_temp_files(reg.store, timedelta(hours=retention.tmp_files_hours))
        never = reg.never_promoted(name)
    emit(
        {
            "model": name,
            "cleaned": cleaned,
            "runs_removed": runs.removed,
            "runs_kept": {"registered": len(runs.kept_registered), "recent": len(runs.kept_recent)},
            "tmp_removed": tmp,
            "never_promoted": never,
            "retention": retention.model_dump(),
        },
        as_json,
        _human_gc,
    )


def _human_gc(r: dict[str, Any]) -> str:
    name = r["model"]
    lines = []
    if r["cleaned"]:
        lines.append(f"{name}: cleaned {len(r['cleaned'])} abandoned slot(s) {r['cleaned']}")
    if r["runs_removed"]:
        lines.append(
            f"{name}: removed {len(r['runs_removed'])} run folder(s) older than "
            f"{r['retention']['runs_days']:g} days that no version refers to"
        )
    if r["tmp_removed"]:
        lines.append(f"removed {len(r['tmp_removed'])} temp file(s) of killed writes")
    if not lines:
        lines.append(f"{name}: nothing to clean")
    for v in r["never_promoted"]:
        lines.append(
            f"{name}: version {v} was registered for promotion but never promoted (its run died before "
            f"promoting, or lost the race): promote it by hand or leave it"
        )
    return "\n".join(lines)
