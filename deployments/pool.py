"""The deployments on a work pool instead of ``serve``: workers (``prefect worker start --pool
NAME``) on any machine that has this package installed run them (the entrypoints are module
paths, so no image and no code storage). ``refit deploy --pool`` (and ``refit up --pool``) call this."""

from __future__ import annotations

from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

#: The pool type ``refit deploy`` creates when the named pool does not exist (a Kubernetes or
#: Docker pool is made by hand, with its job template: see the README).
POOL_TYPE = "process"


def ensure_pool(name: str) -> str:
    """The pool's type; a process pool (Prefect's default process job template) is created when missing."""
    with get_client(sync_client=True) as client:
        try:
            return str(client.read_work_pool(name).type)
        except ObjectNotFound:
            pool = WorkPoolCreate(
                name=name,
                type=POOL_TYPE,
                base_job_template=ProcessWorker.get_default_base_job_template(),
                description="refit's deployments (created by refit deploy)",
            )
            return str(client.create_work_pool(pool).type)


def deploy_to_pool(deployments: list[Any], pool: str) -> list[str]:
    """Create or update each ``RunnerDeployment`` on ``pool`` (schedules and triggers with it);
    their ``flow/deployment`` names. An existing deployment of that name (one ``refit serve``
    made) moves to the pool."""
    for deployment in deployments:
        deployment.apply(work_pool_name=pool)
    return [f"{d.flow_name}/{d.name}" for d in deployments]
