"""The sweep flow under a real Prefect API and MLflow: trials as tasks and nested runs, the best one wins."""

from __future__ import annotations

from pathlib import Path

import pytest

SWEEP_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sweep.yaml"
FAST = ["data.n_rows=300", "finetune.max_steps=4", "train.max_steps=6", "train.system_metrics_interval=0"]
SPACE = {"finetune.learning_rate": [0.0005, 0.01], "finetune.r": [2]}


def _children(parent_id: str):
    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {run.info.run_name: run for run in runs}


def test_trials_run_as_prefect_tasks_and_nested_runs_and_the_lowest_loss_wins(home, prefect_harness):
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client

    from flows.sweep import sweep

    outcome = sweep(config_path=str(SWEEP_CONFIG), overrides=FAST, space=SPACE, method="grid", max_concurrency=2)
    trials = outcome["trials"]
    assert [t["params"] for t in trials] == [{"finetune.learning_rate": 0.0005, "finetune.r": 2},
                                             {"finetune.learning_rate": 0.01, "finetune.r": 2}]
    assert all(t["error"] is None and t["eval_loss"] > 0 for t in trials)
    assert outcome["best"] == min(trials, key=lambda t: t["eval_loss"])
    best_rate = outcome["best"]["params"]["finetune.learning_rate"]
    assert outcome["best_overrides"] == [f"finetune.learning_rate={best_rate}", "finetune.r=2"]
    assert outcome["retrain"] is None

    client = MlflowClient()
    parent = client.get_run(outcome["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_eval_loss"] == pytest.approx(outcome["best"]["eval_loss"])
    children = _children(outcome["mlflow_run_id"])
    assert set(children) == {"sweep-base", "trial-0", "trial-1"}  # only LoRA varies: one shared base
    for trial in trials:
        run = children[f"trial-{trial['trial']}"]
        assert run.info.run_id == trial["mlflow_run_id"] and run.info.status == "FINISHED"
        assert run.data.params["finetune.learning_rate"] == str(trial["params"]["finetune.learning_rate"])
        assert run.data.metrics["trial_eval_loss"] == pytest.approx(trial["eval_loss"])
        assert len(client.get_metric_history(run.info.run_id, "loss")) >= 1  # curves from the trial's process
        assert {d.dataset.digest for d in run.inputs.dataset_inputs} == {parent.data.tags["data_version"][:36]}
        assert not (Path(trial["output_dir"]).parents[1] / "base").exists()  # fine-tuned from the shared base

    with get_client(sync_client=True) as prefect:
        names = [run.name for run in prefect.read_task_runs()]
    assert sum(name.startswith("sweep-trial") for name in names) >= 2
    assert any(name.startswith("sweep-base") for name in names)


def test_a_bad_trial_value_fails_before_anything_runs(home, prefect_harness):
    from compactlm.errors import ConfigError
    from flows.sweep import sweep

    with pytest.raises(ConfigError, match=r"^finetune.r must be >= 1, got 0$"):
        sweep(config_path=str(SWEEP_CONFIG), overrides=FAST, space={"finetune.r": [4, 0]})
    assert not (home / "runs").exists() and not (home / "mlflow.db").exists()


@pytest.mark.slow
def test_the_best_trial_feeds_the_retrain_flow(home, prefect_harness):
    from mlflow import MlflowClient

    from flows.sweep import sweep

    outcome = sweep(config_path=str(SWEEP_CONFIG), overrides=FAST, space=SPACE, method="grid", max_concurrency=2,
                    retrain_best=True, approval="auto")
    retrained = outcome["retrain"]
    assert retrained["version"] == "1" and "champion" in retrained["aliases"]
    params = MlflowClient().get_run(retrained["mlflow_run_id"]).data.params
    assert params["finetune.learning_rate"] == str(outcome["best"]["params"]["finetune.learning_rate"])
