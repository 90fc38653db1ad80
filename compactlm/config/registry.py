"""The ``registry`` section: MLflow experiment and registered-model names, and the review timeout."""

from __future__ import annotations

from pydantic.dataclasses import dataclass

from compactlm.config.validation import SECTION, check


@dataclass(config=SECTION)
class RegistryConfig:
    """MLflow experiment and registered-model names, and how long a human review may take.

    Raises:
        ConfigError: a blank model name or an ``approval_timeout_s`` below 1.
    """

    experiment: str = "compactlm-retrain"
    model_name: str = "compactlm-support-chat"
    approval_timeout_s: int = 86400  # seconds; a reviewer who never answers means "rejected" (form, run, sweep)

    def __post_init__(self) -> None:
        check(bool(self.model_name.strip()), "registry.model_name", self.model_name, "non-empty")
        check(self.approval_timeout_s >= 1, "registry.approval_timeout_s", self.approval_timeout_s, ">= 1")
