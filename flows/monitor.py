"""The monitor flows: drift of served traffic (retrain when it drifts) and new data at the source (ingest it).

Both only measure and emit a Prefect event; the deployment triggers in prefect.yaml start ``retrain`` and
``ingest`` on those events, so the Prefect server's automations (UI: Automations) decide what runs, and
every triggered run carries the event in its ``trigger`` parameter.
"""

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.settings import PREFECT_API_URL

from compactlm.config import load_run_config
from compactlm.monitoring.monitor import recent_retrain_request, record_retrain_request, retrain_request_file
from compactlm.monitoring.watch import already_announced, announced_file, record_announced
from compactlm.state import configure_environment
from tasks.monitor import emit_data_arrived, emit_retrain_needed, list_source_changes, measure_drift, report_drift
from tasks.tracking import tracked_flow_run

MONITOR_EXPERIMENT = "compactlm-monitor"
NO_SERVER = ("not sent: no Prefect server (PREFECT_API_URL is unset), so no automation could react; run it against "
             "the server holding the deployments to trigger")


def _events_reach_a_server() -> bool:
    """True when this run talks to a configured Prefect server (where the deployment triggers live). Without
    one the flow runs on a temporary server that exits with the run: an event sent there is lost, so it is
    not sent and not remembered (the cool-down and the watcher's announcements only count delivered events)."""
    return bool(PREFECT_API_URL.value())


def _retrain_overrides(overrides: list[str] | None) -> list[str]:
    """The monitor's overrides the triggered retrain gets: its ``monitor.*`` settings are the monitor's own."""
    return [o for o in overrides or [] if not o.strip().startswith("monitor.")]


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
        event_id, event_note = None, None
        requested = retrain_request_file(paths.home, report.model_name)
        recent = recent_retrain_request(requested, report.model_version, config.monitor.retrain_cooldown_hours)
        if not report.retrain_needed:
            logger.info(report.summary())
        elif not config.monitor.emit_events:
            event_note = "not sent: monitor.emit_events is off"
        elif recent is not None:
            event_note = (f"not sent: a retrain of this version was requested at {recent['at']} (event "
                          f"{recent.get('event_id')}), within monitor.retrain_cooldown_hours="
                          f"{config.monitor.retrain_cooldown_hours:g}")
        elif not _events_reach_a_server():
            event_note = NO_SERVER
        else:
            event_id = emit_retrain_needed(report, run_id, config_path, _retrain_overrides(overrides))
            record_retrain_request(requested, report.model_version, event_id, report.retrain_reasons)
            event_note = f"sent: compactlm.monitor.retrain-needed, event {event_id}"
        if event_note:
            logger.warning("%s; event %s", report.summary(), event_note)
    return {"report": report.to_dict(), "verdict": report.verdict, "retrain_needed": report.retrain_needed,
            "event_id": event_id, "event": event_note, "mlflow_run_id": run_id}


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
    if not (source or config.monitor.watch_source):  # the default drop folder: created, so users find it
        source = str(paths.home / "incoming")
        Path(source).mkdir(parents=True, exist_ok=True)
    source = source or config.monitor.watch_source
    changes = list_source_changes(config, source)
    marker = announced_file(paths.home, config.data.dataset_name)
    event_id, event_note = None, None
    if not changes.any:
        logger.info(changes.summary())
    elif already_announced(marker, changes):
        event_note = "not sent: this listing was announced already (its ingest was asked for)"
    elif not _events_reach_a_server():
        event_note = NO_SERVER
    else:
        event_id = emit_data_arrived(changes, config_path, overrides)
        record_announced(marker, changes)
        event_note = f"sent: compactlm.data.arrived, event {event_id}"
    if event_note:
        logger.info("%s; event %s", changes.summary(), event_note)
    return {"changes": changes.to_dict(), "event_id": event_id, "event": event_note}
