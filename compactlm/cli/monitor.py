"""`compactlm monitor`: drift of served traffic (the monitor flow) and new data at a watched source (watch-data)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from compactlm.cli.common import ConfigOption, SetOption, load_state, quiet_user_error_tracebacks

app = typer.Typer(help="Monitor served traffic and watched data sources (Prefect flows).", no_args_is_help=True)


@app.command("run")
def monitor_run(
    config: ConfigOption = None,
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
) -> None:
    """Compare recent served prompts with the champion's training data; emit a retrain event on drift.
    \f
    Runs the ``monitor`` flow (its ``monitor`` Prefect artifact, an MLflow run in the ``compactlm-monitor``
    experiment with plots). With a Prefect server (PREFECT_API_URL), a drift event starts the
    ``retrain/on-drift`` deployment through its trigger.

    Raises:
        MonitorError: no champion to monitor or the traffic store is off; DataError: its training data is
            unreadable; TrafficStoreError: the store is unreachable.
    """
    from compactlm.monitoring.monitor import serving_version, traffic_store_url
    from compactlm.registry.store import point_tracking

    cfg, paths = load_state(config, set_)  # user errors fail here, in a second, before any flow or MLflow run
    point_tracking(paths)
    serving_version(cfg.registry.model_name, cfg.monitor.model_alias)
    traffic_store_url(paths, cfg)
    from flows.monitor import monitor

    quiet_user_error_tracebacks()
    result = monitor(config_path=str(config) if config else None, overrides=set_ or [])
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    report = result["report"]
    table = Table(title=f"Monitor: {report['model_name']} version {report['model_version']}")
    for column in ("check", "statistic", "threshold applied (configured)", "drifted", "detail"):
        table.add_column(column, overflow="fold")
    for check in report["checks"]:
        stat = "n/a" if check["statistic"] is None else f"{check['statistic']:.4f}"
        bar = f"{check['applied_threshold']:.4g}" + (
            f" ({check['threshold']:g})" if check["applied_threshold"] != check["threshold"] else "")
        table.add_row(check["name"], stat, bar, "yes" if check["drifted"] else "no", check["detail"])
    console = Console()
    console.print(table)
    verdict = {"retrain-needed": f"retrain needed: {', '.join(report['retrain_reasons'])}",
               "no-drift": "no drift, no retrain needed",
               "no-verdict": "no verdict, too little traffic (monitor.min_requests)"}[result["verdict"]]
    event = f"; event {result['event']}" if result["event"] else ""
    console.print(f"{report['n_prompts']} served prompts vs {report['n_reference']} training prompts: "
                  f"{verdict}{event}. "
                  f"Report: MLflow run {result['mlflow_run_id']} (experiment compactlm-monitor).", soft_wrap=True)


@app.command("watch")
def monitor_watch(
    source: Annotated[str | None, typer.Option(
        help="Folder or s3://bucket/prefix to watch (default: monitor.watch_source, else <home>/incoming).")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Look for files the last ingest did not see; emit compactlm.data.arrived (which starts ingest/on-new-data).
    \f
    Raises:
        DataError: the source cannot be watched (the generator, a hub dataset) or is unreadable.
    """
    from compactlm.monitoring.watch import check_watchable

    cfg, _paths = load_state(config, set_)
    if source or cfg.monitor.watch_source:
        check_watchable(source or cfg.monitor.watch_source)  # a typo fails here, in a second
    from flows.monitor import watch_data

    quiet_user_error_tracebacks()
    result = watch_data(config_path=str(config) if config else None, overrides=set_ or [], source=source)
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    changes = result["changes"]
    if not changes["any"]:
        typer.echo(f"{changes['source']}: no new data since the last ingest")
        return
    typer.echo(f"{changes['source']}: {len(changes['new'])} new, {len(changes['changed'])} changed, "
               f"{len(changes['removed'])} removed file(s); event {result['event']}")
