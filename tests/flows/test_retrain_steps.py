"""One retrain recipe: the flow's tasks and the plain runner run the same steps in the same order."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort

from flows.retrain import RetrainParameters, retrain
from refit import recipe
from refit.config_loader import load_config
from refit.io import open_store
from tests.flows.helpers import make_project

#: Tasks of the flow that are not retrain steps: reading the config, and the UI summary.
FLOW_ONLY_TASKS = ("load-config", "publish-summary")


def _flow_task_names(flow_run_id: object, last: str = "publish-summary", deadline_s: float = 30.0) -> list[str]:
    """The flow run's task names in start order, read back from the API (task runs arrive as events)."""
    flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    end = time.monotonic() + deadline_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=flow_filter, sort=TaskRunSort.EXPECTED_START_TIME_ASC)
            runs = sorted(runs, key=lambda r: r.start_time or r.expected_start_time)
            names = [r.name.rsplit("-", 1)[0] for r in runs]  # "split-data-a1b": the task's name, then a key
            if (last in names and all(r.state and r.state.is_final() for r in runs)) or time.monotonic() > end:
                return names
            time.sleep(0.5)


@pytest.fixture(scope="module")
def seed_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("steps-project")
    make_project(folder, rows=4000)
    return folder


@pytest.fixture
def twin_projects(seed_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Two copies of one project: one for the flow, one for the plain runner."""
    flow_dir, plain_dir = tmp_path / "flow", tmp_path / "plain"
    shutil.copytree(seed_project, flow_dir)
    shutil.copytree(seed_project, plain_dir)
    monkeypatch.setenv("REFIT_STORE", str(flow_dir / "store"))
    return flow_dir, plain_dir


def _track_to(folder: Path, uri: str) -> None:
    """Turn tracking on in the project's config."""
    import yaml

    raw = yaml.safe_load((folder / "refit.yaml").read_text())
    raw["tracking"] = {"mlflow_uri": uri, "timeout_s": 2}
    (folder / "refit.yaml").write_text(yaml.safe_dump(raw))


@pytest.mark.parametrize(
    ("dry_run", "tracked"), [(False, False), (True, False), (False, True)], ids=["promote", "dry-run", "tracked"]
)
def test_flow_and_runner_run_the_same_steps_in_the_same_order(twin_projects, dry_run: bool, tracked: bool) -> None:  # type: ignore[no-untyped-def]
    flow_dir, plain_dir = twin_projects
    if tracked:  # MLflow unreachable: the track-run step still runs (and warns) in both
        from tests.conftest import free_port

        dead = f"http://127.0.0.1:{free_port()}"
        _track_to(flow_dir, dead)
        _track_to(plain_dir, dead)
    state = retrain(RetrainParameters(config_path=str(flow_dir / "refit.yaml"), dry_run=dry_run), return_state=True)
    result = state.result()
    assert result.outcome == "PROMOTE"  # the first model: every step applies (register and promote unless dry)
    flow_names = _flow_task_names(state.state_details.flow_run_id)

    cfg = load_config(plain_dir / "refit.yaml")
    run = recipe.run_retrain(open_store(str(plain_dir / "store")), cfg, recipe.RetrainOptions(dry_run=dry_run))
    assert run.need("evaluation").outcome == "PROMOTE"

    names = [n for n in recipe.RETRAIN_STEP_NAMES if n != "track-run"]
    expected = names[:5] if dry_run else names
    expected = [*expected, "track-run"] if tracked else expected
    assert run.steps == list(expected)
    # Every task the flow ran is a step of the recipe (or config/summary), in the recipe's order:
    # a step added to one of them and not the other fails here.
    assert flow_names == [FLOW_ONLY_TASKS[0], *run.steps, FLOW_ONLY_TASKS[1]]
    assert (result.version is None) == dry_run and (run.version is None) == dry_run


def test_runner_stops_after_a_named_step_and_refuses_an_unknown_one(seed_project: Path, tmp_path: Path) -> None:
    shutil.copytree(seed_project, tmp_path / "p")
    store = open_store(str(tmp_path / "p" / "store"))
    cfg = load_config(tmp_path / "p" / "refit.yaml")
    run = recipe.run_retrain(store, cfg, until="split-data")
    assert run.steps == ["load-and-validate", "split-data"] and run.candidate is None
    assert run.options.window_days == cfg.training.window_days == 30.0  # resolved from the config
    with pytest.raises(Exception, match="no retrain step 'train'"):
        recipe.run_retrain(store, cfg, until="train")
