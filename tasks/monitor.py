"""Monitoring tasks: measure drift, report it (Prefect artifact + MLflow run with plots), emit the events.

The events are what the deployment triggers in prefect.yaml react to:

* ``compactlm.monitor.retrain-needed`` on resource ``compactlm.model.<registered model>``: the monitor found
  drift (or enough corrected answers); the ``retrain/on-drift`` deployment starts.
* ``compactlm.data.arrived`` on resource ``compactlm.source.<source>``: new or changed files at a watched
  source; the ``ingest/on-new-data`` deployment starts.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.events import emit_event

from compactlm.config import PipelineConfig
from compactlm.monitoring.drift import DriftReport
from compactlm.monitoring.monitor import monitor_traffic
from compactlm.monitoring.watch import SourceChanges, source_changes
from compactlm.registry.tracking import reopen_run
from compactlm.state import state_paths
from tasks.common import IO_RETRIES, publish_report

RETRAIN_EVENT = "compactlm.monitor.retrain-needed"
DATA_EVENT = "compactlm.data.arrived"


@task(name="measure-drift", **IO_RETRIES)
def measure_drift(config: PipelineConfig, run_id: str) -> DriftReport:
    """The served window against the serving version's training data (``compactlm.monitoring.monitor``)."""
    return monitor_traffic(state_paths(config.home), config, run_id=run_id)


@task(name="report-drift", **IO_RETRIES)
def report_drift(report: DriftReport, run_id: str) -> None:
    """The ``monitor`` markdown artifact, and on the MLflow run: figures as metrics, plots, verdict tags."""
    import matplotlib.pyplot as plt
    import mlflow

    from compactlm.monitoring.plots import drift_figures

    publish_report(run_id, "monitor", report.to_markdown(), report.to_dict(), report.summary())
    with reopen_run(run_id):
        mlflow.log_metrics(report.figures())
        mlflow.set_tags({"monitor.model_name": report.model_name, "monitor.model_version": str(report.model_version),
                         "monitor.data_version": str(report.data_version),
                         "monitor.retrain_needed": str(report.retrain_needed),
                         "monitor.reasons": ",".join(report.retrain_reasons) or "none",
                         "monitor.drifted": ",".join(report.drifted) or "none"})
        for name, figure in drift_figures(report).items():
            mlflow.log_figure(figure, f"monitor/{name}")
            plt.close(figure)


def _flow_run_resource() -> list[dict[str, str]]:
    from prefect.runtime import flow_run

    if flow_run.id is None:
        return []
    return [{"prefect.resource.id": f"prefect.flow-run.{flow_run.id}", "prefect.resource.role": "flow-run",
             "prefect.resource.name": str(flow_run.name)}]


@task(name="emit-retrain-needed")
def emit_retrain_needed(report: DriftReport, run_id: str, config_path: str | None,
                        overrides: list[str] | None) -> str | None:
    """Emit ``compactlm.monitor.retrain-needed`` with the reasons and every drift figure; returns the event id.

    The payload carries the monitor's ``config_path`` and ``overrides`` so the triggered retrain trains
    what was monitored (prefect.yaml maps them onto the ``retrain`` parameters).
    """
    payload: dict[str, Any] = {
        "reasons": report.retrain_reasons, "drifted": report.drifted, "figures": report.figures(),
        "model_name": report.model_name, "model_version": report.model_version,
        "data_version": report.data_version, "window_start": report.window_start.isoformat(),
        "window_end": report.window_end.isoformat(), "monitor_mlflow_run_id": run_id,
        "config_path": config_path, "overrides": list(overrides or [])}
    event = emit_event(RETRAIN_EVENT, resource={"prefect.resource.id": f"compactlm.model.{report.model_name}",
                                                "prefect.resource.name": report.model_name},
                       related=_flow_run_resource(), payload=payload)
    return str(event.id) if event is not None else None


@task(name="list-source-changes", **IO_RETRIES)
def list_source_changes(config: PipelineConfig, source: str | None) -> SourceChanges:
    """New, changed and removed files at the watched source since the dataset's last ingest."""
    return source_changes(config.data, state_paths(config.home).data_repo, source)


@task(name="emit-data-arrived")
def emit_data_arrived(changes: SourceChanges, config_path: str | None, overrides: list[str] | None) -> str | None:
    """Emit ``compactlm.data.arrived`` for ``changes`` (the ingest trigger reads ``payload.source``)."""
    payload = {**changes.to_dict(), "config_path": config_path, "overrides": list(overrides or [])}
    event = emit_event(DATA_EVENT, resource={"prefect.resource.id": f"compactlm.source.{changes.source}",
                                             "prefect.resource.name": changes.source},
                       related=_flow_run_resource(), payload=payload)
    return str(event.id) if event is not None else None
