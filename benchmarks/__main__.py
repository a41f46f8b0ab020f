"""``make bench``: the retrain at each size, stage by stage, and the ratios against baselines.

    python -m benchmarks --sizes 100000 1000000 10000000 [--out benchmarks/results]
    python -m benchmarks --sizes 1000000 --only sizes validation
    python -m benchmarks --only webhook
    python -m benchmarks --only search     # Optuna TPE vs random search, equal trial budgets
    python -m benchmarks --only replay     # refit replay: 52 weekly windows, 1M labelled rows
    python -m benchmarks --only workers
    python -m benchmarks --only cli        # refit retrain --dry-run / refit drift, with refit up vs without
    python -m benchmarks --only decay      # decay's power and its false alarms alone (drift_rates runs them too)

Every benchmark runs in a fresh subprocess. Results go to ``<out>/latest.json`` and
``<out>/latest.md`` (rewritten after every benchmark, so an interrupted run keeps what it has).
With ``--only`` naming some of the benchmarks, their figures are merged into the existing
``latest.json`` (the others are kept, and the partial run is listed under ``partial_runs``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_CONFIG, BENCH_DIR, log, machine, ratio, run_in_subprocess
from benchmarks.report import write_results

BENCHMARKS = (
    "sizes",
    "validation",
    "bootstrap",
    "torch",
    "drift",
    "drift_rates",
    "decay",
    "orchestration",
    "webhook",
    "search",
    "replay",
    "tracking",
    "workers",
    "cli",
)
RATIO_ROWS = 1_000_000


def _config_summary(path: Path) -> dict[str, Any]:
    import yaml

    raw = yaml.safe_load(path.read_text())
    return {
        "file": str(path.relative_to(BENCH_DIR.parent)),
        "training": raw["training"],
        "gate": raw.get("gate", {}),
        "drift": raw.get("drift", {}),
        "split": raw.get("split", {}),
    }


def bench_sizes(sizes: list[int], config: str, results: dict[str, Any], save: Any) -> None:
    for rows in sizes:
        root = Path(tempfile.mkdtemp(prefix=f"refit-bench-{rows}-"))
        try:
            log(f"size {rows:,}: generating demo data into {root}")
            generated = run_in_subprocess("retrain:generate", {"rows": rows, "store": str(root), "config_path": config})
            log(f"size {rows:,}: retrain stages + drift")
            out = run_in_subprocess("retrain:retrain", {"rows": rows, "store": str(root), "config_path": config})
            results["sizes"][str(rows)] = {"data": generated, **out}
            log(f"size {rows:,}: retrain {out['retrain_s']:.1f}s, peak RSS {out['retrain_max_rss_mb']:.0f} MB")
        except Exception as exc:  # noqa: BLE001 - one failed size must not lose the others
            results["errors"][f"size {rows}"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            shutil.rmtree(root, ignore_errors=True)
            save()


def scaling(results: dict[str, Any]) -> dict[str, Any]:
    small, big = results["sizes"].get("1000000"), results["sizes"].get("10000000")
    if not small or not big:
        missing = {"note": "needs sizes 1,000,000 and 10,000,000 in one run"}
        return ratio(None, 10.0, "<=", memory=ratio(None, 4.0, "<="), **missing)
    no_smoke = [
        sum(s["s"] for n, s in r["stages"].items() if n not in ("smoke_test", "drift", "drift_prepare"))
        for r in (small, big)
    ]
    peak = max(big["retrain_max_rss_mb"], big["retrain_peak_rss_mb"])
    memory = ratio(
        peak / big["data"]["data_mb"],
        4.0,
        "<=",
        peak_rss_mb=peak,
        data_mb=big["data"]["data_mb"],
        data_mb_deep=big["data"]["data_mb_deep"],
        over_deep_size=round(peak / big["data"]["data_mb_deep"], 3),
    )
    out = ratio(
        big["retrain_s"] / small["retrain_s"],
        10.0,
        "<=",
        retrain_1m_s=small["retrain_s"],
        retrain_10m_s=big["retrain_s"],
        without_smoke_test=round(no_smoke[1] / no_smoke[0], 3),
        memory=memory,
    )
    out["met"] = bool(out["met"] and memory["met"])
    return out


def _bench_validation(args: argparse.Namespace, results: dict[str, Any]) -> None:
    rows = args.ratio_rows
    r = run_in_subprocess("validation:run", {"rows": rows})
    results["benchmarks"]["validation"] = r
    results["ratios"]["validation_rows_per_s"] = ratio(
        r["validate_frame_rows_per_s"], 3_000_000, ">=", seconds=r["validate_frame_s"], rows=r["rows"]
    )
    results["ratios"]["validation_vs_pandas"] = ratio(
        r["pandas_checks_s"] / r["validate_frame_s"],
        1.0,
        ">=",
        validate_frame_s=r["validate_frame_s"],
        pandas_checks_s=r["pandas_checks_s"],
        note="pandas s / refit s: > 1 is faster",
    )


def _bench_bootstrap(args: argparse.Namespace, results: dict[str, Any]) -> None:
    rows = args.ratio_rows
    r = run_in_subprocess("bootstrap:run", {"rows": rows})
    results["benchmarks"]["bootstrap"] = r
    results["ratios"]["gate_bootstrap_s"] = ratio(
        r["seconds"],
        5.0,
        "<=",
        rows=r["rows"],
        resamples=r["resamples"],
        segments=r["segments"],
        runs_s=r["runs_s"],
    )


def _bench_torch_speed(args: argparse.Namespace, results: dict[str, Any]) -> None:
    rows, config = args.ratio_rows, str(args.config)
    r = run_in_subprocess("torch_speed:run", {"rows": rows, "config_path": config})
    results["benchmarks"]["torch"] = r
    results["ratios"]["torch_speedup"] = ratio(
        r["train_torch_cpu_samples_per_s"] / r["naive_dataloader_samples_per_s"],
        3.0,
        ">=",
        train_torch_samples_per_s=r["train_torch_cpu_samples_per_s"],
        naive_samples_per_s=r["naive_dataloader_samples_per_s"],
        threads=r["torch_threads"],
        cuda=r["cuda"],
    )


def _bench_drift(args: argparse.Namespace, results: dict[str, Any]) -> None:
    rows, config = args.ratio_rows, str(args.config)
    r = run_in_subprocess("drift:run", {"rows": rows, "config_path": config})
    results["benchmarks"]["drift"] = r
    results["ratios"]["drift_speedup"] = ratio(
        r["evidently_s"] / r["refit_s"],
        10.0,
        ">=",
        refit_s=r["refit_s"],
        refit_no_report_s=r["refit_no_report_s"],
        refit_cold_s=r["refit_cold_s"],
        evidently_s=r["evidently_s"],
        evidently_peak_rss_mb=r["evidently_peak_rss_mb"],
        refit_peak_rss_mb=r["refit_peak_rss_mb"],
    )
    results["ratios"]["drift_path_s"] = ratio(
        r["flow"]["with_report_s"],
        3.0,
        "<=",
        rows=r["flow"]["rows"],
        warm_s=r["flow"]["warm_s"],
        report_s=r["flow"]["report_s"],
        evidently_import_s=r["flow"]["evidently_import_s"],
        with_report_and_import_s=r["flow"]["with_report_and_import_s"],
        cold_s=r["flow"]["cold_s"],
        calibrate_at_promotion_s=r["flow"]["calibrate_s"],
        call=r["flow"]["call"],
    )
    results["ratios"]["drift_storage_mb"] = ratio(
        (r["flow"]["html_bytes"] + r["flow"]["json_bytes"]) / 1e6,
        1.0,
        "<=",
        html_bytes=r["flow"]["html_bytes"],
        json_bytes=r["flow"]["json_bytes"],
        note="one check with its HTML report (the shared Evidently script is stored once per model)",
    )
    results["ratios"]["drift_verdict_agrees"] = {
        "value": r["verdict_agrees"],
        "target": True,
        "op": "==",
        "met": bool(r["verdict_agrees"]),
        "refit": r["refit"],
        "evidently": r["evidently"],
        "columns_agree": r["columns_agree"],
        "note": "threshold_mode: fixed on the sample vs DataDriftPreset on the full window",
    }
    small = run_in_subprocess("drift:time_flow_path", {"rows": 100_000, "config_path": config})
    results["benchmarks"]["drift_path_100k"] = small


def _bench_drift_rates(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as beside:  # decay's windows share nothing with drift's
        decay_run = beside.submit(_bench_decay, args, results)
        r = run_in_subprocess(
            "drift:rates",
            {"sizes": args.drift_rate_sizes, "windows": args.drift_windows, "config_path": str(args.config)},
        )
        decay_run.result()
    results["benchmarks"]["drift_rates"] = r
    for size, row in r["sizes"].items():
        worst = max(row["generator"]["calibrated"], row.get("self_split", {}).get("calibrated", 0.0))
        results["ratios"][f"drift_false_alarms_{size}"] = ratio(
            worst,
            r["alpha"],
            "<=",
            generator=row["generator"],
            self_split=row.get("self_split"),
            fixed_verified=row.get("fixed_verified"),
            note="share of in-distribution windows that alarm (calibrated, alpha "
            f"{r['alpha']}); evidently_fixed: the same windows' scores at Evidently's default thresholds "
            "(fixed_verified: windows whose verdict the fixed-threshold check, Evidently's own tests, confirms)",
        )
        if int(size) >= 1000:
            power = row["power"]["0.5"]
            results["ratios"][f"drift_power_0.5_{size}"] = ratio(
                power["calibrated"], 1.0, ">=", **power, all_strengths=row["power"]
            )


def _bench_decay(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Decay's power on concept drift in one segment, and its false alarms when the registered
    value came from a small holdout (taken as exact vs with its standard error)."""
    decay = run_in_subprocess("drift:decay_rates", {"config_path": str(args.config)})
    registered = run_in_subprocess("drift:decay_registered_rates", {})
    results["benchmarks"]["decay_registered_rates"] = registered
    for n, row in registered["sizes"].items():
        results["ratios"][f"decay_false_alarm_small_registered_{n}"] = ratio(
            row["with_se_small_drop"],
            0.05,
            "<=",
            **row,
            holdout_rows=registered["holdout_rows"],
            pairs=registered["pairs"],
            note=f"a true drop of 0.024 (tolerance 0.05) in {n}-row windows against a value registered on "
            f"{registered['holdout_rows']} holdout rows: share that fired with its SE (exact_*: as exact)",
        )
    results["benchmarks"]["decay_rates"] = decay
    for rows, row in decay["sizes"].items():
        results["ratios"][f"decay_power_{rows}"] = ratio(
            row["concept"]["caught_in_segment"],
            1.0,
            ">=",
            segment=decay["segment"],
            strength=decay["strength"],
            window_rows=row["window_rows"],
            segment_rows_min=row["concept"]["segment_rows_min"],
            windows=row["concept"]["windows"],
            no_drift_any_decay=row["none"]["any_decay"],
            ceiling_5pct_one_sided_exact=row["concept"]["ceiling_5pct_one_sided_exact"],
            point_drop_above_tolerance=row["concept"]["point_drop_above_tolerance"],
            note=f"concept drift in {decay['segment']}: share of first windows whose decay names it; ceiling: "
            "the share a one-sided 5% test without Holm, registered value exact, would name (no valid test "
            "at that level catches more); point_drop_above_tolerance: windows whose drop estimate exceeds it",
        )


def _bench_orchestration(args: argparse.Namespace, results: dict[str, Any]) -> None:
    rows, config = args.ratio_rows, str(args.config)
    r = run_in_subprocess(
        "orchestration:run",
        {"rows": rows, "config_path": config, "reps": args.orchestration_reps, "cold_reps": args.cold_reps},
    )
    results["benchmarks"]["orchestration"] = r
    results["ratios"]["orchestration_overhead"] = ratio(
        r["ratio"],
        1.10,
        "<=",
        flow_s=r["flow_s"],
        plain_s=r["plain_s"],
        reps=r["reps"],
        pair_ratios=r["pair_ratios"],
        ratio_of_means=round(r["ratio_of_means"], 4),
        api_server_cpu_s=r["api_server_cpu_s"],
        cold_process=r["cold_process"],
        server_startup_s_excluded=r["server_startup_s"],
        flow_outside_steps_s=r["flow_outside_steps_s"],
        flow_outside_steps_share=round(r["flow_outside_steps_share"], 4),
    )


def _bench_webhook(args: argparse.Namespace, results: dict[str, Any]) -> None:
    config = str(args.config)
    r = run_in_subprocess(
        "webhook:run",
        {"alerts": args.webhook_alerts, "concurrency": args.webhook_concurrency, "config_path": config},
    )
    results["benchmarks"]["webhook"] = r
    for scenario, name in (("prefect_up", "webhook_p99_ms"), ("prefect_down", "webhook_p99_ms_prefect_down")):
        s = r[scenario]
        results["ratios"][name] = ratio(
            s["p99_ms"],
            250.0,
            "<=",
            req_per_s=s["req_per_s"],
            p50_ms=s["p50_ms"],
            alerts=s["alerts"],
            concurrency=s["concurrency"],
            first_1000=s["first_1000"],
            last_1000=s["last_1000"],
        )
    up = r["prefect_up"]
    results["ratios"]["webhook_flat"] = ratio(
        up["last_1000"]["p50_ms"] / up["first_1000"]["p50_ms"],
        1.5,
        "<=",
        first_1000=up["first_1000"],
        last_1000=up["last_1000"],
        ledger_entries=up["ledger_entries"],
        note="p50 of the last 1,000 alerts / p50 of the first 1,000 (Prefect up)",
    )


def _bench_tracking(args: argparse.Namespace, results: dict[str, Any]) -> None:
    r = run_in_subprocess(
        "tracking:run",
        {"rows": args.tracking_rows, "config_path": str(args.config), "reps": args.tracking_reps},
    )
    results["benchmarks"]["tracking"] = r
    results["ratios"]["tracking_overhead"] = ratio(
        r["ratio"],
        1.10,
        "<=",
        rows=r["rows"],
        reps=r["reps"],
        untracked_s=r["untracked_s"],
        tracked_s=r["tracked_s"],
        track_run_s=r["track_run_s"],
        track_run_share=r["track_run_share"],
        same_run_ratios=r["same_run_ratios"],
        pair_ratio=round(r["pair_ratio"], 4),
        pair_ratios=r["pair_ratios"],
        server_startup_s_excluded=r["server_startup_s"],
        note="median over tracked runs of (the run / the same run without its track-run step, the only "
        "step that touches MLflow); pair_ratio: whole tracked runs / untracked runs beside them (ABBA, "
        "same data, machine noise included)",
    )


def _bench_search(args: argparse.Namespace, results: dict[str, Any]) -> None:
    r = run_in_subprocess(
        "search:run", {"rows": args.search_rows, "seeds": args.search_seeds, "config_path": str(args.config)}
    )
    results["benchmarks"]["search"] = r


def _bench_replay(args: argparse.Namespace, results: dict[str, Any]) -> None:
    r = run_in_subprocess(
        "replay:run",
        {
            "rows": args.replay_rows,
            "weeks": args.replay_weeks,
            "base_rows": args.replay_base_rows,
            "progress": args.replay_progress,
            "config_path": str(args.config),
        },
    )
    results["benchmarks"]["replay"] = r


def _bench_workers(args: argparse.Namespace, results: dict[str, Any]) -> None:
    r = run_in_subprocess("workers:run", {"retrains": args.worker_retrains, "rows": args.worker_rows})
    results["benchmarks"]["workers"] = r
    one, two = r["one_worker"], r["two_workers"]
    results["ratios"]["workers_throughput"] = ratio(
        r["ratio"],
        1.5,
        ">=",
        runs_per_min_1_worker=one["runs_per_min"],
        runs_per_min_2_workers=two["runs_per_min"],
        wall_s=[one["wall_s"], two["wall_s"]],
        run_s_median=[one["run_s_median"], two["run_s_median"]],
        retrains=r["retrains_per_phase"],
        rows=r["rows"],
        load_average_after=[one["load_average_after"], two["load_average_after"]],
        note="runs per minute, 2 process workers / 1 (each --limit 1), Prefect server on PostgreSQL",
    )


def _bench_cli(args: argparse.Namespace, results: dict[str, Any]) -> None:
    r = run_in_subprocess("cli:run", {"rows": args.cli_rows, "captures": args.cli_captures, "reps": args.cli_reps})
    results["benchmarks"]["cli"] = r
    up, local = r["with_server"], r["without_server"]
    loads = {
        "load_average_before": r["load_average_before"],
        "load_average_after": [local["load_average_after"], up["load_average_after"]],
    }
    # the target is what the server choice decides: how soon the command's flow run starts (the
    # 15 s a temporary server cost each command); the whole command's wall is reported beside it
    for name, command in (("cli_retrain_startup_s", "retrain_dry_run"), ("cli_drift_startup_s", "drift")):
        key = "startup_s"
        results["ratios"].pop("cli_drift_s", None)  # the whole command's wall as target, until 2026-12-02
        results["ratios"][name] = ratio(
            up[command][key],
            5.0,
            "<=",
            without_server_s=local[command][key],
            speedup=round(local[command][key] / up[command][key], 2),
            wall_speedup=round(local[command]["wall_s"] / up[command]["wall_s"], 2),
            with_server=up[command],
            without_server=local[command],
            reps=r["reps"],
            **loads,
            note=f"refit {command.replace('_', ' ')}, {key.removesuffix('_s')}: median with a running refit up "
            "(found through its state file) vs Prefect's local server started by the command",
        )


#: The ratio benchmarks, in the order they run: each runs in a subprocess and adds its figures.
_RATIO_BENCHMARKS = {
    "validation": _bench_validation,
    "bootstrap": _bench_bootstrap,
    "torch": _bench_torch_speed,
    "drift": _bench_drift,
    "drift_rates": _bench_drift_rates,
    "decay": _bench_decay,
    "orchestration": _bench_orchestration,
    "webhook": _bench_webhook,
    "search": _bench_search,
    "replay": _bench_replay,
    "tracking": _bench_tracking,
    "workers": _bench_workers,
    "cli": _bench_cli,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    # decay runs inside drift_rates (beside its windows); --only decay re-measures it alone
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=[b for b in BENCHMARKS if b != "decay"])
    parser.add_argument("--config", type=Path, default=BENCH_CONFIG)
    parser.add_argument("--ratio-rows", type=int, default=RATIO_ROWS, help="rows of the ratio benchmarks")
    parser.add_argument("--orchestration-reps", type=int, default=6, help="runs of each, plain and flow")
    parser.add_argument("--cold-reps", type=int, default=2, help="fresh-process runs of each, plain and flow")
    parser.add_argument(
        "--drift-rate-sizes", nargs="+", type=int, default=[100, 1000, 10_000, 100_000], help="window sizes"
    )
    parser.add_argument("--drift-windows", type=int, default=200, help="in-distribution windows per size")
    parser.add_argument("--webhook-alerts", type=int, default=5000, help="signed alerts sent to the webhook")
    parser.add_argument("--webhook-concurrency", type=int, default=50, help="alerts in flight at once")
    parser.add_argument("--search-rows", type=int, default=8000, help="demo rows of the TPE vs random bench")
    parser.add_argument("--search-seeds", type=int, default=5, help="seeds each search runs with")
    parser.add_argument("--tracking-rows", type=int, default=100_000, help="rows of the tracking benchmark")
    parser.add_argument("--tracking-reps", type=int, default=4, help="runs of each, tracked and untracked")
    parser.add_argument("--replay-rows", type=int, default=1_000_000, help="labelled rows the replay bench replays")
    parser.add_argument("--replay-weeks", type=int, default=52, help="weekly windows of the replay bench")
    parser.add_argument("--replay-progress", default=None, help="append each replayed window's times to this file")
    parser.add_argument(
        "--replay-base-rows", type=int, default=50_000, help="base rows the replay bench's first model trains on"
    )
    parser.add_argument("--worker-retrains", type=int, default=6, help="retrains per phase (1 worker, 2 workers)")
    parser.add_argument("--worker-rows", type=int, default=2000, help="rows of the worker benchmark's data")
    parser.add_argument("--cli-rows", type=int, default=3000, help="base rows of the CLI latency bench's store")
    parser.add_argument("--cli-captures", type=int, default=1200, help="captured requests its drift check reads")
    parser.add_argument("--cli-reps", type=int, default=3, help="timed runs of each command, with and without a server")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    config = str(args.config)
    rows = args.ratio_rows
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "settings": {"sizes": args.sizes, "ratio_rows": rows, "config": _config_summary(args.config), "notes": []},
        "sizes": {},
        "ratios": {},
        "benchmarks": {},
        "errors": {},
    }

    partial = set(args.only) < set(BENCHMARKS) and (args.out / "latest.json").exists()
    if partial:  # merge into the last full run's figures instead of replacing them
        run = {k: results[k] for k in ("date", "command", "machine")} | {"only": list(args.only)}
        results = json.loads((args.out / "latest.json").read_text())
        results.setdefault("partial_runs", [])
        results["partial_runs"] = [p for p in results["partial_runs"] if p["only"] != run["only"]] + [run]
        for name in args.only:
            results["errors"].pop(name, None)

    def save() -> None:
        if partial:
            results["partial_runs"][-1]["total_s"] = round(time.perf_counter() - started, 1)
        else:
            results["total_s"] = round(time.perf_counter() - started, 1)
        write_results(results, args.out)

    def step(name: str, fn: Any) -> None:
        if name not in args.only:
            return
        log(f"{name} ...")
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - record it and go on with the next benchmark
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        log(f"{name} done in {time.perf_counter() - t0:.0f}s")
        save()

    log(f"sizes {args.sizes}, ratio benchmarks at {rows:,} rows, results in {args.out}")
    step("sizes", lambda: bench_sizes(args.sizes, config, results, save))
    results["ratios"]["scaling"] = scaling(results)
    for name, bench in _RATIO_BENCHMARKS.items():
        step(name, lambda bench=bench: bench(args, results))
    save()
    log(f"all done in {time.perf_counter() - started:.0f}s: {args.out / 'latest.md'}")
    failed = [k for k in results["errors"] if not partial or k in args.only or k.split()[0] in args.only]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
