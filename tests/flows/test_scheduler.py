"""A real Prefect server (the one ``prefect server start`` runs, with its scheduler service) creates runs for a
deployment's schedule with the locked dependency set.

The ephemeral API that the other flow tests use runs no scheduler, so it cannot see a server whose
scheduler fails: with SQLAlchemy 2.1.9 the Prefect 3.8.8 scheduler raised ``InvalidRequestError: Can't
evaluate bulk DML statement`` every loop and no scheduled run was ever created, while the UI still showed
the schedules (issue 14, point 1).
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_a_scheduled_deployment_gets_runs_from_the_server_scheduler(prefect_server, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.schedules import IntervalSchedule

    api, log_path = prefect_server
    monkeypatch.setenv("PREFECT_API_URL", api)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("scheduled-check")
        deployment_id = client.create_deployment(
            flow_id, "every-minute", schedules=[DeploymentScheduleCreate(
                schedule=IntervalSchedule(interval=timedelta(minutes=1)), active=True)])
        deadline = time.monotonic() + 90
        runs = []
        while time.monotonic() < deadline and not runs:
            time.sleep(2)
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    log = log_path.read_text(errors="replace")
    assert "Can't evaluate bulk DML statement" not in log, log[-3000:]
    assert runs, f"the server's scheduler created no run for an interval schedule in 90 s; server log:\n{log[-3000:]}"
    assert all(run.state is not None and run.state.is_scheduled() for run in runs)
    assert {run.deployment_id for run in runs} == {deployment_id}


def test_the_lock_pins_a_sqlalchemy_the_prefect_scheduler_runs_with():
    """The version the test above ran with is the one every install gets (constraints.txt)."""
    import sqlalchemy

    lock = (Path(__file__).resolve().parents[2] / "constraints.txt").read_text().splitlines()
    pinned = next(line.split("==")[1] for line in lock if line.lower().startswith("sqlalchemy=="))
    assert sqlalchemy.__version__ == pinned
    assert not pinned.startswith("2.1."), "SQLAlchemy 2.1.x breaks the Prefect 3.8 scheduler (issue 14)"
