"""Shared by the benchmarks that run the documented pipeline command: run it, then read what it logged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_pipeline(config: Path, source: Path, home: Path, overrides: list[str]) -> tuple[dict | None, float]:
    """``compactlm pipeline run --config CONFIG --source SOURCE --auto-approve --set ...`` in ``home``.

    Returns:
        ``(summary, seconds)``: the run's ``last_run.json`` (None when the command failed) and its wall time.
    """
    command = [sys.executable, "-m", "compactlm.cli", "pipeline", "run", "--config", str(config),
               "--source", str(source), "--auto-approve", *[arg for item in overrides for arg in ("--set", item)]]
    env = {**os.environ, "COMPACTLM_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    summary_file = home / "last_run.json"
    summary_file.unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(f"error: the pipeline failed (exit {done.returncode}); see the output above", file=sys.stderr)
        return None, seconds
    return json.loads(summary_file.read_text()), seconds


def stage_metrics(summary: dict, stage_run: str) -> dict[str, float]:
    """The metrics of one training stage (``pretrain``, ``finetune-classifier``...), from its nested MLflow run."""
    from mlflow import MlflowClient

    client = MlflowClient(summary["tracking_uri"])
    parent = client.get_run(summary["mlflow_run_id"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return dict(next(c for c in children if c.info.run_name == stage_run).data.metrics)


def parameters_in(model_dir: Path) -> int:
    """Parameters in a saved model's safetensors files (read from the headers, no weights loaded)."""
    from math import prod

    from safetensors import safe_open

    total = 0
    for path in model_dir.glob("*.safetensors"):
        with safe_open(str(path), framework="np") as handle:
            total += sum(prod(handle.get_slice(name).get_shape()) for name in handle.keys())
    return total
