"""MLflow tracking of a training stage: step metrics, system metrics, parameters and checkpoint artifacts."""

from __future__ import annotations

import pytest

from compactlm.training.causal import pretrain_decoder


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("tracking-test", artifact_location=str(tmp_path / "artifacts"))
    yield experiment
    mlflow.set_tracking_uri(None)


def test_a_stage_logs_curves_system_metrics_and_checkpoints_to_the_active_run(tracking, splits, tiny_config,
                                                                              tmp_path):
    import mlflow
    from mlflow import MlflowClient

    config = tiny_config("train.max_steps=6", "train.save_steps=3", "train.log_checkpoints=true",
                         "train.system_metrics_interval=0.2")
    with mlflow.start_run(experiment_id=tracking) as run:
        summary = pretrain_decoder(*splits, tmp_path / "out", config.model, config.train, report_to_mlflow=True)
        assert mlflow.active_run().info.run_id == run.info.run_id  # the caller's run stays open
    client = MlflowClient()
    logged = client.get_run(run.info.run_id)
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in losses] == [2, 3, 4, 6]  # every 2 steps, plus each checkpoint (3, 6)
    assert logged.data.metrics["eval_loss"] == pytest.approx(summary.eval_loss)
    assert any(name.startswith("system/cpu_utilization") for name in logged.data.metrics)
    assert logged.data.params["learning_rate"] == str(config.train.learning_rate)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert artifacts == {"checkpoints/checkpoint-3", "checkpoints/checkpoint-6"}
    files = {a.path.rsplit("/", 1)[1] for a in client.list_artifacts(run.info.run_id, "checkpoints/checkpoint-6")}
    assert {"model.safetensors", "optimizer.pt", "trainer_state.json", "rng_state.pth"} <= files
