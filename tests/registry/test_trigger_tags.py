"""The flow's MLflow run records what started it: a deployment trigger's event, or nothing (schedule/manual)."""

from __future__ import annotations

import mlflow
import pytest

from compactlm.config import load_config
from compactlm.registry.tracking import end_run, start_flow_run, trigger_tags

TRIGGER = {"event": "compactlm.monitor.retrain-needed", "event_id": "0192-abc", "resource": "compactlm.model.m",
           "payload": {"reasons": ["out_of_domain", "vocabulary"], "model_version": "3",
                       "monitor_mlflow_run_id": "run-1",
                       "figures": {"drift.out_of_domain": 0.625, "served_prompts": 48.0}}}


@pytest.fixture
def config(home):
    yield load_config(None, [f"home={home}"])
    mlflow.set_tracking_uri(None)


def test_a_triggered_run_is_tagged_with_its_event_and_drift_figures(config):
    run = start_flow_run(config, "flow-run-1", "retrain", "trigger-tests", trigger=TRIGGER)
    end_run(run.run_id, "FINISHED")
    logged = mlflow.MlflowClient().get_run(run.run_id)
    tags = logged.data.tags
    assert tags["triggered_by"] == "compactlm.monitor.retrain-needed" and tags["trigger.event_id"] == "0192-abc"
    assert tags["trigger.reasons"] == "out_of_domain,vocabulary" and tags["trigger.drift.out_of_domain"] == "0.6250"
    assert tags["trigger.model_version"] == "3" and tags["trigger.monitor_mlflow_run_id"] == "run-1"
    saved = mlflow.artifacts.load_dict(f"runs:/{run.run_id}/trigger.json")
    assert saved == TRIGGER


def test_an_untriggered_run_says_so(config):
    assert trigger_tags(None) == {"triggered_by": "schedule-or-manual"}
    run = start_flow_run(config, "flow-run-2", "retrain", "trigger-tests")
    end_run(run.run_id, "FINISHED")
    assert mlflow.MlflowClient().get_run(run.run_id).data.tags["triggered_by"] == "schedule-or-manual"
