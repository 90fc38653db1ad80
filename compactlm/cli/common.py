"""Shared pieces of the CLI: option types, runtime set-up, quiet user-error logging."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from compactlm.errors import CompactLMError

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="A YAML config (see configs/).")]
SetOption = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override: section.field=value.")]


class _StripUserErrorTracebacks(logging.Filter):
    """Prefect logs task failures with their traceback; for user errors the one-line message is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], CompactLMError):
            record.exc_info, record.exc_text = None, None
        return True


def prepare_runtime(home: str | None = None):
    """Environment defaults for the embedded mode (offline hub, Prefect home...); returns the state paths."""
    from compactlm.state import configure_environment

    return configure_environment(home)


def load_state(config: Path | None, overrides: list[str] | None = None):
    """``(config, state paths)``: the config loaded and validated, the runtime prepared, nothing started."""
    from compactlm.config import load_config

    cfg = load_config(config, overrides or [])
    return cfg, prepare_runtime(cfg.home)


def connect_tracking(config: Path | None, overrides: list[str] | None = None):
    """``(config, state paths)`` with MLflow pointed at the configured tracking store and experiment."""
    from compactlm.registry.store import setup_tracking

    cfg, paths = load_state(config, overrides)
    setup_tracking(paths, cfg.registry.experiment)
    return cfg, paths


def quiet_user_error_tracebacks() -> None:
    """Strip tracebacks of user errors from Prefect's console logs (the CLI prints the one-line message)."""
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(_StripUserErrorTracebacks())


def config_home(config: Path | None, overrides: list[str] | None, source: str | None = None) -> str:
    """Validate the config (and the source file) before anything starts; return its state folder."""
    from compactlm.config import load_run_config

    return load_run_config(config, overrides, source).home
