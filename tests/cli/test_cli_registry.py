"""The registry as an MLflow user drives it: `refit models list|show|alias|history|diff` and
`refit predict`, each run through the real command line (``tests.cli.test_cli_models.run``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refit import recipe
from refit.config_loader import load_config
from refit.io import open_store
from refit.metrics import compute_metrics
from refit.registry import Registry
from tests.cli.test_cli_models import run
from tests.flows.helpers import make_project, write_config


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1 (champion) and version 2 (a weaker model, registered, not promoted)."""
    folder = tmp_path_factory.mktemp("cli-registry")
    config, store = make_project(folder, rows=3000)
    recipe.run_retrain(store, load_config(config))
    weak = {"training": {"candidates": [{"family": "hist_gradient_boosting", "params": {"max_iter": [2]}}]}}
    shutil.copy(config, folder / "strong.yaml")
    recipe.run_retrain(store, load_config(write_config(folder, **weak)), until="register-model")
    shutil.copy(folder / "strong.yaml", config)
    return folder


@pytest.fixture
def project(two_versions: Path, tmp_path: Path) -> Path:
    shutil.copytree(two_versions, tmp_path / "p")
    return tmp_path / "p"


def test_list_is_a_table_and_show_a_summary(project: Path) -> None:
    listing = json.loads(run(["models", "list", "--json"], project).stdout)["models"][0]
    champion = Registry(open_store(str(project / "store"))).get_version("churn", 1)
    assert listing["champion"] == {"version": 1, "metric": "roc_auc", "value": champion.metrics["roc_auc"]}
    assert listing["last_change"]["what"] == "registered version 2 by " + champion.author
    header, row = run(["models", "list"], project).stdout.splitlines()
    assert header.split() == ["NAME", "VERSIONS", "ALIASES", "CHAMPION", "METRIC", "LAST", "CHANGE"]
    assert row.split()[:5] == ["churn", "2", "(1..2)", "champion=1", "roc_auc"]
    assert f"{champion.metrics['roc_auc']:.4f}" in row

    shown = run(["models", "show", "churn@champion"], project).stdout.splitlines()
    assert shown[0] == "churn version 1  [champion]" and len(shown) < 25
    assert any(line.split()[:2] == ["decision", "PROMOTE:"] for line in shown)
    full = json.loads(run(["models", "show", "churn:2", "--json"], project).stdout)
    assert full["version"] == 2 and full["aliases_here"] == [] and full["params"]["max_iter"] == 2


def test_alias_set_rm_and_history_record_who_and_why(project: Path) -> None:
    who = {"REFIT_AUTHOR": "ana"}
    moved = json.loads(
        run(
            ["models", "alias", "set", "churn", "staging", "2", "--reason", "canary", "--json"], project, env=who
        ).stdout
    )
    assert (moved["alias"], moved["from_version"], moved["to_version"], moved["author"]) == ("staging", None, 2, "ana")
    wrong = run(["models", "alias", "rm", "churn", "staging", "1"], project)
    assert wrong.returncode == 1 and wrong.stderr.strip().splitlines() == [
        "error: staging of churn points at version 2, not 1: nothing removed"
    ]
    assert (
        run(["models", "alias", "rm", "churn", "staging", "2", "--reason", "canary done"], project, env=who).returncode
        == 0
    )
    bad = run(["models", "alias", "set", "churn", "Champion", "2"], project)
    assert bad.returncode == 1 and "invalid alias 'Champion'" in bad.stderr

    events = json.loads(run(["models", "history", "churn", "--json"], project).stdout)["events"]
    assert [(e["alias"], e["action"], e["from_version"], e["to_version"], e["reason"]) for e in events] == [
        ("champion", "set", None, 1, events[0]["reason"]),
        ("staging", "set", None, 2, "canary"),
        ("staging", "remove", 2, None, "canary done"),
    ]
    assert [e["author"] for e in events[1:]] == ["ana", "ana"]
    table = run(["models", "history", "churn"], project).stdout.splitlines()
    assert table[0].split() == ["WHEN", "WHO", "ALIAS", "ACTION", "FROM", "TO", "WHY"]
    assert table[-1].split()[3:] == ["ana", "staging", "remove", "2", "(unset)", "canary", "done"]
    unknown = run(["models", "history", "nope"], project)
    assert unknown.returncode == 1 and "no model 'nope'" in unknown.stderr


def test_predict_scores_a_file_and_rejects_one_that_breaks_the_schema(project: Path) -> None:
    store = open_store(str(project / "store"))
    rows = pd.read_parquet(next((project / "store" / "datasets").rglob("*.parquet"))).head(300)
    rows.drop(columns=["churned"]).to_csv(project / "in.csv", index=False)
    out = run(["predict", "churn@champion", "--input", "in.csv", "--output", "out/scored.parquet"], project)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "scored 300 rows with churn:1: out/scored.parquet"
    scored = pd.read_parquet(project / "out" / "scored.parquet")
    expected = Registry(store).load_model("churn", 1).predict_proba(pd.read_csv(project / "in.csv"))[:, 1]
    np.testing.assert_allclose(scored["proba_1"].to_numpy(), expected, atol=1e-9)
    assert scored["customer_id"].tolist() == rows["customer_id"].tolist()

    rows.drop(columns=["churned", "plan"]).to_csv(project / "no_plan.csv", index=False)
    missing = run(["predict", "churn:2", "-i", "no_plan.csv", "-o", "x.csv"], project)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [
        "error: no_plan.csv: missing feature column(s) 'plan' (rule: every column of the training schema is required)"
    ]
    text = rows.drop(columns=["churned"]).astype({"support_tickets": object})
    text.loc[text.index[2], "support_tickets"] = "many"
    text.to_csv(project / "typo.csv", index=False)
    typo = run(["predict", "churn@champion", "-i", "typo.csv", "-o", "x.csv"], project)
    assert typo.returncode == 1 and len(typo.stderr.strip().splitlines()) == 1
    assert "typo.csv: column 'support_tickets' row 3 is 'many' (rule: numeric" in typo.stderr
    assert not (project / "x.csv").exists()


def test_diff_rescores_both_versions_on_one_data_set(project: Path) -> None:
    store = open_store(str(project / "store"))
    reg = Registry(store)
    out = run(["models", "diff", "churn", "champion", "2", "--json"], project)
    assert out.returncode == 0, out.stderr
    rescored = json.loads(out.stdout)["rescored"]
    data = rescored["data"]
    assert data["source"] == "the holdout (test split) of the store's current data"
    # held in memory, nothing written: the same rows a retrain's split would test on
    holdout, fingerprint = recipe.holdout_split(store, load_config(project / "refit.yaml"))
    assert data["rows"] == len(holdout) > 0 and data["fingerprint"] == fingerprint.sha256
    truth = {
        v: compute_metrics(
            "binary", holdout["churned"].to_numpy(), reg.load_model("churn", v).predict_proba(holdout)[:, 1]
        )["roc_auc"]
        for v in (1, 2)
    }
    overall = rescored["overall"]
    assert (overall["a"], overall["b"]) == pytest.approx((truth[1], truth[2]), abs=1e-12)
    assert overall["difference"] == pytest.approx(truth[2] - truth[1], abs=1e-12) and truth[1] != truth[2]
    assert overall["ci_low"] <= overall["difference"] <= overall["ci_high"]
    assert {s["scope"] for s in rescored["segments"]} >= {"region=north", "plan=basic"}

    holdout.head(150).to_csv(project / "mine.csv", index=False)
    human = run(["models", "diff", "churn", "1", "2", "--data", "mine.csv"], project)
    assert human.returncode == 0, human.stderr
    assert "re-scored on file mine.csv (150 rows, sha256" in human.stdout
    assert any(line.split()[:2] == ["overall", "150"] for line in human.stdout.splitlines())
