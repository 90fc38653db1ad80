"""``PipelineConfig``: the whole retrain pipeline, one section per concern, with its stable hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import field
from typing import Any

from pydantic.dataclasses import dataclass

from compactlm.config.data import BiasConfig, DataConfig
from compactlm.config.evaluation import EvalConfig, GateConfig
from compactlm.config.model import ModelConfig
from compactlm.config.monitor import MonitorConfig
from compactlm.config.registry import RegistryConfig
from compactlm.config.serving import ServeConfig
from compactlm.config.sweep import SweepConfig
from compactlm.config.training import ClassifierConfig, DistillConfig, FinetuneConfig, TrainConfig
from compactlm.config.validation import SECTION


@dataclass(config=SECTION)
class PipelineConfig:
    """The whole retrain pipeline: one section per concern (each validates itself when built).

    Build one with ``load_config`` (a YAML file and overrides, with the gate of ``data.task``) or
    ``config_from_dict`` (a saved ``to_dict()``); built directly, every section left out is its default.

    Raises:
        ConfigError: an invalid value in any section (see each section's class).
    """

    home: str = ".compactlm"  # all local state; COMPACTLM_HOME overrides
    data: DataConfig = field(default_factory=DataConfig)
    bias: BiasConfig = field(default_factory=BiasConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    def to_dict(self) -> dict[str, Any]:
        """Every value as plain nested dicts and lists (what ``config_from_dict`` rebuilds the config from).

        Returns:
            ``{"home": ..., "data": {...}, ...}`` in field order.
        """
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        """A short, stable hash of every value (the state folder and the monitor's thresholds excluded: they
        change no trained model).

        Returns:
            The first 12 hex digits of the SHA-256 of the values as sorted-key JSON.
        """
        values = self.to_dict()
        values.pop("home")
        values.pop("monitor")
        blob = json.dumps(values, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]
