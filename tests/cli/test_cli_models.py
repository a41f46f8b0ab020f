"""`refit train`, `refit models ...`, `refit retrain` and `refit drift` as a user types them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refit import recipe
from refit.config_loader import load_config
from tests.flows.helpers import make_project

REFIT = str(Path(sys.executable).parent / "refit")


#: Commands that run a Prefect flow get a process of their own, as a user's shell gives them:
#: what reaches the terminal there (Prefect's logs, then refit's one-line error) is part of what
#: they promise. The others run through the same command-line app in this process (the parser,
#: exit codes, stdout and stderr as the command writes them) without paying 2 to 8 s of imports
#: per call; an exception the command did not turn into its one-line error fails the test.
FLOW_COMMANDS = frozenset({"retrain", "drift", "demo", "replay", "up", "serve", "webhook"})


def run(
    args: list[str], cwd: Path, timeout: int = 600, api: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``refit ARGS`` in ``cwd`` with ``REFIT_STORE=cwd/store``; commands that run a flow get
    ``api``, the session's Prefect API; ``env``: more variables (``REFIT_AUTHOR`` ...)."""
    if args[0] not in FLOW_COMMANDS:
        return run_in_process(args, cwd, env or {})
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFIT_", "PREFECT_API"))}
    env |= {
        "REFIT_STORE": str(cwd / "store"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(cwd / "prefect-home"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    if api is not None:
        env["PREFECT_API_URL"] = api
    env |= extra
    return subprocess.run([REFIT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_in_process(
    args: list[str], cwd: Path, env: dict[str, str], store: bool = True
) -> subprocess.CompletedProcess[str]:
    """``refit ARGS`` through ``refit_cli.main.app`` in this process, in ``cwd``, with the
    environment ``run`` gives a child: no ``REFIT_*`` variable but ``env``'s and (``store``)
    ``REFIT_STORE=cwd/store``."""
    from typer.testing import CliRunner

    from refit_cli.main import app

    variables: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REFIT_")}
    variables |= ({"REFIT_STORE": str(cwd / "store")} if store else {}) | env
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, args, env=variables)
    finally:
        os.chdir(previous)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback where the user should have read one line
    return subprocess.CompletedProcess([REFIT, *args], result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    config, store = make_project(tmp_path, rows=5000)
    return tmp_path, config, store


@pytest.fixture(scope="module")
def champion_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose registry holds version 1 as champion, trained once for this module."""
    folder = tmp_path_factory.mktemp("cli-champion")
    config, store = make_project(folder, rows=5000)
    assert _register(store, config) == 1
    return folder


@pytest.fixture
def champion_project(champion_folder: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A copy of ``champion_folder`` of the test's own (store paths are relative to the folder)."""
    from refit.io import open_store

    folder = tmp_path / "p"
    shutil.copytree(champion_folder, folder)
    return folder, folder / "refit.yaml", open_store(str(folder / "store"))


def _register(store, config_path: Path, promote: bool = True) -> int:  # type: ignore[no-untyped-def]
    cfg = load_config(config_path)
    # every step but the promotion, when the test wants a version that is not champion
    until = None if promote else "register-model"
    run = recipe.run_retrain(store, cfg, until=until)
    return int(run.need("version").version)


def test_train_prints_the_artifact_and_json_has_trials(project) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = project
    out = run(["train"], folder)
    assert out.returncode == 0, out.stderr
    artifact = Path(out.stdout.strip())
    assert (artifact / "manifest.json").is_file() and (artifact / "model.skops").is_file()
    as_json = json.loads(run(["train", "--json"], folder).stdout)
    assert as_json["family"] == "hist_gradient_boosting" and len(as_json["trials"]) == 1
    assert 0.5 < as_json["validation"]["roc_auc"] < 1.0
    assert sum(as_json["data"]["rows"].values()) == 5000


def test_models_list_show_diff_promote_rollback(champion_project) -> None:  # type: ignore[no-untyped-def]
    folder, config, store = champion_project
    assert _register(store, config, promote=False) == 2
    listing = json.loads(run(["models", "list", "--json"], folder).stdout)
    model = listing["models"][0]
    assert len(listing["models"]) == 1 and model["name"] == "churn"
    assert (model["versions"], model["aliases"], model["champion"]["version"]) == ([1, 2], {"champion": 1}, 1)
    shown = json.loads(run(["models", "show", "churn@champion", "--json"], folder).stdout)
    assert shown["version"] == 1 and shown["datasets"]["validated"]["rows"] == 5000
    diff = json.loads(run(["models", "diff", "churn", "1", "2", "--json"], folder).stdout)
    assert any(d["metric"] == "roc_auc" for d in diff["overall"])
    human = run(["models", "diff", "churn", "champion", "2"], folder)
    assert human.returncode == 0 and "roc_auc" in human.stdout
    promoted = json.loads(run(["models", "promote", "churn", "2", "--reason", "manual check", "--json"], folder).stdout)
    assert (promoted["from_version"], promoted["to_version"], promoted["forced"]) == (1, 2, True)
    rolled = json.loads(run(["models", "rollback", "churn", "--reason", "bad canary", "--json"], folder).stdout)
    assert (rolled["from_version"], rolled["to_version"]) == (2, 1)
    missing = run(["models", "show", "churn:9"], folder)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr and "9" in missing.stderr


def test_models_gc_cleans_a_slot_a_crashed_run_left(champion_project) -> None:  # type: ignore[no-untyped-def]
    """A run that claimed version 2 and died while copying its artifact: `refit models gc`
    fences the slot and deletes the payload; the committed version 1 is untouched."""
    from datetime import UTC, datetime, timedelta

    from refit.registry import Registry

    folder, config_path, store = champion_project
    prefix = "registry/churn/versions/2/"
    claimed = datetime.now(UTC) - timedelta(hours=3)
    store.put_if_absent(prefix + ".claim", json.dumps({"claimed_at": claimed.isoformat()}).encode())
    store.put_bytes(prefix + "artifact/model.skops", b"half a model")

    fresh = run(["models", "gc", "churn", "--older-than-hours", "4", "--json"], folder)
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout)["cleaned"] == []  # too recent for this limit
    out = run(["models", "gc", "churn"], folder)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "churn: cleaned 1 abandoned slot(s) [2]"
    assert not store.exists(prefix + "artifact/model.skops")
    reg = Registry(store)
    assert [v.version for v in reg.list_versions("churn")] == [1] and reg.aliases("churn") == {"champion": 1}
    assert run(["models", "gc", "churn"], folder).stdout.strip() == "churn: nothing to clean"
    assert _register(store, config_path, promote=False) == 3  # number 2 stays taken
    bad = run(["models", "gc", "churn", "--older-than-hours", "-1"], folder)
    assert bad.returncode == 2 and "Invalid value for '--older-than-hours'" in bad.stderr


def test_models_gc_removes_old_runs_and_killed_writes_and_names_unpromoted_versions(tmp_path: Path) -> None:
    """No training needed: a registry with a version whose run died between register and
    promote, run folders of several ages, and temp files of a killed and an in-flight write."""
    from datetime import UTC, datetime, timedelta

    from refit.io.local import LocalStore
    from refit.registry import Registry
    from tests.flows.helpers import write_config

    store = LocalStore(tmp_path / "store")
    reg = Registry(store)
    now = datetime.now(UTC)

    def run_id(days_ago: float, tag: str) -> str:
        return f"{(now - timedelta(days=days_ago)).strftime('%Y%m%dT%H%M%S%fZ')}-{tag * 8}"

    runs = {age: run_id(age, tag) for age, tag in ((10, "a"), (3, "b"), (1, "c"), (30, "d"))}
    for rid in runs.values():
        store.put_bytes(f"runs/churn/{rid}/split/train.parquet", b"rows")
    reg.register("churn", artifact_uri="s3://m/1", decision={"outcome": "PROMOTE"}, run_id=runs[30])
    reg.promote("churn", 1, expected_current=None)
    reg.register("churn", artifact_uri="s3://m/2", decision={"outcome": "PROMOTE"}, run_id="killed-run")
    killed = store._write_temp("registry/churn/versions/3/artifact/model.skops", b"half")
    in_flight = store._write_temp("runs/churn/x/split/test.parquet", b"being written")
    old = time.time() - 2 * 3600
    os.utime(killed, (old, old))

    shown = json.loads(run(["models", "show", "churn:2", "--json"], tmp_path).stdout)
    assert shown["note"].startswith("registered by run killed-run for promotion but never promoted")
    assert shown["manifest_sha256"] is None  # a referenced artifact registered without its sha
    assert shown["integrity"] == "no manifest sha256 recorded: its artifact cannot be verified against the registry"
    assert json.loads(run(["models", "show", "churn:1", "--json"], tmp_path).stdout)["note"] is None

    out = run(["models", "gc", "churn", "--json"], tmp_path)  # no refit.yaml here: default retention
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["retention"] == {
        "runs_days": 7.0,
        "tmp_files_hours": 1.0,
        "drift_reports": 200,
        "drift_reports_days": 90.0,
        "drift_reports_max_mb": 500.0,
    }
    assert report["runs_removed"] == [f"runs/churn/{runs[10]}"]
    assert report["runs_kept"] == {"registered": 1, "recent": 2}
    assert report["tmp_removed"] == [killed.relative_to(store.root).as_posix()]
    assert report["never_promoted"] == [2] and report["cleaned"] == []
    assert not killed.exists() and in_flight.exists()
    assert store.exists(f"runs/churn/{runs[30]}/split/train.parquet")  # version 1's lineage

    (tmp_path / "cfg").mkdir()  # not ./refit.yaml: the first gc ran with the defaults
    config = write_config(tmp_path / "cfg", retention={"runs_days": 2})
    human = run(["models", "gc", "churn", "--config", str(config)], tmp_path)
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines() == [
        "churn: removed 1 run folder(s) older than 2 days that no version refers to",
        "churn: version 2 was registered for promotion but never promoted (its run died before promoting, "
        "or another run promoted first and this one did not win when judged against it): promote it by hand "
        "or leave it",
    ]
    assert not store.list(f"runs/churn/{runs[3]}/") and store.list(f"runs/churn/{runs[1]}/")
