"""``latest.json`` and ``latest.md`` from one run's results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STAGES = ("load_validate", "split", "train", "smoke_test", "evaluate", "register")
STAGE_NAMES = {"load_validate": "load+validate", "smoke_test": "smoke test"}
RATIO_ORDER = (
    "orchestration_overhead",
    "tracking_overhead",
    "validation_rows_per_s",
    "validation_vs_pandas",
    "drift_speedup",
    "drift_path_s",
    "drift_storage_mb",
    "drift_verdict_agrees",
    "torch_speedup",
    "scaling",
    "gate_bootstrap_s",
    "webhook_p99_ms",
    "webhook_p99_ms_prefect_down",
    "webhook_flat",
    "workers_throughput",
    "cli_retrain_startup_s",
    "cli_drift_startup_s",
)


def write_results(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "latest.md").write_text(markdown(results))


def _n(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.{digits}f}M"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _met(r: dict[str, Any]) -> str:
    return {True: "yes", False: "**no**", None: "not measured"}[r.get("met")]


def _cold(c: dict[str, Any] | None) -> str:
    if not c or c.get("ratio") is None:
        return ""
    runs = "; ".join(f"flow {r['flow']:.1f} s / plain {r['plain']:.1f} s" for r in c["runs"])
    return (
        f". A fresh process per run (what a deployment run pays: imports, client, exit): "
        f"{c['ratio']:.2f} (median of {len(c['runs'])} pairs: {runs})"
    )


def _ratio_detail(name: str, r: dict[str, Any]) -> str:
    if name == "orchestration_overhead":
        return (
            f"median of {r['reps']} paired runs (flow / plain script next to it: {r['pair_ratios']}); means "
            f"flow {r['flow_s']:.1f} s vs plain {r['plain_s']:.1f} s ({r['ratio_of_means']:.2f}); API start-up "
            f"{r['server_startup_s_excluded']:.0f} s not counted; inside the flow runs, "
            f"{r['flow_outside_steps_s']:.2f} s ({r['flow_outside_steps_share']:.1%}) went to anything but the "
            f"refit steps, and the API server used {r['api_server_cpu_s']['flow']:.1f} s of CPU per flow run "
            f"({r['api_server_cpu_s']['plain']:.1f} s while idle beside a plain run)" + _cold(r.get("cold_process"))
        )
    if name == "tracking_overhead":
        return (
            f"{r['rows']:,} rows: each tracked run / the same run without its `track-run` step "
            f"({r['same_run_ratios']}); that step {r['track_run_s']:.2f} s ({r['track_run_share']:.1%} of a "
            f"tracked run); whole runs, tracked {r['tracked_s']:.1f} s vs untracked {r['untracked_s']:.1f} s beside "
            f"them: {r['pair_ratio']:.2f} (pairs {r['pair_ratios']}, machine noise included); MLflow server "
            f"start-up {r['server_startup_s_excluded']:.0f} s not counted"
        )
    if name == "validation_rows_per_s":
        return f"`validate_frame` on {r['rows']:,} rows in {r['seconds']:.3f} s"
    if name == "validation_vs_pandas":
        return (
            f"hand-written pandas checks {r['pandas_checks_s']:.3f} s vs `validate_frame` {r['validate_frame_s']:.3f} s"
        )
    if name == "drift_speedup":
        return (
            f"Evidently DataDriftPreset on the full window {r['evidently_s']:.1f} s "
            f"({r['evidently_peak_rss_mb']:,.0f} MB peak) vs the flow's drift path with its HTML report "
            f"{r['refit_s']:.2f} s ({r['refit_peak_rss_mb']:,.0f} MB; without the report "
            f"{r.get('refit_no_report_s', float('nan')):.2f} s; a champion's first check, nulls drawn, "
            f"{r.get('refit_cold_s', float('nan')):.1f} s)"
        )
    if name == "drift_path_s":
        return (
            f"{r['call']} on {r['rows']:,} rows: {r['warm_s']:.2f} s checking + {r['report_s']:.2f} s report "
            f"(first check of a champion: {r['cold_s']:.1f} s)"
        )
    if name == "drift_storage_mb":
        return f"HTML {r['html_bytes']:,} B + JSON {r['json_bytes']:,} B; {r['note']}"
    if name.startswith("drift_false_alarms_"):
        g, sp = r["generator"], r.get("self_split")
        text = (
            f"generator: {g['calibrated']:.3f} of {g['windows']} windows (Evidently's thresholds: "
            f"{g['evidently_fixed']:.3f})"
        )
        if sp:
            text += f"; self-splits: {sp['calibrated']:.3f} (Evidently's: {sp['evidently_fixed']:.3f})"
        return text
    if name.startswith("decay_power_"):
        return (
            f"{r['windows']} first windows with >= {r['segment_rows_min']} labelled rows in {r['segment']} "
            f"(concept drift, strength {r['strength']}); no drift: any decay in {r['no_drift_any_decay']:.2f}"
            + (
                f"; the most a one-sided 5% test (no Holm, registered value exact) names: "
                f"{r['ceiling_5pct_one_sided_exact']:.2f}; drop estimate above the tolerance: "
                f"{r['point_drop_above_tolerance']:.2f}"
                if "ceiling_5pct_one_sided_exact" in r
                else ""
            )
        )
    if name.startswith("decay_false_alarm_small_registered_"):
        return (
            f"{r['pairs']} pairs, registered on {r['holdout_rows']} rows: fired {r['with_se_small_drop']:.3f} with "
            f"its SE vs {r['exact_small_drop']:.3f} as exact; a collapse caught {r['with_se_collapse']:.3f} vs "
            f"{r['exact_collapse']:.3f}"
        )
    if name.startswith("drift_power_"):
        return f"{r['windows']} windows of covariate drift at 0.5; all strengths: {r['all_strengths']}"
    if name == "drift_verdict_agrees":
        return (
            f"refit share {r['refit']['drift_share']:.2f} vs Evidently {r['evidently']['drift_share']:.2f}; "
            f"columns agreeing {r['columns_agree']}"
        )
    if name == "torch_speedup":
        gpu = r.get("cuda")
        gpu_text = (
            f"; GPU {gpu['train_torch_samples_per_s']:,} samples/s ({gpu['gpu_over_cpu']}x CPU)" if gpu else "; no GPU"
        )
        return (
            f"`train_torch` {r['train_torch_samples_per_s']:,} vs DataLoader loop {r['naive_samples_per_s']:,} "
            f"samples/s ({r['threads']} thread){gpu_text}"
        )
    if name == "scaling":
        if r.get("value") is None:
            return r.get("note", "")
        m = r["memory"]
        return (
            f"retrain 10M {r['retrain_10m_s']:.0f} s / 1M {r['retrain_1m_s']:.0f} s "
            f"({r['without_smoke_test']:.2f} without the smoke test); peak RSS {m['peak_rss_mb']:,.0f} MB / data "
            f"{m['data_mb']:,.0f} MB = {_n(m['value'])} (target <= {m['target']}, met: {_met(m)})"
        )
    if name in ("webhook_p99_ms", "webhook_p99_ms_prefect_down"):
        f, last = r["first_1000"], r["last_1000"]
        return (
            f"{r['alerts']:,} signed alerts, {r['concurrency']} at once: {r['req_per_s']:,.0f} req/s, p50 "
            f"{r['p50_ms']:.0f} ms; first 1,000 p50/p99 {f['p50_ms']:.0f}/{f['p99_ms']:.0f} ms, last 1,000 "
            f"{last['p50_ms']:.0f}/{last['p99_ms']:.0f} ms"
        )
    if name == "webhook_flat":
        return (
            f"p50 of the last 1,000 alerts {r['last_1000']['p50_ms']:.0f} ms / first 1,000 "
            f"{r['first_1000']['p50_ms']:.0f} ms, ledger grown to {r['ledger_entries']:,} entries (Prefect up)"
        )
    if name == "workers_throughput":
        return (
            f"{r['retrains']} retrains ({r['rows']:,} rows) per phase through `prefect worker start` processes "
            f"(each --limit 1) on a Prefect server on PostgreSQL: {r['runs_per_min_1_worker']:.2f} runs/min with "
            f"1 worker, {r['runs_per_min_2_workers']:.2f} with 2 (wall {r['wall_s'][0]:.0f} s / "
            f"{r['wall_s'][1]:.0f} s; median run {r['run_s_median'][0]:.0f} s / {r['run_s_median'][1]:.0f} s); "
            f"load average after {r['load_average_after'][0]} / {r['load_average_after'][1]}"
        )
    if name in ("cli_retrain_startup_s", "cli_drift_startup_s"):
        up, local = r["with_server"], r["without_server"]
        return (
            f"{'`refit retrain --dry-run`' if name == 'cli_retrain_startup_s' else '`refit drift`'} start-up "
            f"(process start to its flow run's start), median of {r['reps']}: {r['value']:.1f} s with a running "
            f"`refit up`, {r['without_server_s']:.1f} s without (Prefect's local server), {r['speedup']:.1f}x; "
            f"whole command {up['wall_s']:.1f} s / {local['wall_s']:.1f} s ({r.get('wall_speedup', 0):.1f}x), "
            f"flow run {up['flow_run_s']:.1f} s / {local['flow_run_s']:.1f} s; "
            f"load average {r['load_average_before']} before, {r['load_average_after']} after"
        )
    if name == "gate_bootstrap_s":
        return f"{r['resamples']:,} resamples, {r['segments']} segments, {r['rows']:,} rows; runs {r['runs_s']} s"
    return ""


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    gpu = m["gpu"]["name"] if m.get("gpu") else "none"
    v = m["versions"]
    lines = [
        "# refit benchmarks",
        "",
        f"{results['date']}, `{results['command']}`, total {results.get('total_s', 0) / 60:.1f} min.",
        "",
        f"Machine: {m['cpu']}, {m['logical_cores']} cores, {m['memory_gb']} GiB, GPU: {gpu}; "
        f"Python {v['python']}, torch {v['torch']}, pandas {v['pandas']}, pandera {v.get('pandera', '-')}, "
        f"Prefect {v.get('prefect', '-')}, Evidently {v.get('evidently', '-')}. Load average at start "
        f"{m['load_average_at_start']} (the machine is shared: compare ratios within one run).",
        "",
    ]
    lines += _partial_runs(results)
    lines += _training_budget(results)
    lines += _sizes_section(results)
    lines += _webhook_section(results)
    lines += _search_section(results)
    lines += _replay_section(results)
    lines += _ratios_section(results)
    if results["errors"]:
        lines += ["## Errors", ""] + [f"- {k}: {e}" for k, e in results["errors"].items()] + [""]
    lines += ["Reproduce: `make bench` (all sizes) or `make bench SIZES=1000000`; raw numbers in `latest.json`.", ""]
    return "\n".join(lines)


def _partial_runs(results: dict[str, Any]) -> list[str]:
    """Where figures were merged in from a later, partial run."""
    lines: list[str] = []
    for p in results.get("partial_runs", []):
        pm = p["machine"]
        lines += [
            f"Merged in from a later run of `{p['command']}` ({p['date']}, {p.get('total_s', 0) / 60:.1f} min, "
            f"{pm['cpu']}, {pm['logical_cores']} cores, load average at start {pm['load_average_at_start']}): "
            f"{', '.join(p['only'])}.",
            "",
        ]
    return lines


def _training_budget(results: dict[str, Any]) -> list[str]:
    """The candidates and budgets the retrain ran with."""
    lines: list[str] = []
    t = results["settings"]["config"]["training"]
    cands = "; ".join(f"{c['family']} {c.get('params', {})}" for c in t["candidates"])
    lines += [
        f"Training budget ({results['settings']['config']['file']}): {cands}; max_epochs {t.get('max_epochs')}, "
        f"threads {t.get('num_threads') or 'default'}. Gate: "
        f"{results['settings']['config']['gate'].get('bootstrap_resamples', 1000)} bootstrap resamples.",
        "",
    ]
    return lines


def _sizes_section(results: dict[str, Any]) -> list[str]:
    """The retrain, stage by stage, at each size."""
    if not results["sizes"]:
        return []
    lines: list[str] = []
    lines += [
        "## Retrain stages (plain `refit.pipeline` steps), seconds / peak RSS MB",
        "",
        "| rows | data MB | "
        + " | ".join(STAGE_NAMES.get(s, s) for s in STAGES)
        + " | retrain total | peak RSS MB | drift check |",
        "|---:|---:|" + "---:|" * (len(STAGES) + 3),
    ]
    for rows, r in sorted(results["sizes"].items(), key=lambda kv: int(kv[0])):
        cells = [f"{int(rows):,}", _n(r["data"]["data_mb"], 0)]
        for s in STAGES:
            st = r["stages"].get(s)
            cells.append(f"{st['s']:.2f} / {st['peak_rss_mb']:,.0f}" if st else "-")
        cells += [f"{r['retrain_s']:.1f}", f"{r['retrain_max_rss_mb']:,.0f}"]
        d = r["stages"].get("drift")
        cells.append(f"{d['s']:.2f} / {d['peak_rss_mb']:,.0f}" if d else "-")
        lines.append("| " + " | ".join(cells) + " |")
    with_parts = [(rows, r) for rows, r in sorted(results["sizes"].items(), key=lambda kv: int(kv[0]))
                  if "parts_s" in r["stages"].get("load_validate", {})]  # fmt: skip
    if with_parts:
        lines += [
            "",
            "load+validate in parts, seconds: reading the sources and captures, validating them "
            "(pandera, quarantine written), staging the valid rows (parquet + fingerprint). Each is one call "
            "inside the retrain, the process's first (`validation_rows_per_s` below is warm, best of 5)",
            "",
            "| rows | load | validate | stage | validated rows/s |",
            "|---:|---:|---:|---:|---:|",
        ]
        for rows, r in with_parts:
            p = r["stages"]["load_validate"]["parts_s"]
            rate = int(rows) / p["validate"] if p["validate"] > 0 else None
            lines.append(f"| {int(rows):,} | {p['load']:.2f} | {p['validate']:.2f} | {p['stage']:.2f} | {_n(rate)} |")
    lines += [
        "",
        "Peak RSS is the process's (sampled every 10 ms during the stage; the total column is the "
        "kernel's high-water mark). Data MB: the base frame in memory, shared string objects counted "
        "once. The smoke test loads the model in a fresh process, whose memory is not counted. "
        "Drift: `check_drift(report=False)` of a production window of the same size against the registered "
        "50,000-row reference sample.",
        "",
    ]
    return lines


def _webhook_section(results: dict[str, Any]) -> list[str]:
    """The drift-alert webhook under load, Prefect up and down."""
    hook = results.get("benchmarks", {}).get("webhook")
    if not hook:
        return []
    lines: list[str] = []
    lines += [
        "## Drift-alert webhook under load (`refit webhook`, uvicorn, loopback)",
        "",
        "| Prefect | alerts | at once | req/s | p50 ms | p99 ms | max ms | first 1,000 p50 / p99 | "
        "last 1,000 p50 / p99 | status codes | runs created | outbox left | CPU ms per alert: server / client |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for scenario, label in (("prefect_up", "up"), ("prefect_down", "down")):
        s = hook.get(scenario)
        if not s:
            continue
        f, last = s["first_1000"], s["last_1000"]
        lines.append(
            f"| {label} | {s['alerts']:,} | {s['concurrency']} | {s['req_per_s']:,.0f} | {s['p50_ms']:.0f} | "
            f"{s['p99_ms']:.0f} | {s['max_ms']:.0f} | {f['p50_ms']:.0f} / {f['p99_ms']:.0f} | "
            f"{last['p50_ms']:.0f} / {last['p99_ms']:.0f} | "
            f"{', '.join(f'{k}: {v:,}' for k, v in sorted(s['status_codes'].items()))} | "
            f"{s.get('runs_created', '-')} | {s['outbox_left']} | "
            f"{s.get('server_cpu_ms_per_alert', '-')} / {s.get('client_cpu_ms_per_alert', '-')} |"
        )
    lines += [
        "",
        "Every alert has its own id, so each is decided and recorded: the ledger ends "
        f"{hook['prefect_up']['ledger_entries']:,} entries long, in "
        f"{hook['prefect_up'].get('ledger_objects', '-')} objects (decisions taken while a write is in "
        "flight are recorded together). The load generator, a minimal HTTP/1.1 client on asyncio streams "
        "with one keep-alive connection per sender, runs on the same machine and its CPU time is in the "
        "latencies; the Prefect server's start-up is not counted.",
        "",
    ]
    return lines


def _replay_section(results: dict[str, Any]) -> list[str]:
    """``refit replay`` over weekly windows: time, time per window, peak RSS, what it decided."""
    r = results.get("benchmarks", {}).get("replay")
    if not r:
        return []
    return [
        f"## refit replay: {r['windows']} weekly windows, {r['rows']:,} labelled rows",
        "",
        f"{r['replay_s']:.1f} s in all, {r['s_per_window']:.2f} s per window, peak RSS {r['peak_rss_mb']:.0f} MB; "
        f"{r['triggers']} trigger(s) (first in window {r['first_trigger_week']}, drift from window "
        f"{r['drift_from_week']}), {r['promotions']} promotion(s).",
        "",
    ] + _replay_split(r)


def _replay_split(r: dict[str, Any]) -> list[str]:
    """Windows that only checked against windows that also retrained (per window, wall and CPU)."""
    if "checks_only" not in r:
        return []
    c, t = r["checks_only"], r["with_retrain"]
    return [
        f"{r['rows_per_window']:,} rows per window over {r['base_rows']:,} base rows; the first model and "
        f"window (Evidently's import, the first HTML report, the champion's null draws) {r['first_window_s']} s; "
        f"{r['replay_cpu_s']} CPU s in all. Per later window: {c['windows']} checks only "
        f"{c['mean_s']} s ({c['mean_cpu_s']} CPU s), {t['windows']} with a retrain {t['mean_s']} s "
        f"({t['mean_cpu_s']} CPU s). The machine was shared: CPU seconds are the figure to compare.",
        "",
        *([f"Note: {r['note']}.", ""] if r.get("note") else []),
    ]


def _search_section(results: dict[str, Any]) -> list[str]:
    """Optuna's TPE against random search: the best validation metric after each trial budget."""
    r = results.get("benchmarks", {}).get("search")
    if not r:
        return []
    budgets = [str(k) for k in r["budgets"]]
    lines = [
        f"## Optuna TPE vs random search ({r['family']}, {r['train_rows']:,} training / "
        f"{r['validation_rows']:,} validation rows of the demo data)",
        "",
        f"Best validation {r['metric']} after k trials, mean over {r['seeds']} seeds (seed: min / max).",
        "",
        "| search | " + " | ".join(f"{k} trials" for k in budgets) + " | seconds per run |",
        "|---|" + "---:|" * (len(budgets) + 1),
    ]
    for search, label in (("optuna", "Optuna TPE"), ("random", "random")):
        runs = r["runs"][search]
        cells = [
            f"{r['mean_best'][search][k]:.4f} ({min(x['best'][k] for x in runs):.4f} / "
            f"{max(x['best'][k] for x in runs):.4f})"
            for k in budgets
        ]
        wall = sum(x["wall_s"] for x in runs) / len(runs)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {wall:.0f} |")
    return [*lines, ""]


def _ratios_section(results: dict[str, Any]) -> list[str]:
    """Every ratio against its baseline, in report order."""
    if not results["ratios"]:
        return []
    lines: list[str] = []
    lines += [
        "## Ratios against baselines (same run)",
        "",
        "| name | value | target | met | measured |",
        "|---|---:|---:|---|---|",
    ]
    families = ("drift_false_alarms_", "drift_power_", "decay_power_", "decay_false_alarm_small_registered_")
    rates = sorted(
        (n for n in results["ratios"] if n.startswith(families)),
        key=lambda n: (next(i for i, f in enumerate(families) if n.startswith(f)), int(n.rsplit("_", 1)[-1])),
    )
    for name in [*RATIO_ORDER, *rates]:
        r = results["ratios"].get(name)
        if r is None:
            continue
        value = r["value"] if isinstance(r["value"], bool) else _n(r["value"])
        target = f"{r['op']} {_n(r['target']) if not isinstance(r['target'], bool) else r['target']}"
        lines.append(f"| `{name}` | {value} | {target} | {_met(r)} | {_ratio_detail(name, r)} |")
    lines.append("")
    return lines
