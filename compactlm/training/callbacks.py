"""What runs beside a stage's training loop: Trainer callbacks and MLflow system metrics.

``stage_callbacks`` gives every stage aligned loss logging (so a resumed run reports what an
uninterrupted one does), early stopping and, optionally, checkpoint folders as MLflow artifacts;
``system_metrics`` samples CPU/GPU/memory into the active MLflow run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from compactlm.config import TrainConfig
from compactlm.training.checkpoints import CHECKPOINT_PREFIX


def _aligned_logging_callback():
    from transformers import TrainerCallback

    class AlignedLogging(TrainerCallback):
        """Log the training loss at every checkpoint and at the last step.

        Each logged loss then covers a window that ends at a checkpoint or at the end, so the run's
        mean loss rebuilt from the log history (restored with a checkpoint) is the same whether or
        not the run was interrupted and resumed.
        """

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save or control.should_training_stop or state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return AlignedLogging()


def _checkpoint_artifacts_callback():
    from transformers import TrainerCallback

    class CheckpointArtifacts(TrainerCallback):
        """Log each checkpoint folder to the active MLflow run under ``checkpoints/``."""

        def on_save(self, args, state, control, **kwargs):
            import mlflow

            folder = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
            if state.is_world_process_zero and folder.is_dir() and mlflow.active_run() is not None:
                mlflow.log_artifacts(str(folder), f"checkpoints/{folder.name}")
            return control

    return CheckpointArtifacts()


def stage_callbacks(cfg: TrainConfig, report_to_mlflow: bool) -> list:
    """Callbacks for a stage: aligned loss logging, early stopping, checkpoint artifacts."""
    from transformers import EarlyStoppingCallback

    callbacks = [_aligned_logging_callback()]
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    if cfg.log_checkpoints and report_to_mlflow:
        callbacks.append(_checkpoint_artifacts_callback())
    return callbacks


@contextlib.contextmanager
def system_metrics(interval_s: float) -> Iterator[None]:
    """Sample CPU/GPU/memory into the active MLflow run every ``interval_s`` seconds (0: off) while training runs.

    A background thread (MLflow's monitor); it costs the training loop nothing measurable.
    """
    import mlflow

    run = mlflow.active_run()
    if not interval_s or run is None:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run.info.run_id, sampling_interval=interval_s, samples_before_logging=1)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
