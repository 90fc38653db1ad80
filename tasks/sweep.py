"""Sweep tasks: the shared base trained once, and one trial per point of the space, each in its own process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import mlflow
from prefect import task
from prefect.artifacts import create_table_artifact

from compactlm.data.versioning import DatasetVersion
from compactlm.errors import CompactLMError
from compactlm.registry.tracking import log_dataset, reopen_run
from compactlm.training.sweep import launch_training, trial_overrides, trial_result, trials_table


@task(name="sweep-base")
def train_shared_base(config_path: str | None, overrides: list[str], version: DatasetVersion, work_dir: str,
                      run_id: str) -> str | None:
    """Train the base stage once for trials that only vary fine-tuning; None when the task has no base stage."""
    with reopen_run(run_id, child="sweep-base") as nested:
        stages = launch_training(config_path, overrides, version.path, Path(work_dir) / "base-run",
                                 os.cpu_count() or 1, ["--base-only"], mlflow.get_tracking_uri(), nested.info.run_id)
    log_dataset(version, nested.info.run_id)
    return next((s["output_dir"] for s in stages.values()), None)


@task(name="sweep-trial")
def run_trial(index: int, trial: dict[str, Any], config_path: str | None, overrides: list[str],
              version: DatasetVersion, base_dir: str | None, work_dir: str, run_id: str,
              threads: int) -> dict[str, Any]:
    """Train one trial in its own process into a nested MLflow run; returns its losses (a failure is recorded)."""
    with reopen_run(run_id, child=f"trial-{index}") as nested:
        mlflow.log_params({name: json.dumps(value) for name, value in trial.items()})
        mlflow.set_tags({"sweep.trial": str(index), "data_version": version.md5})
        try:
            stages = launch_training(config_path, [*overrides, *trial_overrides(trial)], version.path,
                                     Path(work_dir) / f"trial-{index}", threads,
                                     ["--base", base_dir] if base_dir else [], mlflow.get_tracking_uri(),
                                     nested.info.run_id)
        except (CompactLMError, RuntimeError, subprocess.TimeoutExpired) as exc:
            mlflow.set_tag("sweep.error", str(exc)[:500])
            return trial_result(index, trial, error=str(exc), mlflow_run_id=nested.info.run_id)
    result = trial_result(index, trial, stages, mlflow_run_id=nested.info.run_id)
    # The trial's process closed the nested run; its objective and data go next to the Trainer's curves.
    with reopen_run(result["mlflow_run_id"]):
        mlflow.log_metric("trial_eval_loss", result["eval_loss"])
    log_dataset(version, result["mlflow_run_id"])
    return result


@task(name="sweep-report")
def report_sweep(results: list[dict[str, Any]], best: dict[str, Any] | None, run_id: str) -> None:
    """The trials as a Prefect table artifact; the results and the best trial on the sweep's MLflow run."""
    create_table_artifact(key="sweep-trials", table=trials_table(results),
                          description=f"Best trial: {best['trial'] if best else 'none'} (lowest validation loss)")
    with reopen_run(run_id):
        mlflow.log_text(json.dumps(results, indent=2, default=str), "reports/sweep.json")
        if best is not None:
            mlflow.log_metric("best_eval_loss", best["eval_loss"])
            mlflow.log_params({f"best.{k}": json.dumps(v) for k, v in best["params"].items()})
