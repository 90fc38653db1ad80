"""`compactlm pipeline`: run the retrain flow."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from compactlm.cli.common import ConfigOption, SetOption, config_home, prepare_runtime, quiet_user_error_tracebacks

app = typer.Typer(help="Run the retrain pipeline (Prefect flow).", no_args_is_help=True)


@app.command("run")
def pipeline_run(
    config: ConfigOption = None,
    set_: SetOption = None,
    source: Annotated[str | None, typer.Option(
        help="Train on this data: a CSV/JSONL/JSON/Parquet/.txt file, a folder of them (one .txt file per "
             "document for pretraining), s3://... or hf:...")] = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Approve the candidate without review.")] = False,
    approval: Annotated[str | None, typer.Option(
        help="auto | wait (pause for the Prefect UI form) | defer (review later) | handoff (promote/review "
             "deployment). Default: wait with a Prefect server, else defer.")] = None,
) -> None:
    """Run the retrain flow end to end and print a summary.
    \f
    Raises:
        ConfigError: ``--approval`` other than auto, wait, defer or handoff (and any user error of the flow).
    """
    from compactlm.errors import ConfigError

    prepare_runtime(config_home(config, set_, source))
    if auto_approve:
        approval = "auto"
    approval = approval or ("wait" if os.environ.get("PREFECT_API_URL") else "defer")
    if approval not in ("auto", "wait", "defer", "handoff"):
        raise ConfigError(f"--approval must be auto, wait, defer or handoff, got {approval!r}")
    if approval == "wait":
        typer.echo("The flow will pause for review: approve it from the Prefect UI (flow run -> Resume).")
    elif approval == "defer":
        typer.echo("Review deferred: a passing candidate stays 'challenger' (approval=pending); approve it with "
                   "`compactlm registry promote`, the tag approval=approved in the MLflow UI, or the promote flow.")
    from flows.retrain import retrain

    quiet_user_error_tracebacks()
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
    gated = dict.fromkeys(c["metric"] for c in summary["gate"]["checks"])  # the task shape's own metrics
    baseline = (summary.get("baseline") or {}).get("metrics", {})
    # Out-of-scope rates are not gated by default, but they are what classifier.oos_label was set for.
    shown = [*gated, *(k for k in ("oos_recall", "oos_precision") if k in summary["metrics"] and k not in gated)]
    side_by_side = summary["gate"].get("side_by_side") or {}
    for key in shown:
        if key in summary["metrics"]:
            base = (side_by_side.get(key) or {}).get("base")
            versus = [*([f"base zero-shot {base:.4f}"] if base is not None else []),
                      *([f"baseline {baseline[key]:.4f}"] if key in baseline else [])]
            table.add_row(key, f"{summary['metrics'][key]:.4f}" + (f"  ({', '.join(versus)})" if versus else ""))
    if summary.get("baseline"):
        table.add_row("baseline model", f"{summary['baseline']['description']}: {summary['baseline']['model_uri']}")
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


@app.command("sweep")
def pipeline_sweep(
    config: ConfigOption = None,
    set_: SetOption = None,
    method: Annotated[str | None, typer.Option(help="grid | random (default: the config's sweep.method).")] = None,
    n_trials: Annotated[int | None, typer.Option(help="Trials to run (random search).")] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Trials running at once.")] = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="Retrain with the best trial's settings.")] = False,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Approve the retrained model.")] = False,
) -> None:
    """Run the hyperparameter sweep flow (each trial a Prefect task and a nested MLflow run)."""
    import json

    prepare_runtime(config_home(config, set_))
    from flows.sweep import sweep

    quiet_user_error_tracebacks()
    result = sweep(config_path=str(config) if config else None, overrides=set_ or [], method=method,
                   n_trials=n_trials, max_concurrency=max_concurrency, retrain_best=retrain,
                   approval="auto" if auto_approve else ("wait" if os.environ.get("PREFECT_API_URL") else "defer"))
    typer.echo(json.dumps({"best": result["best"], "best_overrides": result["best_overrides"],
                           "mlflow_run_id": result["mlflow_run_id"]}, indent=2, default=str))
    if result.get("retrain"):
        _print_summary(result["retrain"])
