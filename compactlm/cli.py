"""The ``compactlm`` command: data, pipeline and registry operations over the same library functions.

User errors (a missing file, a bad column, an invalid config value) print one line and exit non-zero
without a traceback. Pipeline commands run the Prefect flows (ephemeral API unless PREFECT_API_URL is
set); the flows are imported lazily so ``compactlm --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from compactlm.errors import CompactLMError

app = typer.Typer(help="CompactLM: train, govern and serve compact language models.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Generate, ingest and version datasets.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Run the retrain pipeline (Prefect flow).", no_args_is_help=True)
registry_app = typer.Typer(help="Inspect and review the MLflow model registry.", no_args_is_help=True)
config_app = typer.Typer(help="Show and check configuration.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(registry_app, name="registry")
app.add_typer(config_app, name="config")

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="A YAML config (see configs/).")]
SetOption = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override: section.field=value.")]


class _StripUserErrorTracebacks(logging.Filter):
    """Prefect logs task failures with their traceback; for user errors the one-line message is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], CompactLMError):
            record.exc_info, record.exc_text = None, None
        return True


def _prepare_runtime(home: str | None = None):
    from compactlm.state import configure_environment

    paths = configure_environment(home)
    return paths


def _quiet_user_error_tracebacks() -> None:
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(_StripUserErrorTracebacks())


def _config_home(config: Path | None, overrides: list[str] | None, source: str | None = None) -> str:
    """Validate the config (and the source file) before anything starts; return its state folder."""
    from compactlm.config import load_config

    resolved = load_config(config, (overrides or []) + ([f"data.source={source}"] if source else []))
    resolved.data.check_source()
    return resolved.home


@config_app.command("show")
def config_show(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the resolved configuration (file + overrides) as YAML."""
    import yaml

    from compactlm.config import load_config

    resolved = load_config(config, set_ or [])
    typer.echo(yaml.safe_dump(resolved.to_dict(), sort_keys=False))
    typer.echo(f"# config hash: {resolved.config_hash()}")


@data_app.command("generate")
def data_generate(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write: .csv, .jsonl or .parquet.")],
    rows: Annotated[int, typer.Option(help="Number of rows.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    bias: Annotated[float, typer.Option(help="Injected outcome bias against age band 65+ (0 = none).")] = 0.0,
) -> None:
    """Write the bundled synthetic customer-support dataset to a file."""
    from compactlm.data.generator import generate_support_dataset
    from compactlm.data.sources import write_table

    frame = generate_support_dataset(n_rows=rows, seed=seed, bias=bias)
    write_table(frame, output)
    typer.echo(f"Wrote {len(frame)} rows ({frame['intent'].nunique()} intents, "
               f"{frame['category'].nunique()} categories) to {output}")


@data_app.command("ingest")
def data_ingest(
    source: Annotated[str | None, typer.Option(help="CSV/JSONL/Parquet file (default: the generator).")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Ingest a source: clean, split, version with DVC, validate (GE) and audit bias (AIF360)."""
    _prepare_runtime(_config_home(config, set_, source))
    from flows.ingest import ingest

    _quiet_user_error_tracebacks()
    result = ingest(config_path=str(config) if config else None, overrides=set_ or [], source=source)
    typer.echo(json.dumps(result["dataset"], indent=2))
    typer.echo(result["validation"])


@pipeline_app.command("run")
def pipeline_run(
    config: ConfigOption = None,
    set_: SetOption = None,
    source: Annotated[str | None, typer.Option(help="Train on this CSV/JSONL/Parquet file.")] = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Approve the candidate without review.")] = False,
) -> None:
    """Run the retrain flow end to end and print a summary."""
    _prepare_runtime(_config_home(config, set_, source))
    if auto_approve:
        approval = "auto"
    elif os.environ.get("PREFECT_API_URL"):
        approval = "wait"
        typer.echo("The flow will pause for review: approve it from the Prefect UI (flow run -> Resume).")
    else:
        approval = "defer"
        typer.echo("No Prefect server (PREFECT_API_URL unset) and no --auto-approve: a passing candidate stays "
                   "'challenger'; review it with `compactlm registry promote`.")
    from flows.retrain import retrain

    _quiet_user_error_tracebacks()
    summary = retrain(config_path=str(config) if config else None, overrides=set_ or [], source=source,
                      approval=approval)
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    table = Table(title="CompactLM retrain", show_header=False)
    table.add_row("registered model", summary["registered_model"])
    table.add_row("version", str(summary["version"] or "— (not registered)"))
    table.add_row("aliases", ", ".join(summary["aliases"]) or "—")
    table.add_row("champion", str(summary["champion"] or "—"))
    for key in ("perplexity", "rouge_l", "bleu"):
        table.add_row(key, f"{summary['metrics'].get(key, float('nan')):.4f}")
    table.add_row("gate", summary["gate"]["verdict"].upper())
    table.add_row("review", str(summary["review"].get("status")))
    table.add_row("data version", summary["data_version"])
    console.print(table)
    for note in summary["gate"]["notes"]:
        console.print(f"  {note}")
    uri = summary.get("tracking_uri", "")
    if uri.startswith("sqlite"):
        console.print(f"MLflow UI: mlflow ui --backend-store-uri {uri} --port 5000")
    else:
        console.print(f"MLflow UI: {uri}")
    console.print(f"Summary JSON: {summary['summary_path']}")


@registry_app.command("list")
def registry_list(
    model: Annotated[str | None, typer.Option(help="Registered model name (default: from the config).")] = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List versions with aliases, gate verdicts, approvals and data versions."""
    from compactlm.config import load_config
    from compactlm.registry.registry import list_versions, setup_tracking

    cfg = load_config(config)
    paths = _prepare_runtime(cfg.home)
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


@registry_app.command("promote")
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
    paths = _prepare_runtime(cfg.home)
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


def main() -> None:
    """Entry point: run the app, turning user errors into one line on stderr and a non-zero exit."""
    try:
        app(standalone_mode=False)
    except CompactLMError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code and message
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
