"""The production loop on a real Prefect server: the monitor's drift event starts ``retrain/on-drift`` through the
deployment trigger in prefect.yaml, a non-drifted window starts nothing, and new files at a watched folder start
``ingest/on-new-data``.

The deployments are created by ``prefect deploy`` from the repository's prefect.yaml, as a user does; the server's
trigger and action services create the flow runs. No worker runs here: a created run with the event in its
``trigger`` parameter is what the automation does (running it is the worker's job, tested elsewhere).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import OFF_DOMAIN_PROMPTS, register_served_champion, served_records, write_csv

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
NAME = "trigger-test-model"
OVERRIDES = [f"registry.model_name={NAME}", "monitor.min_requests=20"]


def _run(args: list[str], env: dict, timeout: int = 240) -> str:
    done = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args[:4])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _flow(call: str, env: dict) -> dict:
    """Run a flow in its own process (as a worker would) and return its result (printed as the last line)."""
    module, _, name = call.partition(":")
    out = _run([sys.executable, "-c", f"import json; from {module} import {name.split('(')[0]}; "
                f"print('RESULT ' + json.dumps({name}, default=str))"], env)
    return json.loads(out.rsplit("RESULT ", 1)[1])


def _deployment_runs(api: str, name: str, expected: int, timeout: float = 90.0) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        deadline = time.monotonic() + timeout
        while True:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
            if len(runs) >= expected or time.monotonic() > deadline:
                return runs
            time.sleep(1)


def test_drift_starts_retrain_and_new_data_starts_ingest_through_the_prefect_yaml_triggers(prefect_server, home,
                                                                                           tmp_path):
    import mlflow

    from compactlm.serving.traffic.store import TrafficStore
    from compactlm.state import state_paths

    api, server_log = prefect_server
    env = {**os.environ, "PREFECT_API_URL": api, "COMPACTLM_HOME": str(home),
           "PREFECT_HOME": str(tmp_path / "prefect-client"), "PREFECT_LOGGING_LEVEL": "WARNING"}
    _run([sys.executable, "-m", "prefect", "work-pool", "create", "compactlm-process", "--type", "process"], env)
    deployed = _run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--name", "on-drift", "--name",
                     "on-new-data"], env)
    assert "retrain/on-drift" in deployed and "ingest/on-new-data" in deployed, deployed

    version, test_split, registered = register_served_champion(home, NAME)
    mlflow.set_tracking_uri(None)
    store = TrafficStore.open(f"sqlite:///{state_paths(home).traffic_db}")
    store.write_requests(served_records(test_split["instruction"].tolist()[:40], NAME, registered))

    offline = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    store.write_requests(served_records(OFF_DOMAIN_PROMPTS * 2, NAME, registered,
                                        start=datetime.now(UTC) - timedelta(days=2)))  # outside the window below
    lost = _flow(f"flows.monitor:monitor(overrides={OVERRIDES + ['monitor.window_hours=49']!r})", offline)
    assert lost["retrain_needed"] and lost["event_id"] is None and "no Prefect server" in lost["event"]
    # ...and it is not remembered: the cool-down only counts events a server received

    calm = _flow(f"flows.monitor:monitor(overrides={OVERRIDES!r})", env)
    assert not calm["retrain_needed"] and calm["event_id"] is None, calm["report"]["checks"]

    store.write_requests(served_records(OFF_DOMAIN_PROMPTS * 2, NAME, registered,
                                        start=datetime.now(UTC) - timedelta(minutes=20)))
    store.close()
    drifted = _flow(f"flows.monitor:monitor(overrides={OVERRIDES!r})", env)
    assert drifted["retrain_needed"] and drifted["event_id"], drifted["report"]["checks"]

    runs = _deployment_runs(api, "retrain/on-drift", expected=1)
    assert len(runs) == 1, f"the drift event started no retrain run; server log:\n{server_log.read_text()[-3000:]}"
    parameters = runs[0].parameters
    trigger = parameters["trigger"]
    assert trigger["event"] == "compactlm.monitor.retrain-needed" and trigger["event_id"] == drifted["event_id"]
    assert trigger["resource"] == f"compactlm.model.{NAME}"
    assert "out_of_domain" in trigger["payload"]["reasons"]
    assert trigger["payload"]["figures"]["drift.out_of_domain"] > 0.2
    assert trigger["payload"]["model_version"] == registered
    assert trigger["payload"]["monitor_mlflow_run_id"] == drifted["mlflow_run_id"]
    # retrains what was monitored, without the monitor's own settings
    assert parameters["overrides"] == [o for o in OVERRIDES if not o.startswith("monitor.")]
    assert parameters["approval"] == "handoff"

    again = _flow(f"flows.monitor:monitor(overrides={OVERRIDES!r})", env)
    assert again["retrain_needed"] and again["event_id"] is None  # cool-down: one retrain per version and day
    assert "monitor.retrain_cooldown_hours" in again["event"] and drifted["event_id"] in again["event"]
    assert len(_deployment_runs(api, "retrain/on-drift", expected=2, timeout=10)) == 1

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    quiet = _flow(f"flows.monitor:watch_data(source={str(incoming)!r})", env)
    assert quiet["event_id"] is None
    write_csv(incoming / "new.csv", "instruction,response,intent",
              [f"where is parcel {i}?,It ships tomorrow.,track_order" for i in range(40)])
    landed = _flow(f"flows.monitor:watch_data(source={str(incoming)!r})", env)
    assert landed["event_id"] and landed["changes"]["new"] == ["new.csv"]
    assert _flow(f"flows.monitor:watch_data(source={str(incoming)!r})", env)["event_id"] is None  # announced once
    ingests = _deployment_runs(api, "ingest/on-new-data", expected=1)
    assert len(ingests) == 1, f"the data event started no ingest; server log:\n{server_log.read_text()[-3000:]}"
    assert ingests[0].parameters["source"] == str(incoming)
    assert ingests[0].parameters["trigger"]["payload"]["new"] == ["new.csv"]
