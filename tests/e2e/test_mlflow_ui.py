"""The MLflow UI as its users open it, in headless Chromium, on a tracked retrain: the
experiment page compares the retrain's trials (their metric charts render), and the run page
renders (a screenshot that is a real page, not a blank one).

Selectors are those of MLflow 3.17.2's UI; when an upgrade breaks them, the screenshot written
on failure (its path is in the error) shows what the page looks like now.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refit import recipe
from refit.config_loader import load_config
from tests.e2e.conftest import screenshot_on_failure
from tests.flows.helpers import make_project

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UI_TIMEOUT_MS = 120_000  # the MLflow UI's bundle is large; a loaded 2-core machine renders it slowly
TRIALS = ("torch_mlp trial 0", "torch_mlp trial 1")


def _visible(locator: Any) -> None:
    """Playwright's ``expect(...).to_be_visible()`` with this module's timeout (its own is 5 s)."""
    from playwright.sync_api import expect

    expect(locator).to_be_visible(timeout=UI_TIMEOUT_MS)


@pytest.fixture(scope="module")
def tracked(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One tracked retrain (a dry run: nothing to register) with two small torch trials."""
    folder = tmp_path_factory.mktemp("mlflow-ui")
    training = {
        "seed": 3,
        "max_epochs": 3,
        "patience": 10,
        "candidates": [{"family": "torch_mlp", "params": {"hidden": [[8], [16]]}, "budget": 2}],
    }
    config, store = make_project(
        folder, rows=600, dataset={"name": "churn-ui"}, training=training, tracking={"mlflow_uri": mlflow_server}
    )
    run = recipe.run_retrain(store, load_config(config), recipe.RetrainOptions(dry_run=True))
    assert run.tracking.ok and run.tracking.trials == 2, run.tracking
    return run


@pytest.fixture
def mlflow_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_the_experiment_page_compares_the_trials_of_a_retrain(
    mlflow_page: Any, mlflow_server: str, tracked: Any
) -> None:

    page, report = mlflow_page, tracked.tracking
    with screenshot_on_failure(page, "mlflow-ui-experiment"):
        page.goto(f"{mlflow_server}/#/experiments/{report.experiment_id}/runs?compareRunsMode=CHART")
        _visible(page.get_by_text(tracked.run_id).first)
        # the trials are nested under the retrain's run: expand it (the "+" before its name)
        page.locator('[data-component-id$="runnamecellrenderer.tsx_46"]').first.click()
        for trial in TRIALS:
            _visible(page.get_by_text(trial, exact=True).first)

        page.get_by_placeholder("Search metric charts").fill("val_loss")
        card = page.get_by_test_id("experiment-view-compare-runs-card").filter(has=page.locator('h4[title="val_loss"]'))
        _visible(card)
        _visible(card.locator(".js-plotly-plot"))
        _visible(card.get_by_text("Step", exact=True))  # a line chart over epochs
        for trial in TRIALS:
            _visible(card.get_by_text(f"{trial} (val_loss)"))
        # each trial's curve is drawn: plotly paths through its three epochs ("M x,y L x,y L x,y")
        lines = [line.get_attribute("d") or "" for line in card.locator("g.trace.scatter path.js-line").all()]
        assert sum(d.count("L") == 2 for d in lines) >= 2, lines


def test_a_screenshot_of_the_run_page(mlflow_page: Any, mlflow_server: str, tracked: Any, tmp_path: Path) -> None:
    from PIL import Image

    page, report = mlflow_page, tracked.tracking
    with screenshot_on_failure(page, "mlflow-ui-run"):
        page.goto(f"{mlflow_server}/#/experiments/{report.experiment_id}/runs/{report.run_id}")
        _visible(page.get_by_text(tracked.run_id).first)
        _visible(page.get_by_text("val_roc_auc", exact=True).first)  # the metrics table rendered
        shot = tmp_path / "mlflow-run-page.png"
        page.screenshot(path=str(shot), full_page=True)

    image = Image.open(shot).convert("RGB")
    assert image.width >= 1400 and image.height >= 1000 and shot.stat().st_size > 30_000
    colours = image.getcolors(maxcolors=image.width * image.height) or []
    most = max(count for count, _ in colours)
    assert len(colours) > 100 and most / (image.width * image.height) < 0.9, "a blank or single-colour page"
