"""The ``sweep`` section: which ``section.field`` values a hyperparameter sweep tries."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from pydantic.dataclasses import dataclass

from compactlm.config.validation import SECTION, CommaList, check

SWEEP_METHODS = ("grid", "random")


@dataclass(config=SECTION)
class SweepConfig:
    """Hyperparameter sweep: ``space`` maps ``section.field`` to the values to try.

    ``grid`` tries every combination (``n_trials`` > 0 keeps the first n); ``random`` draws
    ``n_trials`` distinct combinations with ``seed``. Values are validated like overrides.

    Raises:
        ConfigError: an unknown method, a negative ``n_trials``, ``max_concurrency`` below 1, or a
            ``space`` key that is not a ``section.field`` name (or names ``sweep`` itself).
    """

    method: str = "grid"
    space: dict[str, CommaList[Any]] = field(default_factory=dict)
    n_trials: int = 0  # random: trials drawn (0: 4); grid: the first n combinations (0: all)
    max_concurrency: int = 1  # trials running at once (the Prefect task runner's workers)
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.method in SWEEP_METHODS, "sweep.method", self.method, " or ".join(SWEEP_METHODS))
        check(self.n_trials >= 0, "sweep.n_trials", self.n_trials, ">= 0")
        check(self.max_concurrency >= 1, "sweep.max_concurrency", self.max_concurrency, ">= 1")
        for name, values in self.space.items():
            check(name.count(".") >= 1 and not name.startswith("sweep."), f"sweep.space.{name}", name,
                  "a section.field name (e.g. finetune.learning_rate)")
            check(isinstance(values, list) and len(values) > 0, f"sweep.space.{name}", values,
                  "a non-empty list of values")
