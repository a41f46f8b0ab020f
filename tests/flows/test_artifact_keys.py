"""Prefect artifact keys from any model name: a model called seattle_weather crashed the retrain flow."""

from __future__ import annotations

import pytest
from prefect.artifacts import MarkdownArtifact, TableArtifact

from tasks.common import artifact_key


@pytest.mark.parametrize("model", ["churn", "seattle_weather", "Bikes.v2", "my model"])
@pytest.mark.parametrize("kind", ["trials", "dossier", "retrain-summary", "drift-report", "quarantine"])
def test_every_artifact_key_is_one_prefect_accepts(model: str, kind: str) -> None:
    key = artifact_key(model, kind)
    TableArtifact(key=key, table=[{"a": 1}])  # raises on a key Prefect refuses
    MarkdownArtifact(key=key, markdown="x")
    assert key.endswith(kind) and key.startswith(model.lower()[:2])


def test_the_demo_keys_are_unchanged() -> None:
    assert artifact_key("churn", "trials") == "churn-trials"
    assert artifact_key("seattle_weather", "drift-report") == "seattle-weather-drift-report"
