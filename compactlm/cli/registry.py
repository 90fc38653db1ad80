"""`compactlm registry`: inspect and review the MLflow model registry."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from compactlm.cli.common import ConfigOption, prepare_runtime
from compactlm.errors import CompactLMError

app = typer.Typer(help="Inspect and review the MLflow model registry.", no_args_is_help=True)


@app.command("list")
def registry_list(
    model: Annotated[str | None, typer.Option(help="Registered model name (default: from the config).")] = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List versions with aliases, gate verdicts, approvals and data versions."""
    from compactlm.config import load_config
    from compactlm.registry.registry import list_versions, setup_tracking

    cfg = load_config(config)
    paths = prepare_runtime(cfg.home)
    setup_tracking(paths, cfg.registry.experiment)
    name = model or cfg.registry.model_name
    versions = list_versions(name)
    if as_json:
        typer.echo(json.dumps([v.to_dict() for v in versions], indent=2))
        return
    if not versions:
        typer.echo(f"No versions of {name!r} in {paths.tracking_uri()}.")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name} ({paths.tracking_uri()})")
    for column in ("version", "aliases", "gate", "approval", "rouge_l", "data version", "created"):
        table.add_column(column)
    for v in versions:
        table.add_row(v.version, ", ".join(v.aliases), v.tags.get("gate_verdict", ""),
                      v.tags.get("approval", "pending"),
                      v.tags.get("metric.rouge_l", ""), v.tags.get("data_version", "")[:12], v.created)
    Console().print(table)


@app.command("promote")
def registry_promote(
    version: Annotated[str | None, typer.Option(help="Version to review (default: the challenger).")] = None,
    approve: Annotated[bool, typer.Option("--approve/--reject", help="The decision.")] = True,
    reviewer: Annotated[str, typer.Option(help="Who decides.")] = os.environ.get("USER", "cli"),
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    config: ConfigOption = None,
) -> None:
    """Record a review decision on a version; an approval moves ``champion`` to it."""
    from compactlm.config import load_config
    from compactlm.registry import registry

    cfg = load_config(config)
    paths = prepare_runtime(cfg.home)
    registry.setup_tracking(paths, cfg.registry.experiment)
    name = cfg.registry.model_name
    version = version or registry.alias_version(name, registry.CHALLENGER)
    if version is None or version not in {v.version for v in registry.list_versions(name)}:
        raise CompactLMError(f"registered model {name!r} has no version {version or '(no challenger)'}")
    registry.record_decision(name, version, approve, reviewer, comment)
    if approve:
        previous = registry.promote(name, version)
        typer.echo(f"{name} v{version} approved by {reviewer}: "
                   f"champion moved from {previous or '(none)'} to {version}.")
    else:
        typer.echo(f"{name} v{version} rejected by {reviewer}: champion unchanged "
                   f"({registry.alias_version(name, registry.CHAMPION) or 'none'}).")
