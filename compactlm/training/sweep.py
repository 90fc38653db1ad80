"""Hyperparameter sweeps: expand a search space into trials, validate them, pick the best.

A trial is a set of ``section.field=value`` overrides on top of the sweep's config; the objective is
the validation loss of the last training stage (lower is better). Prefect orchestration lives in
``flows/sweep.py``; this module is plain Python.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path
from typing import Any

from compactlm.config import SweepConfig, load_config
from compactlm.errors import ConfigError

# Fields that only change fine-tuning: trials varying nothing else can share one pretrained base.
_FINETUNE_ONLY = ("lora.", "classifier.loss", "classifier.focal_gamma")
DEFAULT_RANDOM_TRIALS = 4


def expand_space(sweep: SweepConfig) -> list[dict[str, Any]]:
    """The trials of a sweep: every combination (grid) or ``n_trials`` distinct ones drawn with ``seed``.

    Raises:
        ConfigError: an empty space.
    """
    if not sweep.space:
        raise ConfigError("sweep.space must name at least one field to vary, e.g. {lora.learning_rate: [1e-3, 3e-3]}")
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
        ConfigError: the first invalid trial value (``lora.r must be >= 1, got 0``).
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
