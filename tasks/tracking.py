"""Tracking tasks: the flow's MLflow run (opened, linked, closed FINISHED/FAILED) and the data it read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact
from prefect.runtime import flow_run

from compactlm.data.versioning import DatasetVersion
from compactlm.registry import tracking
from tasks.common import IO_RETRIES


@task(name="start-tracking", **IO_RETRIES)
def start_tracking(config: Any, flow_run_id: str, flow_name: str, experiment: str | None = None,
                   trigger: dict[str, Any] | None = None) -> str:
    """Create the flow's MLflow run (params = the whole config, tags = what triggered it) and return its id."""
    run = tracking.start_flow_run(config, flow_run_id, flow_name, experiment, trigger)
    if run.ui_link:
        create_link_artifact(key="mlflow-run", link=run.ui_link, description="This flow run's MLflow run")
    return run.run_id


@task(name="end-tracking", **IO_RETRIES)
def end_tracking(run_id: str, status: str) -> None:
    """Close the flow's MLflow run as FINISHED or FAILED."""
    tracking.end_run(run_id, status)


@task(name="log-dataset", **IO_RETRIES)
def log_dataset(version: DatasetVersion, run_id: str) -> None:
    """Record the DVC version on the run: a tag, and each split as an MLflow dataset input."""
    tracking.log_dataset(version, run_id)


@contextmanager
def tracked_flow_run(config: Any, flow_name: str, experiment: str | None = None,
                     trigger: dict[str, Any] | None = None) -> Iterator[str]:
    """Open this flow run's MLflow run; close it FINISHED when the block ends, FAILED when it raises.

    Args:
        config: the run's ``PipelineConfig``; flow_name: the Prefect flow's name.
        experiment: the MLflow experiment (None: ``registry.experiment``).
        trigger: the event that started the flow run (its ``trigger`` parameter), recorded on the MLflow run.

    Yields:
        The MLflow run id.
    """
    run_id = start_tracking(config, str(flow_run.id), flow_name, experiment, trigger)
    try:
        yield run_id
    except BaseException:
        end_tracking(run_id, "FAILED")
        raise
    end_tracking(run_id, "FINISHED")
