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


def test_the_review_deployments_keep_the_timeout_each_review_was_opened_with():
    """One review timeout (registry.approval_timeout_s, recorded on the version): no deployment sets its own."""
    parameters = {d["name"]: d.get("parameters", {}) for d in SPEC["deployments"]}
    assert "timeout_s" not in parameters["review"]
    assert "timeout_s" not in parameters["every-10-minutes"]


def test_the_review_flow_accepts_a_version_number_typed_as_an_integer():
    """`prefect deployment run 'promote/review' --param version=1` sends the JSON integer 1."""
    from flows.review import promote

    assert promote.validate_parameters({"version": 1})["version"] in (1, "1")
    assert promote.validate_parameters({"version": "2"})["version"] == "2"


def test_review_tasks_are_never_cached():
    """A resumed review run starts again from the top: a cached 'no MLflow decision' would hide a tag set meanwhile."""
    from prefect.cache_policies import NO_CACHE

    from tasks import review

    for task in (review.apply_decision, review.reject_unanswered, review.honour_mlflow_decision, review.close_if_late,
                 review.sweep_reviews, review.trigger_review_deployment):
        assert task.cache_policy is NO_CACHE, task.name
