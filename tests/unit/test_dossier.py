"""The dossier: JSON that round-trips to the decision, Markdown a person can read, a PNG plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refit.config import DatasetConfig, GateConfig
from refit.dossier import FILES, read_decision, write_dossier
from refit.evaluation import GateDecision, Outcome, evaluate_gate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DATASET = DatasetConfig.model_validate(
    {
        "name": "churn",
        "sources": ["x.parquet"],
        "schema": "m:C",
        "target": "y",
        "task": "binary",
        "id_column": "id",
        "timestamp_column": "ts",
        "segments": [{"column": "region"}],
    }
)
GATE = GateConfig(bootstrap_resamples=200)


@pytest.fixture(scope="module")
def rejected() -> GateDecision:
    rng = np.random.default_rng(0)
    n = 4000
    y = (rng.random(n) < 0.35).astype(int)
    region = np.array(["east", "north", "south", "west"])[np.arange(n) % 4]
    shared = rng.normal(size=n)
    champ = 1 / (1 + np.exp(-(shared + y + 0.6 * rng.normal(size=n))))
    cand = 1 / (1 + np.exp(-(shared + np.where(region == "south", 0.2, 1.8) * y + 0.3 * rng.normal(size=n))))
    return evaluate_gate("binary", y, cand, champ, pd.DataFrame({"region": region}), GATE, DATASET)


CONTEXT = {
    "model_name": "churn",
    "candidate_version": 7,
    "champion_version": 6,
    "data": {
        "train": {"fingerprint": "sha256:aa11", "rows": 70_000},
        "test": {"fingerprint": "sha256:bb22", "rows": 4000},
    },
    "config": {"gate": GATE.model_dump(mode="json"), "seed": np.int64(42), "weights": np.array([0.5, 1.0])},
    "run_id": "run-2026-11-24",
}


def test_json_round_trips_to_the_decision(rejected: GateDecision) -> None:
    out = write_dossier(rejected, CONTEXT)
    doc = json.loads(out["json"])
    assert read_decision(out["json"]) == rejected
    assert doc["outcome"] == "REJECT" and doc["headline"] == rejected.headline
    assert doc["candidate_version"] == 7 and doc["champion_version"] == 6
    assert doc["data"]["test"] == {"fingerprint": "sha256:bb22", "rows": 4000}
    assert doc["config"]["seed"] == 42 and doc["config"]["weights"] == [0.5, 1.0]
    assert doc["context"] == {"run_id": "run-2026-11-24"}


def test_png_is_a_png(rejected: GateDecision) -> None:
    png = write_dossier(rejected, CONTEXT)["png"]
    assert png.startswith(PNG_MAGIC) and len(png) > 5000


def test_markdown_reads_well(rejected: GateDecision) -> None:
    md = write_dossier(rejected, CONTEXT)["markdown"]
    assert md.startswith("# Promotion dossier: churn, candidate 7 vs champion 6")
    assert "**REJECTED: better overall (+0." in md and "but worse for region=south (-0." in md
    south = next(line for line in md.splitlines() if line.startswith("| region=south |"))
    assert "**FAIL**" in south and "[-0." in south  # the interval is in the segment table
    assert "| test | 4,000 | `sha256:bb22` |" in md
    assert '"max_segment_regression": 0.02' in md  # the config
    assert f"![Per-segment gains with intervals]({FILES['png']})" in md


def test_first_run_and_forced_dossiers_render() -> None:
    y = np.tile([0, 1], 300)
    score = np.linspace(0, 1, 600)
    region = pd.DataFrame({"region": np.array(["a", "b", "c"])[np.arange(600) % 3]})
    first = evaluate_gate("binary", y, score, None, region, GateConfig(floor=0.4), DATASET)
    out = write_dossier(first, {"model_name": "churn", "candidate_version": 1})
    assert out["png"].startswith(PNG_MAGIC)
    assert "first model (no champion)" in out["markdown"] and "| region=a | 200 |" in out["markdown"]
    forced = evaluate_gate(
        "binary", y, score, score[::-1].copy(), region, GATE, DATASET, force=True, force_reason="rollback of v6"
    )
    md = write_dossier(forced, {"model_name": "churn"})["markdown"]
    assert forced.outcome == Outcome.PROMOTE and "> Forced promotion by request: rollback of v6." in md


def test_writes_to_a_folder_and_a_store(tmp_path: Path, rejected: GateDecision, local_store) -> None:  # type: ignore[no-untyped-def]
    out = write_dossier(rejected, CONTEXT, tmp_path / "dossier")
    assert (tmp_path / "dossier" / "dossier.json").read_bytes() == out["json"]
    assert (tmp_path / "dossier" / "dossier.md").read_text() == out["markdown"]
    write_dossier(rejected, CONTEXT, local_store, prefix="models/churn/7/")
    assert local_store.get_bytes("models/churn/7/dossier.png") == out["png"]


@pytest.mark.slow  # a fresh Python process
def test_importing_and_rendering_leave_matplotlib_global_state_alone(rejected: GateDecision) -> None:
    code = "import sys\nimport refit.dossier\nassert 'matplotlib' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)
    had_pyplot = "matplotlib.pyplot" in sys.modules
    write_dossier(rejected, CONTEXT)
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
