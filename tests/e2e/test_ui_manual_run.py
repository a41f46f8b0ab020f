"""A manual run from the Prefect UI, in a real (headless) browser: Run > Custom run > one change > Submit.

Selectors are those of Prefect 3.8.8's UI; when an upgrade breaks them, the screenshot written on
failure (its path is in the error) shows what the page looks like now.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from refit.registry import Registry
from tests.e2e.conftest import (
    WINDOW_DAYS,
    PrefectServer,
    Proc,
    Project,
    screenshot_on_failure,
    wait_for_completed,
    wait_for_quiet,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_custom_run_from_the_ui_with_dry_run_switched_on(
    page: Any, prefect_server: PrefectServer, refit_serve: Proc, project: Project
) -> None:
    from playwright.sync_api import expect
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    wait_for_quiet(prefect_server, 240)  # runs left by other tests would register versions meanwhile
    registry = Registry(project.store())
    versions_before = [v.version for v in registry.list_versions("churn")]
    champion_before = registry.aliases("churn").get("champion")
    with prefect_server.client() as client:
        deployment = client.read_deployment_by_name("retrain/retrain-manual")
    run_name = f"ui-e2e-{uuid.uuid4().hex[:8]}"

    with screenshot_on_failure(page, "refit-ui-manual-run"):
        page.goto(f"{prefect_server.url}/deployments/deployment/{deployment.id}")
        expect(page.get_by_text("retrain-manual", exact=True).first).to_be_visible()
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run", exact=True).click()
        page.wait_for_url(re.compile(r".*/deployments/deployment/[0-9a-f-]{36}/run.*"))

        # The form is filled from the deployment's defaults once it has loaded: wait for that.
        config_path = (
            page.locator(".schema-form-property")
            .filter(has=page.get_by_text("Config Path (Optional)", exact=True))
            .last.get_by_role("textbox")
        )
        expect(config_path).to_have_value("refit.yaml")
        page.locator(".flow-run-name-input input").fill(run_name)

        # The one change: Dry Run on. The innermost form property whose label is "Dry Run".
        dry_run = (
            page.locator(".schema-form-property")
            .filter(has=page.get_by_text("Dry Run (Optional)", exact=True))
            .last.get_by_role("switch")
        )
        expect(dry_run).to_have_attribute("aria-checked", "false")
        dry_run.click()
        expect(dry_run).to_have_attribute("aria-checked", "true")

        page.get_by_role("button", name="Submit", exact=True).click()
        expect(page.get_by_text(f"{run_name} scheduled to start now").first).to_be_visible()

    def created() -> list[Any]:
        with prefect_server.client() as client:
            return client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name])))

    [run] = wait_until(created, 30, f"flow run {run_name} in the API")
    assert run.deployment_id == deployment.id
    expected = deployment.parameters["params"] | {"dry_run": True}  # the one change, nothing else
    assert run.parameters == {"params": expected}, run.parameters
    assert expected["window_days"] == WINDOW_DAYS and expected["trigger"] == "manual"

    finished = wait_for_completed(prefect_server, refit_serve, run.id, 240)
    assert finished.parameters["params"]["dry_run"] is True
    assert [v.version for v in registry.list_versions("churn")] == versions_before  # a dry run registers nothing
    assert registry.aliases("churn").get("champion") == champion_before
