"""prefect.yaml: every deployment points at a real flow with parameters that flow accepts."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((REPO / "prefect.yaml").read_text())


@pytest.mark.parametrize("deployment", SPEC["deployments"], ids=lambda d: d["name"])
def test_deployment_entrypoint_and_parameters_are_valid(deployment):
    module_path, name = deployment["entrypoint"].split(":")
    module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    validated = flow.validate_parameters(deployment.get("parameters", {}))  # raises on unknown names or types
    assert set(validated) >= set(deployment.get("parameters", {}))
    assert deployment["work_pool"]["name"] == "compactlm-process"
    if "config_path" in validated:
        assert (REPO / validated["config_path"]).is_file()


def test_the_scheduled_deployments_are_the_ones_the_readme_promises():
    schedules = {d["name"]: d.get("schedules", []) for d in SPEC["deployments"]}
    assert schedules["weekly"][0]["cron"] == "0 3 * * 1"
    assert schedules["daily"][0]["cron"] == "0 2 * * *"
    assert schedules["every-10-minutes"][0]["interval"] == 600
    assert schedules["review"] == []
