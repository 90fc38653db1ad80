"""Hyperparameter sweeps: expand a search space into trials, validate them, pick the best.

A trial is a set of ``section.field=value`` overrides on top of the sweep's config; the objective is
the validation loss of the last training stage (lower is better). Each trial trains in a fresh process
through ``compactlm.training.launch`` (``launch_training``: isolated memory and RNG, so concurrent
trials stay reproducible). Prefect orchestration lives in ``tasks/sweep.py`` and ``flows/sweep.py``;
this module is plain Python.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from compactlm.config import SweepConfig, load_config
from compactlm.errors import ConfigError

# Fields that only change fine-tuning: trials varying nothing else can share one pretrained base.
_FINETUNE_ONLY = ("finetune.", "classifier.loss", "classifier.focal_gamma")
DEFAULT_RANDOM_TRIALS = 4
TRIAL_TIMEOUT_S = 6 * 3600


def expand_space(sweep: SweepConfig) -> list[dict[str, Any]]:
    """The trials of a sweep: every combination (grid) or ``n_trials`` distinct ones drawn with ``seed``.

    Raises:
        ConfigError: an empty space.
    """
    if not sweep.space:
        raise ConfigError("sweep.space must name at least one field to vary, "
                          "e.g. {finetune.learning_rate: [1e-3, 3e-3]}")
    names = list(sweep.space)
    grid = [dict(zip(names, values)) for values in itertools.product(*(sweep.space[n] for n in names))]
    if sweep.method == "grid":
        return grid[:sweep.n_trials] if sweep.n_trials else grid
    count = min(sweep.n_trials or DEFAULT_RANDOM_TRIALS, len(grid))
    return random.Random(sweep.seed).sample(grid, count)


def trial_overrides(trial: dict[str, Any]) -> list[str]:
    """``section.field=value`` strings (values as JSON, which the config loader reads as YAML)."""
    return [f"{name}={json.dumps(value)}" for name, value in trial.items()]


def validate_trials(config_path: str | Path | None, overrides: list[str], trials: list[dict[str, Any]]) -> None:
    """Load every trial's config so a bad value fails before any compute, naming the field and value.

    Raises:
        ConfigError: the first invalid trial value (``finetune.r must be >= 1, got 0``).
    """
    for trial in trials:
        load_config(config_path, [*overrides, *trial_overrides(trial)])


def shares_base(space: dict[str, list[Any]]) -> bool:
    """Whether every varied field only affects fine-tuning (then one base serves every trial)."""
    return all(name.startswith(_FINETUNE_ONLY) for name in space)


def best_trial(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The finished trial with the lowest validation loss (None when none finished)."""
    finished = [r for r in results if r.get("eval_loss") is not None and math.isfinite(r["eval_loss"])]
    return min(finished, key=lambda r: r["eval_loss"]) if finished else None


def launch_training(config_path: str | None, overrides: list[str], data_dir: str, output_dir: Path, threads: int,
                    extra: list[str], tracking_uri: str | None = None,
                    mlflow_run_id: str | None = None) -> dict[str, Any]:
    """Run ``python -m compactlm.training.launch`` in a fresh process; returns its ``{stage: summary dict}``.

    Args:
        config_path, overrides: the config the process loads.
        data_dir: a dataset version folder (``train.parquet``, ``val.parquet``).
        output_dir: the process's work directory (``base/``, ``finetuned/``, ``summary.json``).
        threads: OMP/torch threads of the process (the trials share the machine's cores).
        extra: more ``launch`` arguments (``--base DIR``, ``--base-only``).
        tracking_uri, mlflow_run_id: log step metrics to this (already created) MLflow run.

    Raises:
        ConfigError: the process reported a user error (its ``error: ...`` line).
        RuntimeError: the process failed otherwise (the last lines of its stderr).
        subprocess.TimeoutExpired: it ran longer than ``TRIAL_TIMEOUT_S``.
    """
    summary = output_dir / "summary.json"
    command = [sys.executable, "-m", "compactlm.training.launch", "--data", data_dir, "--output", str(output_dir),
               "--summary", str(summary), *(["--config", config_path] if config_path else []),
               *[arg for item in overrides for arg in ("--set", item)], *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    if mlflow_run_id:
        command.append("--mlflow")
        env["MLFLOW_RUN_ID"] = mlflow_run_id
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TRIAL_TIMEOUT_S)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        user_error = next((line[len("error: "):] for line in lines if line.startswith("error: ")), None)
        if user_error:
            raise ConfigError(user_error)
        raise RuntimeError(f"training process failed ({done.returncode}): {' | '.join(lines[-5:])}")
    return json.loads(summary.read_text())


def trial_result(index: int, params: dict[str, Any], stages: dict[str, Any] | None = None,
                 error: str | None = None, mlflow_run_id: str | None = None) -> dict[str, Any]:
    """The record of one trial: its parameters and, from its last stage, the losses and output folder.

    Args:
        index: the trial's number; params: its ``section.field`` values.
        stages: ``launch_training``'s output (None when the trial failed).
        error: why the trial failed (None when it finished).
        mlflow_run_id: the trial's nested MLflow run.
    """
    result: dict[str, Any] = {"trial": index, "params": params, "eval_loss": None, "train_loss": None,
                              "error": error, "mlflow_run_id": mlflow_run_id}
    if stages:
        last = list(stages.values())[-1]
        result.update(eval_loss=last["eval_loss"], train_loss=last["train_loss"], output_dir=last["output_dir"])
    return result


def trials_table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per trial (its parameters as JSON, losses, error) for a table report."""
    return [{"trial": r["trial"], **{k: json.dumps(v) for k, v in r["params"].items()},
             "eval_loss": r["eval_loss"], "train_loss": r["train_loss"], "error": r["error"] or ""} for r in results]
