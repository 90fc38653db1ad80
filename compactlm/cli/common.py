"""Shared pieces of the CLI: option types, runtime set-up, quiet user-error logging, flow logs in a file."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, TextIO

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
    """Validate the config and the source before anything starts; return its state folder.

    A local source is checked down to its files' headers (``check_source_columns``): a bad path, a file
    of an unsupported type or a missing column fails in about a second, before Prefect or MLflow start.
    """
    from compactlm.config import load_run_config
    from compactlm.data.raw_files import check_source_columns

    cfg = load_run_config(config, overrides, source)
    check_source_columns(cfg.data)
    return cfg.home


# The terminal's streams while library output goes to a log file (see ``send_library_output_to``).
_TERMINAL: dict[str, TextIO] = {}


def terminal(err: bool = False) -> TextIO:
    """Where the CLI's own output goes: the terminal, also while library output is sent to a log file."""
    return _TERMINAL.get("err" if err else "out") or (sys.stderr if err else sys.stdout)


def flow_log_path(home: Path, command: str) -> Path:
    """``<home>/logs/<command>-<local time>.log``: where a command's flow logs go."""
    return home / "logs" / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def send_library_output_to(path: Path) -> Path:
    """From now on, everything the process writes to stdout and stderr goes to ``path``, except the CLI's
    own output (``terminal``): Prefect's and MLflow's logs, the temporary Prefect server's, warnings.

    The redirection is at the file-descriptor level, so output of handlers set up before, of streams
    looked up at write time (MLflow's) and of child processes is caught alike, and it lasts until the
    process exits (the temporary server logs its stop at exit).

    Args:
        path: the log file (appended to; its folder is created).

    Returns:
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    for key, fd, stream in (("out", 1, sys.stdout), ("err", 2, sys.stderr)):
        _TERMINAL[key] = open(os.dup(fd), "w", encoding=stream.encoding or "utf-8", errors="replace",  # noqa: SIM115
                              buffering=1)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    logging.captureWarnings(True)
    return path
