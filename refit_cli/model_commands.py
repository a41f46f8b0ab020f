"""``refit train`` and ``refit models ...`` (``refit retrain``: retrain_command.py)."""

from __future__ import annotations

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

        from refit import recipe
        from refit.config_loader import load_config
        from refit.io import store_from_settings

        cfg = load_config(config)
        on_epoch, close = _epoch_progress(not as_json and sys.stderr.isatty(), cfg.training.max_epochs)
        try:
            run = recipe.run_retrain(
                store_from_settings(),
                cfg,
                recipe.RetrainOptions(window_days=window_days),
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


def _primary_metric(version: Any) -> tuple[str | None, float | None]:
    """The metric the gate judged ``version`` by, and its value."""
    decision = version.decision if isinstance(version.decision, dict) else {}
    metric = decision.get("metric") or next(iter(version.metrics), None)
    return metric, (version.metrics.get(metric) if metric else None)


def _when(at: Any) -> str:
    from datetime import datetime

    moment = datetime.fromisoformat(at) if isinstance(at, str) else at
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"


def model_summary(reg: Any, name: str) -> dict[str, Any]:
    """One model's row of ``refit models list``: versions, aliases, champion's metric, last change."""
    from refit.registry import CHAMPION
    from refit.registry.records import show_version

    versions = reg.list_versions(name)
    aliases = reg.aliases(name)
    events = reg.history(name)
    champion = next((v for v in versions if v.version == aliases.get(CHAMPION)), None)
    metric, value = _primary_metric(champion) if champion is not None else (None, None)
    changes = [(v.created_at, f"registered version {v.version} by {v.author}") for v in versions]
    changes += [
        (e.at, f"{e.alias} {show_version(e.from_version)} -> {show_version(e.to_version)} by {e.author}")
        for e in events
    ]
    last_at, last_what = max(changes, key=lambda c: c[0]) if changes else (None, None)
    return {
        "name": name,
        "versions": [v.version for v in versions],
        "aliases": aliases,
        "latest": versions[-1].created_at if versions else None,
        "champion": {"version": champion.version, "metric": metric, "value": value} if champion else None,
        "last_change": {"at": last_at, "what": last_what} if last_at else None,
    }


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def _human_list(r: dict[str, Any]) -> str:
    if not r["models"]:
        return "no models yet"
    rows = []
    for m in r["models"]:
        champ = m["champion"]
        value = champ and champ["value"]
        rows.append(
            [
                m["name"],
                f"{len(m['versions'])} ({m['versions'][0]}..{m['versions'][-1]})" if m["versions"] else "0",
                ", ".join(f"{a}={v}" for a, v in m["aliases"].items()) or "-",
                f"{champ['metric']} {value:.4f}" if champ and value is not None else "-",
                f"{_when(m['last_change']['at'])}: {m['last_change']['what']}" if m["last_change"] else "-",
            ]
        )
    return _table(rows, ["NAME", "VERSIONS", "ALIASES", "CHAMPION METRIC", "LAST CHANGE"])


@models_app.command("list")
def models_list(as_json: Annotated[bool, JSON_OPT] = False) -> None:
    """Every model: versions, aliases, the champion's metric and the last change, as a table."""
    with cli_errors(as_json):
        reg = _registry()
        out = [model_summary(reg, name) for name in reg.list_models()]
    emit({"models": out}, as_json, _human_list)


def _human_show(r: dict[str, Any]) -> str:
    decision = r.get("decision") if isinstance(r.get("decision"), dict) else {}
    lines = [
        f"{r['name']} version {r['version']}"
        + (f"  [{', '.join(r['aliases_here'])}]" if r.get("aliases_here") else ""),
        f"  registered  {_when(r['created_at'])} by {r['author']}"
        + (f" (run {r['run_id']})" if r.get("run_id") else ""),
        f"  git commit  {r.get('git_commit') or '-'}",
        f"  artifact    {r['artifact_uri']}",
        f"  params      {', '.join(f'{k}={v}' for k, v in r['params'].items()) or '-'}",
        "  metrics     " + (", ".join(f"{k}={v:.4f}" for k, v in r["metrics"].items() if v is not None) or "-"),
    ]
    if decision:
        lines.append(f"  decision    {decision.get('outcome')}: {decision.get('headline', '')}")
    if r.get("compared_with") is not None:
        lines.append(f"  compared    with version {r['compared_with']}")
    for name, ds in r.get("datasets", {}).items():
        lines.append(f"  data        {name}: {ds['rows']:,} rows, sha256 {ds['sha256'][:12]}")
    if r.get("dossier_uris"):
        lines.append(f"  dossier     {r['dossier_uris'][0]}")
    if r.get("description"):
        lines.append(f"  reason      {r['description']}")
    for key in ("note", "integrity"):
        if r.get(key):
            lines.append(f"  note        {r[key]}")
    lines.append("  (--json for everything)")
    return "\n".join(lines)


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME:VERSION")],
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """One version: who, when, params, metrics, decision, data (a summary; --json for everything)."""
    with cli_errors(as_json):
        reg = _registry()
        version = reg.resolve(ref)
        data = version.model_dump(mode="json")
        data["aliases_here"] = sorted(a for a, v in reg.aliases(version.name).items() if v == version.version)
        data["note"] = reg.promotion_note(version)
        if version.manifest_sha256 is None:
            data["integrity"] = "no manifest sha256 recorded: its artifact cannot be verified against the registry"
    emit(data, as_json, _human_show)


alias_app = typer.Typer(no_args_is_help=True, help="Set or remove an alias (recorded in the history: who, why).")
models_app.add_typer(alias_app, name="alias")
REASON_OPT = typer.Option(help="Why (recorded in the history).")


def _human_event(r: dict[str, Any]) -> str:
    from refit.registry.records import show_version

    return f"{r['alias']} of {r['name']}: {show_version(r['from_version'])} -> {show_version(r['to_version'])}"


@alias_app.command("set")
def alias_set(
    name: str,
    alias: str,
    version: int,
    reason: Annotated[str, REASON_OPT] = "",
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Point ALIAS of NAME at VERSION (champion too: recorded as forced, like `models promote`)."""
    with cli_errors(as_json):
        event = _registry().set_alias(name, alias, version, reason=reason)
    emit(event.model_dump(mode="json"), as_json, _human_event)


@alias_app.command("rm")
def alias_rm(
    name: str,
    alias: str,
    version: Annotated[int | None, typer.Argument(help="The version you expect it to point at (checked).")] = None,
    reason: Annotated[str, REASON_OPT] = "",
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Remove ALIAS of NAME; with VERSION, only if it still points there."""
    from refit.errors import RegistryError
    from refit.registry import UNSET

    with cli_errors(as_json):
        reg = _registry()
        current = reg.aliases(name).get(alias)
        if current is None:
            raise RegistryError(f"{name} has no alias {alias!r} (aliases: {reg.aliases(name) or 'none'})")
        if version is not None and current != version:
            raise RegistryError(f"{alias} of {name} points at version {current}, not {version}: nothing removed")
        event = reg.remove_alias(name, alias, expected_current=UNSET if version is None else version, reason=reason)
    emit(event.model_dump(mode="json"), as_json, _human_event)


@models_app.command("history")
def models_history(
    name: str,
    alias: Annotated[str | None, typer.Option(help="Only this alias.")] = None,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Every alias move of NAME: who, when, from, to, why."""
    with cli_errors(as_json):
        reg = _registry()
        reg.list_versions(name) or reg.get_version(name, 1)  # an unknown model fails with its name
        events = [e.model_dump(mode="json") for e in reg.history(name, alias)]

    def human(r: dict[str, Any]) -> str:
        from refit.registry.records import show_version

        rows = [
            [
                _when(e["at"]),
                e["author"],
                e["alias"],
                e["action"] + (" (forced)" if e["forced"] else ""),
                show_version(e["from_version"]),
                show_version(e["to_version"]),
                e["reason"] or "-",
            ]
            for e in r["events"]
        ]
        return (
            _table(rows, ["WHEN", "WHO", "ALIAS", "ACTION", "FROM", "TO", "WHY"]) if rows else f"{name}: no alias moves"
        )

    emit({"model": name, "events": events}, as_json, human)


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
def models_diff(
    name: str,
    a: str,
    b: str,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Re-score on this labelled CSV/parquet file (default: the store's holdout)."),
    ] = None,
    config: Annotated[Path, CONFIG_OPT] = Path("refit.yaml"),
    recorded_only: Annotated[
        bool, typer.Option("--recorded-only", help="Only the metrics recorded at registration; score nothing.")
    ] = False,
    keep_holdout: Annotated[
        bool,
        typer.Option(
            "--keep-holdout",
            help="Leave the holdout's run folder (staged rows, quarantine, splits) in the store; "
            "by default it is made in memory and nothing is written.",
        ),
    ] = False,
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Versions A and B (numbers or aliases): both re-scored on one common data set, compared by
    the gate's paired bootstrap (B - A, overall and per segment); also their recorded metrics."""
    with cli_errors(as_json):
        reg = _registry()
        diff = reg.diff(name, int(a) if a.isdigit() else a, int(b) if b.isdigit() else b)
        out = diff.model_dump(mode="json")
        recorded = diff.to_frame()
        table = recorded[recorded["segment"].isna()].drop(columns="segment").to_string(index=False)
        if not recorded_only:
            from refit import scoring

            model_a, model_b = reg.load_model(name, diff.a), reg.load_model(name, diff.b)  # once each
            cfg = _diff_config(config, model_b, f"{name}:{diff.b}")
            frame = scoring.store_holdout(reg.store, cfg, keep_holdout) if data is None else scoring.file_data(data)
            out["rescored"] = scoring.rescore_versions(model_a, model_b, frame, cfg)
    emit(out, as_json, lambda r: _human_diff(r, table))


def _diff_config(path: Path, model: Any, ref: str) -> Any:
    """The project's config, else the one stored with the loaded ``model`` (version ``ref``)."""
    from refit.config_loader import load_config, parse_config
    from refit.errors import ConfigError

    if path.is_file():
        return load_config(path)
    from refit.contracts import import_schema

    try:
        cfg = parse_config(model.config, f"the config stored with {ref}")
        import_schema(cfg.dataset.schema_path)
        return cfg
    except ConfigError as exc:  # its schema module lives beside the project's YAML, not here
        raise ConfigError(
            f"{exc} (no {path} here: pass the project's YAML with --config, whose folder holds the schema module)"
        ) from None


def _human_diff(r: dict[str, Any], table: str) -> str:
    lines = [f"recorded at registration, overall ({r['name']} {r['a']} vs {r['b']}; per segment: --json):", table]
    re = r.get("rescored")
    if re:
        d = re["data"]
        lines += [
            "",
            f"re-scored on {d['source']} ({d['rows']:,} rows, sha256 {d['fingerprint'][:12]}):",
        ]
        rows = [
            [
                c["scope"],
                f"{c['n']:,}",
                _num(c["a"]),
                _num(c["b"]),
                _num(c["difference"]),
                f"[{_num(c['ci_low'])}, {_num(c['ci_high'])}]",
                _num(c["p_value"]),
            ]
            for c in [re["overall"], *re["segments"]]
        ]
        ci = f"{re['confidence']:.0%} CI"
        lines.append(_table(rows, ["SCOPE", "ROWS", f"{re['metric']} A", f"{re['metric']} B", "B - A", ci, "P"]))
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def predict(
    ref: Annotated[str, typer.Argument(help="NAME@ALIAS, NAME:VERSION, or NAME (its champion).")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Rows to score (CSV or parquet).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Scored rows go here (CSV/parquet).")],
    as_json: Annotated[bool, JSON_OPT] = False,
) -> None:
    """Batch-score a file with a registered version; the input is checked against its training schema."""
    with cli_errors(as_json):
        from refit import scoring

        reg = _registry()
        version = reg.resolve(ref)
        model = reg.load_model(version.name, version)
        scored = scoring.predict_frame(model, scoring.read_input(input), str(input))
        scoring.write_output(scored, output)
    emit(
        {"ok": True, "model": version.ref, "input": str(input), "output": str(output), "rows": len(scored)},
        as_json,
        lambda r: f"scored {r['rows']:,} rows with {r['model']}: {r['output']}",
    )


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
    retention.runs_days), temp files of killed writes (older than retention.tmp_files_hours) and the
    drift nulls of versions that hold no alias.
    Lists the versions registered for promotion that were never promoted; it removes no version."""
    from datetime import timedelta

    with cli_errors(as_json):
        from refit.config import RetentionConfig
        from refit.config_loader import load_config
        from refit.housekeeping import collect_calibrations, collect_runs, collect_temp_files

        path = config or Path("refit.yaml")
        retention = load_config(path).retention if config or path.is_file() else RetentionConfig()
        reg = _registry()
        cleaned = reg.collect_garbage(name, older_than=timedelta(hours=older_than_hours))
        runs = collect_runs(reg.store, reg, timedelta(days=retention.runs_days), model=name)
        tmp = collect_temp_files(reg.store, timedelta(hours=retention.tmp_files_hours))
        calibrations = collect_calibrations(reg.store, reg, name)
        never = reg.never_promoted(name)
    emit(
        {
            "model": name,
            "cleaned": cleaned,
            "runs_removed": runs.removed,
            "runs_kept": {"registered": len(runs.kept_registered), "recent": len(runs.kept_recent)},
            "tmp_removed": tmp,
            "calibrations_removed": calibrations,
            "never_promoted": never,
            "retention": retention.model_dump(),
        },
        as_json,
        _human_gc,
    )


def _human_gc(r: dict[str, Any]) -> str:
    from refit.registry import NEVER_PROMOTED_WHY

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
    if r["calibrations_removed"]:
        lines.append(
            f"{name}: removed {len(r['calibrations_removed'])} drift null file(s) of versions without an alias"
        )
    if not lines:
        lines.append(f"{name}: nothing to clean")
    for v in r["never_promoted"]:
        lines.append(
            f"{name}: version {v} was registered for promotion but never promoted ({NEVER_PROMOTED_WHY}): "
            "promote it by hand or leave it"
        )
    return "\n".join(lines)
