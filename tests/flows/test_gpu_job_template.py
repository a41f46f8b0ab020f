"""deployments/k8s-gpu-job-template.json: the Prefect server accepts it as a Kubernetes work
pool's base job template (and refuses a broken copy), and Prefect's own job-configuration
rendering turns it into a Job whose container asks for an NVIDIA GPU."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ConfigDict

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deployments" / "k8s-gpu-job-template.json"


def template() -> dict[str, Any]:
    return json.loads(TEMPLATE.read_text())


def test_the_server_accepts_it_as_a_kubernetes_pools_template_and_refuses_a_broken_copy() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import PrefectHTTPStatusError

    name = f"refit-gpu-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        pool = client.create_work_pool(WorkPoolCreate(name=name, type="kubernetes", base_job_template=template()))
        assert client.read_work_pool(name).base_job_template == template()
        assert pool.type == "kubernetes"

        broken = template()
        broken["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["priorityClassName"] = "{{ priority }}"
        with pytest.raises(PrefectHTTPStatusError, match="undeclared variable.*priority"):
            client.create_work_pool(WorkPoolCreate(name=name + "-broken", type="kubernetes", base_job_template=broken))


def test_its_variables_are_a_valid_json_schema_and_the_defaults_conform() -> None:
    variables = template()["variables"]
    jsonschema.Draft7Validator.check_schema(variables)
    defaults = {k: v["default"] for k, v in variables["properties"].items() if "default" in v}
    assert defaults["gpu_count"] == 1
    jsonschema.validate(defaults | {"image": "refit:1.0-cuda"}, variables)
    with pytest.raises(jsonschema.ValidationError, match="less than the minimum of 1"):
        jsonschema.validate({"gpu_count": 0}, variables)


@pytest.mark.parametrize("values", [{}, {"gpu_count": 2}])
def test_prefect_renders_a_job_that_requests_the_gpu(values: dict[str, Any]) -> None:
    from prefect.utilities.asyncutils import run_coro_as_sync
    from prefect.workers.base import BaseJobConfiguration

    class Rendered(BaseJobConfiguration):  # keeps the Kubernetes worker's fields (prefect-kubernetes not installed)
        model_config = ConfigDict(extra="allow")

    image = "registry.example.com/refit:1.0-cuda"
    config = run_coro_as_sync(
        Rendered.from_template_and_values(
            copy.deepcopy(template()), {"image": image, "env": {"REFIT_STORE": "s3://models"}} | values
        )
    )
    assert config is not None
    extra = config.model_extra or {}
    manifest = extra["job_manifest"]
    assert "{{" not in json.dumps(manifest)  # every placeholder filled or dropped
    pod = manifest["spec"]["template"]["spec"]
    [container] = pod["containers"]
    gpus = values.get("gpu_count", 1)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus
    assert container["image"] == image
    assert container["env"] == {"REFIT_STORE": "s3://models"} == config.env
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "serviceAccountName" not in pod  # unset variables are dropped, not sent as ""
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 3600
    assert extra["pod_watch_timeout_seconds"] == 300
