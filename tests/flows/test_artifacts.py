"""The Prefect artifacts a run leaves, read back through the Prefect client as the UI reads them:
keyed (one key per kind, so the UI keeps history), flat tables, the dossier chart embedded and
titled with the version, links to store URIs, and decay and the governor's decision published."""

from __future__ import annotations

import base64
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import pytest

from flows.drift_check import DriftCheckParameters, drift_check
from flows.retrain import RetrainParameters, retrain
from refit import pipeline, recipe
from refit.config_loader import load_config
from refit.demo import write_production_data
from refit.model import load
from tasks.common import artifact_key, flat_rows, store_link
from tests.flows.helpers import make_project

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _artifacts(state: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    keyless = [a for a in found if not a.key]
    assert keyless == [], f"artifacts without a key show as 'No description' cards: {keyless}"
    by_key = {a.key: a for a in found}
    assert len(by_key) == len(found), "one artifact per kind and run"
    return by_key


@pytest.fixture(scope="module")
def champion_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts-champion")
    config, store = make_project(folder, rows=5000)
    assert recipe.run_retrain(store, load_config(config)).promotion is not None
    return folder


@pytest.fixture
def champion(champion_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "p"
    shutil.copytree(champion_folder, folder)
    monkeypatch.setenv("REFIT_STORE", str(folder / "store"))
    return folder


def test_a_retrain_publishes_a_rendering_dossier_flat_summary_and_store_links(champion: Path) -> None:
    config = champion / "refit.yaml"
    state = retrain(RetrainParameters(config_path=str(config), reason="artifacts"), return_state=True)
    result = state.result()
    assert result.version == 2
    artifacts = _artifacts(state)
    assert {
        "churn-retrain-summary",
        "churn-dossier",
        "churn-dossier-file",
        "churn-model-artifact",
        "churn-trials",
    } <= set(artifacts)

    dossier = artifacts["churn-dossier"].data
    title = dossier.splitlines()[0]
    assert title == "# Promotion dossier: churn, candidate version 2 vs champion 1", title
    assert "](dossier.png)" not in dossier  # the relative image the UI could not load
    [encoded] = re.findall(r"\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", dossier)
    assert base64.b64decode(encoded).startswith(b"\x89PNG\r\n\x1a\n")
    assert artifacts["churn-dossier"].description.startswith(f"churn version 2: {result.outcome}")

    summary = artifacts["churn-retrain-summary"].data
    rows = json.loads(summary)
    items = {r["item"]: r["value"] for r in rows}
    assert items["outcome"] == result.outcome and items["version"] == "2"
    assert "candidate.validation.roc_auc" in items and float(items["candidate.validation.roc_auc"]) > 0.5
    assert not any("{" in str(v) for v in items.values()), "a Python dict repr in the table"

    for key, uri in (("churn-model-artifact", result.artifact_uri), ("churn-dossier-file", result.dossier["markdown"])):
        link = urlparse(artifacts[key].data.split("](")[-1].rstrip(")")) if "](" in artifacts[key].data else None
        assert link is not None and link.scheme == "file", artifacts[key].data
        assert Path(unquote(link.path)) == Path(uri) and Path(uri).exists()


def _traffic(folder: Path, **kwargs: Any) -> None:
    from refit.io import open_store

    store = open_store(str(folder / "store"))
    model = load(store, "registry/churn/versions/1/artifact")
    write_production_data(
        store,
        load_config(folder / "refit.yaml"),
        start=(NOW - timedelta(days=7)).isoformat(),
        seed=5,
        model_version="1",
        predict=lambda df: pipeline.scores(model, df, "binary"),
        **kwargs,
    )


def test_a_drift_check_publishes_decay_and_the_governors_decision(champion: Path) -> None:
    _traffic(champion, batches=3, rows_per_batch=800, drift="covariate", strength=1.5)
    params = DriftCheckParameters(config_path=str(champion / "refit.yaml"), window_hours=24 * 8, as_of=NOW)
    state = drift_check(params, return_state=True)
    result = state.result()
    artifacts = _artifacts(state)
    assert {"churn-drift", "churn-drift-report", "churn-decay", "churn-governor"} <= set(artifacts)
    governor = artifacts["churn-governor"].data
    assert f"**governor: {result.decision}** ({result.reason})" in governor
    assert governor.startswith("# Drift check of churn (champion v1)")
    decay = artifacts["churn-decay"].data
    rows = json.loads(decay)
    assert rows[0]["segment"] == "overall" and rows[0]["rows"] == result.labelled_rows > 0
    assert {"region=south", "region=north"} <= {r["segment"] for r in rows}


def test_a_quiet_window_publishes_no_data(champion: Path) -> None:
    params = DriftCheckParameters(config_path=str(champion / "refit.yaml"), window_hours=1, as_of=NOW)
    state = drift_check(params, return_state=True)
    governor = _artifacts(state)["churn-governor"].data
    assert "**governor: none** (no-data)" in governor and "no captured requests" in governor


def test_store_links_and_keys(s3_store, local_store) -> None:  # type: ignore[no-untyped-def]
    from refit.io.s3 import S3Store, make_s3_client

    aws = S3Store("s3://bucket/prefix", make_s3_client(region="eu-west-1"))  # no endpoint set: AWS itself
    assert store_link(aws, "s3://bucket/models/churn/v 1/model.skops") == (
        "https://s3.console.aws.amazon.com/s3/object/bucket?prefix=models/churn/v%201/model.skops",
        "s3://bucket/models/churn/v 1/model.skops",
    )
    # any other S3 endpoint (here moto's server over HTTP): the object's path-style URL on that
    # endpoint (the AWS console knows nothing of this bucket); anonymous reads are refused, as on
    # MinIO, and a signed read of that bucket and key is the object
    s3_store.put_bytes("runs/x y.md", b"# dossier")
    uri = s3_store.uri_for("runs/x y.md")
    link, text = store_link(s3_store, uri)
    endpoint = s3_store.client.meta.endpoint_url
    assert text == uri and link == f"{endpoint}/{s3_store.bucket}/{s3_store.prefix}/runs/x%20y.md"
    assert httpx.get(link).status_code == 403
    bucket, key = unquote(link.removeprefix(f"{endpoint}/")).split("/", 1)
    assert s3_store.client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"# dossier"
    local = local_store.uri_for("runs/x.md")
    assert store_link(local_store, local) == (Path(local).resolve().as_uri(), str(Path(local).resolve()))
    assert artifact_key("Churn_EU", "dossier") == "churn-eu-dossier"
    assert flat_rows({"a": {"b": 1.0, "c": [1, 2]}, "d": None}) == [
        {"item": "a.b", "value": "1"},
        {"item": "a.c", "value": "1, 2"},
        {"item": "d", "value": ""},
    ]
