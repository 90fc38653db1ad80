"""`compactlm registry`: inspect and review the MLflow model registry (list, promote, rollback, sweep)."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from compactlm.cli.common import ConfigOption, connect_tracking

app = typer.Typer(help="Inspect and review the MLflow model registry.", no_args_is_help=True)

ModelOption = Annotated[str | None, typer.Option("--model", help="Registered model name (default: from the config).")]


def _connect(config, model: str | None) -> tuple[str, str]:
    """Point MLflow at the configured tracking store; returns (model name, tracking URI)."""
    cfg, paths = connect_tracking(config)
    return model or cfg.registry.model_name, paths.tracking_uri()


@app.command("list")
def registry_list(model: ModelOption = None, config: ConfigOption = None,
                  as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List versions with aliases, gate verdicts, smoke tests, approvals and data versions (TSV when piped)."""
    from compactlm.registry.store import list_versions

    name, uri = _connect(config, model)
    versions = list_versions(name)
    if as_json:
        typer.echo(json.dumps([v.to_dict() for v in versions], indent=2))
        return
    if not versions:
        from mlflow import MlflowClient

        others = sorted(m.name for m in MlflowClient().search_registered_models() if m.name != name)
        hint = (f" Registered models there: {', '.join(others)} (name one with --model NAME, or give its run's "
                "--config)." if others else "")
        typer.echo(f"No versions of {name!r} in {uri}.{hint}")
        return
    columns = ("version", "aliases", "gate", "smoke", "approval", "reviewer", "rouge_l", "data", "created")
    rows = [(v.version, ", ".join(v.aliases), v.tags.get("gate_verdict", ""), v.tags.get("smoke_test", ""),
             v.tags.get("approval", ""), v.tags.get("approval.reviewer", ""), v.tags.get("metric.rouge_l", ""),
             v.tags.get("data_version", "")[:12], v.created) for v in versions]
    if not sys.stdout.isatty():
        # Piped or redirected: full values as TSV (one header line), never a table folded to 80 columns.
        for row in (columns, *rows):
            typer.echo("\t".join(" ".join(str(value).split()) for value in row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name} ({uri})")
    for column in columns:
        table.add_column(column, overflow="fold")  # wrapped, never cut to "versi…" in a narrow terminal
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=True).print(table)


@app.command("promote")
def registry_promote(
    version: Annotated[str | None, typer.Option(help="Version to review (default: the challenger).")] = None,
    approve: Annotated[bool, typer.Option("--approve/--reject", help="The decision.")] = True,
    reviewer: Annotated[str, typer.Option(help="Who decides.")] = os.environ.get("USER", "cli"),
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    model: ModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Record a review decision on a version; an approval moves ``champion`` if its gate and smoke test passed.
    \f
    Raises:
        CompactLMError: no such version (or no challenger), or an approved version that cannot become
            champion (its gate or smoke test did not pass; the refusal is recorded first).
    """
    from compactlm.errors import CompactLMError
    from compactlm.registry import review, store

    name, _ = _connect(config, model)
    version = review.version_to_review(name, version)
    previous = store.alias_version(name, store.CHAMPION)
    decision = review.apply_decision(name, version, approve, reviewer, comment, "cli")
    if decision.status == "approved":
        typer.echo(f"{name} v{version} approved by {reviewer}: champion moved from {previous or '(none)'} "
                   f"to {decision.champion}.")
    elif decision.status == "refused":
        raise CompactLMError(f"{name} v{version} cannot become champion: {decision.comment}")
    else:
        typer.echo(f"{name} v{version} rejected by {reviewer}: champion unchanged ({decision.champion or 'none'}).")


@app.command("rollback")
def registry_rollback(
    to: Annotated[str | None, typer.Option("--to", help="Version to restore (default: the previous champion).")] = None,
    reason: Annotated[str, typer.Option(help="Why (recorded on the demoted version).")] = "",
    model: ModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Move ``champion`` back to the previous champion.
    \f
    Raises:
        CompactLMError: no champion, no earlier champion, or a target that cannot be champion.
    """
    from compactlm.registry import review

    name, _ = _connect(config, model)
    demoted, restored = review.rollback(name, to, reason)
    typer.echo(f"{name}: champion moved back from v{demoted} to v{restored}.")


@app.command("sweep")
def registry_sweep(
    timeout: Annotated[int | None, typer.Option(help=(
        "Reject every review pending longer than this many seconds (default: each review's own timeout, "
        "registry.approval_timeout_s when it was opened)."))] = None,
    model: ModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Apply decisions set as MLflow tags and reject reviews pending longer than the timeout."""
    from compactlm.registry import review
    from compactlm.registry.store import CHAMPION, alias_version

    cfg, _ = connect_tracking(config)
    name = model or cfg.registry.model_name
    decisions = review.sweep(name, timeout)
    for d in decisions:
        typer.echo(f"v{d.version}: {d.status} ({d.source}, {d.reviewer})")
    typer.echo(f"{len(decisions)} decision(s) applied; champion is {alias_version(name, CHAMPION)}.")
