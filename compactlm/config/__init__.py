"""Typed configuration: one section per concern, loaded from YAML and overridable with ``a.b=value``.

Every section is a pydantic dataclass that coerces its fields and then checks its own rules, so a
bad value fails before any compute, with a one-line ``ConfigError`` naming the field and the value
(``train.batch_size must be >= 1, got 0``).

Modules:

* ``validation`` — what every section shares: pydantic settings, comma-separated lists, ``check``.
* ``data`` (``data``, ``bias``), ``model``, ``training`` (``train``, ``finetune``, ``classifier``,
  ``distill``), ``sweep``, ``evaluation`` (``eval``, ``gate`` and the default gate of each task shape),
  ``registry``, ``serving`` (``serve``), ``monitor`` — the sections.
* ``pipeline`` — ``PipelineConfig``, all sections together, and its hash.
* ``loader`` — ``load_config`` (YAML + overrides), ``load_run_config`` (+ a source), ``apply_overrides``,
  ``config_from_dict``.
"""

from compactlm.config.data import BiasConfig, DataConfig
from compactlm.config.evaluation import EvalConfig, GateCheckConfig, GateConfig, default_gate_checks
from compactlm.config.loader import apply_overrides, config_from_dict, load_config, load_run_config
from compactlm.config.model import ModelConfig
from compactlm.config.monitor import MonitorConfig
from compactlm.config.pipeline import PipelineConfig
from compactlm.config.registry import RegistryConfig
from compactlm.config.serving import ServeConfig
from compactlm.config.sweep import SWEEP_METHODS, SweepConfig
from compactlm.config.training import (
    CLASSIFIER_LOSSES,
    FINETUNE_MODES,
    PRECISIONS,
    ClassifierConfig,
    DistillConfig,
    FinetuneConfig,
    TrainConfig,
)

__all__ = [
    "CLASSIFIER_LOSSES",
    "FINETUNE_MODES",
    "PRECISIONS",
    "SWEEP_METHODS",
    "BiasConfig",
    "ClassifierConfig",
    "DataConfig",
    "DistillConfig",
    "EvalConfig",
    "GateCheckConfig",
    "GateConfig",
    "FinetuneConfig",
    "ModelConfig",
    "MonitorConfig",
    "PipelineConfig",
    "RegistryConfig",
    "ServeConfig",
    "SweepConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "default_gate_checks",
    "load_config",
    "load_run_config",
]
