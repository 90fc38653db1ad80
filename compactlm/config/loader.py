"""Loading a ``PipelineConfig`` from YAML, ``section.field=value`` overrides, or a saved dict.

pydantic (``TypeAdapter``) coerces and type-checks every value; its first error becomes one
``ConfigError`` line that names the dotted field and the value (``train.epochs must be a number, got
'abc'``), in the words the sections' own checks use.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from compactlm.config.evaluation import default_gate_checks
from compactlm.config.pipeline import PipelineConfig
from compactlm.errors import ConfigError

_PIPELINE = TypeAdapter(PipelineConfig)
_UNION_TAG = re.compile(r"^(float|int|str|bool|none|[a-z]+\[.*\])$")
_SECTIONS = {name for name, hint in typing.get_type_hints(PipelineConfig).items() if dataclasses.is_dataclass(hint)}

# What a value must be, by pydantic error type (https://docs.pydantic.dev/latest/errors/validation_errors/).
_EXPECTED = {
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "int_parsing": "a number",
    "int_type": "a number",
    "float_parsing": "a number",
    "float_type": "a number",
    "int_from_float": "an integer",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "dataclass_type": "a mapping",
    "dataclass_exact_type": "a mapping",
}


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.field=value`` overrides (values parsed as YAML) to a nested dict, in place.

    Args:
        values: the nested config values (a YAML file's mapping, or empty).
        overrides: ``section.field=value`` strings; ``gate.checks.<metric>.<bound>=v`` reaches deeper.

    Returns:
        ``values``, with every override applied in order.

    Raises:
        ConfigError: an override without ``=``, or one that goes through a value that is not a section.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        target = values
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override {item!r}: {key!r} is not a section")
        target[keys[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return values


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load a pipeline config from YAML (or the defaults) and apply overrides.

    The gate's defaults depend on the task shape (``data.task``): the checks the file and overrides
    name are merged with ``default_gate_checks(data.task)`` metric by metric and bound by bound.

    Args:
        path: a YAML file with any subset of the sections; None for the embedded defaults.
        overrides: ``section.field=value`` strings, applied after the file.

    Returns:
        The validated config.

    Raises:
        ConfigError: a missing or unreadable file, an unknown field, or an invalid value.
    """
    values = _read_yaml(Path(path)) if path is not None else {}
    values = apply_overrides(values, overrides or [])
    return _validate(_with_gate_defaults(values))


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None,
                    source: str | None = None) -> PipelineConfig:
    """The config of one pipeline run: ``load_config`` with ``source`` as a ``data.source`` override, the
    source checked before anything starts (the flows and the CLI both call this).

    Args:
        path, overrides: as ``load_config``.
        source: a file, folder, ``s3://`` prefix or ``hf:`` dataset instead of ``data.source``; None keeps it.

    Raises:
        ConfigError: as ``load_config``, or a local source that does not exist.
    """
    config = load_config(path, list(overrides or []) + ([f"data.source={source}"] if source else []))
    config.data.check_source()
    return config


def config_from_dict(values: dict[str, Any]) -> PipelineConfig:
    """Rebuild a config from ``PipelineConfig.to_dict()`` output (flow parameters, saved runs).

    Args:
        values: nested section values; sections left out get their defaults (the gate: the instruction
            shape's, as ``GateConfig()``), and ``gate.checks`` replaces the defaults rather than merging.

    Returns:
        The validated config.

    Raises:
        ConfigError: an unknown field or an invalid value.
    """
    return _validate(values)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return values


def _with_gate_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with ``gate.checks`` laid over the task shape's default checks, bound by bound."""
    data = values.get("data")
    task = data.get("task", "instruction") if isinstance(data, dict) else "instruction"
    gate = values.get("gate") or {}
    checks = gate.get("checks", {}) if isinstance(gate, dict) else None
    if not isinstance(checks, dict):
        return values  # not a mapping: validation names the field and the value
    merged: dict[str, Any] = {name: dataclasses.asdict(bounds) for name, bounds in default_gate_checks(task).items()}
    for metric, bounds in checks.items():
        bounds = bounds or {}  # `gate.checks.<metric>:` with nothing under it keeps the default bounds
        merged[str(metric)] = {**merged.get(str(metric), {}), **bounds} if isinstance(bounds, dict) else bounds
    return {**values, "gate": {**gate, "checks": merged}}


def _reject_booleans_for_numbers(values: Any, holder: Any, prefix: str) -> None:
    """pydantic's lax mode reads ``true`` as 1 for a number field; a config value that does so is a mistake.

    Raises:
        ConfigError: ``<field> must be a number, got True`` for the first boolean given to a number field.
    """
    if not isinstance(values, dict):
        return
    if typing.get_origin(holder) is dict:  # keyed entries such as gate.checks.<metric>
        for key, value in values.items():
            _reject_booleans_for_numbers(value, typing.get_args(holder)[1], f"{prefix}.{key}")
        return
    if not dataclasses.is_dataclass(holder):
        return
    hints = typing.get_type_hints(holder)
    for key, value in values.items():
        hint, name = hints.get(key), f"{prefix}.{key}" if prefix else key
        kinds = set(typing.get_args(hint)) | {hint}
        if isinstance(value, bool) and kinds & {int, float} and bool not in kinds:
            raise ConfigError(f"{name} must be a number, got {value!r}")
        _reject_booleans_for_numbers(value, hint, name)


# Sections that were renamed: a config that still uses the old name gets told the new one.
_RENAMED = {"lora": "finetune"}


def _validate(values: Any) -> PipelineConfig:
    for old, new in _RENAMED.items():
        if isinstance(values, dict) and old in values:
            raise ConfigError(f"config section {old!r} is now called {new!r} (same fields): rename {old}: to {new}: "
                              f"and {old}.<field>= overrides to {new}.<field>=")
    if isinstance(values, dict):  # a section with nothing under it (`data:` in YAML) is all defaults
        values = {key: (value or {}) if key in _SECTIONS else value for key, value in values.items()}
        _reject_booleans_for_numbers(values, PipelineConfig, "")
    try:
        return _PIPELINE.validate_python(values)
    except ValidationError as exc:
        raise _config_error(exc.errors()[0]) from None


def _config_error(error: ErrorDetails) -> ConfigError:
    """One line naming the dotted field and the value, for pydantic's first error."""
    # List positions go unnamed; a union field's branch tags (``float``, ``literal['auto']``) are not fields.
    loc = tuple(str(part) for part in error["loc"] if not isinstance(part, int) and not _UNION_TAG.match(str(part)))
    name = ".".join(loc) or "config"
    if error["type"] == "unexpected_keyword_argument":
        return ConfigError(f"unknown config field {name!r} (known: {', '.join(_known_fields(loc))})")
    expected = _EXPECTED.get(error["type"])
    if expected is None:
        return ConfigError(f"{name} is invalid ({error['msg']}), got {error['input']!r}")
    return ConfigError(f"{name} must be {expected}, got {error['input']!r}")


def _known_fields(loc: tuple[str, ...]) -> list[str]:
    """The fields of the section (or gate check) that should hold the unknown field at ``loc``."""
    holder: Any = PipelineConfig
    for part in loc[:-1]:
        if typing.get_origin(holder) is dict:  # a keyed entry, such as gate.checks.<metric>
            holder = typing.get_args(holder)[1]
        else:
            holder = typing.get_type_hints(holder)[part]
    return sorted(field.name for field in dataclasses.fields(holder))
