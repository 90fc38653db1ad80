"""The monitor flows: drift of served traffic (retrain when it drifts) and new data at the source (ingest it).

Both only measure and emit a Prefect event; the deployment triggers in prefect.yaml start ``retrain`` and
``ingest`` on those events, so the Prefect server's automations (UI: Automations) decide what runs, and
every triggered run carries the event in its ``trigger`` parameter.
"""

from typing import Any

from prefect import flow, get_run_logger

from compactlm.config import load_run_config
from compactlm.monitoring.monitor import recent_retrain_request, record_retrain_request, retrain_request_file
from compactlm.monitoring.watch import already_announced, announced_file, record_announced
from compactlm.state import configure_environment
from tasks.monitor import emit_data_arrived, emit_retrain_needed, list_source_changes, measure_drift, report_drift
from tasks.tracking import tracked_flow_run

MONITOR_EXPERIMENT = "compactlm-monitor"


@flow(name="monitor")
def monitor(config_path: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Compare recent served prompts with the serving version's training data; emit a retrain event on drift.

    Args:
        config_path: a YAML config (see configs/); its ``monitor`` section holds the window and thresholds,
            ``registry.model_name`` and ``monitor.model_alias`` the monitored version.
        overrides: ``section.field=value`` strings, e.g. ``["monitor.window_hours=6"]``.

    Returns:
        ``{"report": DriftReport.to_dict(), "retrain_needed", "event_id", "mlflow_run_id"}``.
    """
    logger = get_run_logger()
    config = load_run_config(config_path, overrides)
    paths = configure_environment(config.home)
    with tracked_flow_run(config, "monitor", experiment=MONITOR_EXPERIMENT) as run_id:
        report = measure_drift(config, run_id)
        report_drift(report, run_id)
        event_id = None
        requested = retrain_request_file(paths.home, report.model_name)
        recent = recent_retrain_request(requested, report.model_version, config.monitor.retrain_cooldown_hours)
        if not report.retrain_needed or not config.monitor.emit_events:
            logger.info(report.summary() + ("" if config.monitor.emit_events else " (monitor.emit_events is off)"))
        elif recent is not None:
            logger.info("%s; a retrain of this version was already requested at %s (event %s): no new event "
                        "within monitor.retrain_cooldown_hours=%g", report.summary(), recent["at"],
                        recent.get("event_id"), config.monitor.retrain_cooldown_hours)
        else:
            event_id = emit_retrain_needed(report, run_id, config_path, overrides)
            record_retrain_request(requested, report.model_version, event_id, report.retrain_reasons)
            logger.warning("%s: emitted compactlm.monitor.retrain-needed (event %s)", report.summary(), event_id)
    return {"report": report.to_dict(), "retrain_needed": report.retrain_needed, "event_id": event_id,
            "mlflow_run_id": run_id}


@flow(name="watch-data")
def watch_data(config_path: str | None = None, overrides: list[str] | None = None,
               source: str | None = None) -> dict[str, Any]:
    """Look for new or changed files at the watched source; emit ``compactlm.data.arrived`` for them.

    Each listing is announced once: while the triggered ingest runs, later checks of the same files
    stay quiet. Nothing is read or downloaded (fingerprints only).

    Args:
        config_path, overrides: the config the triggered ingest will use too.
        source: a folder, file or ``s3://bucket/prefix`` to watch (default ``monitor.watch_source``, else
            ``<home>/incoming``).
    """
    logger = get_run_logger()
    config = load_run_config(config_path, overrides)
    paths = configure_environment(config.home)
    source = source or config.monitor.watch_source or str(paths.home / "incoming")
    changes = list_source_changes(config, source)
    marker = announced_file(paths.home, config.data.dataset_name)
    event_id = None
    if changes.any and not already_announced(marker, changes):
        event_id = emit_data_arrived(changes, config_path, overrides)
        record_announced(marker, changes)
        logger.info("%s: emitted compactlm.data.arrived (event %s)", changes.summary(), event_id)
    elif changes.any:
        logger.info("%s (already announced: its ingest was asked for)", changes.summary())
    else:
        logger.info(changes.summary())
    return {"changes": changes.to_dict(), "event_id": event_id}
