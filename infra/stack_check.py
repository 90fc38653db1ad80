"""Prove the deployed stack that ``infra/stack.sh up`` started (run by ``infra/stack.sh check|test``).

Each step prints its time and exits non-zero naming itself on failure:

1. backend: both servers keep their state in PostgreSQL (rows in the ``prefect`` and ``mlflow`` databases).
2. schedule: a 60-second schedule added to ``review-sweep/every-10-minutes`` makes the server's scheduler create
   runs that the process worker executes (issue 14, point 1).
3. approve: ``retrain/weekly`` (small parameters) registers version A and hands the review to ``promote/review``,
   which suspends; the typed form refuses an answer without ``reviewer``, then an approval through the Prefect
   API (what the UI's Resume button posts) makes A ``champion`` with the approval tags; the retrain and review
   runs link each other (artifacts).
4. timeout: a second retrain whose review (``registry.approval_timeout_s``=45) nobody answers ends as
   ``approval=rejected`` in MLflow (the scheduled sweep), and ``champion`` stays A (point 2).
5. tag: a third retrain's review, suspended, is decided by the MLflow tag ``approval=approved`` set as in the
   MLflow UI: the version becomes ``champion`` with ``approval.source=mlflow-tag`` (point 4).
6. loop: off-domain prompts of the champion written to the PostgreSQL traffic store make ``monitor/hourly``, run
   by the worker, emit ``compactlm.monitor.retrain-needed``; the server's automation (the deployment trigger in
   prefect.yaml) starts exactly one ``retrain/on-drift`` run with the event as its ``trigger`` (then cancelled).
7. storage: the DVC remote and MLflow's artifacts are objects in the S3 buckets.
8. secrets: no generated secret (PostgreSQL password, S3 secret key) appears in any server, worker or flow-run log.

Environment: what ``infra/stack.sh env`` exports, plus PGBIN, STACK_PG_PORT, STACK_LOGS, STACK_SECRETS.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from compactlm.registry.review_context import flow_run_link

MODEL = "compactlm-support-chat"
RETRAIN = {"config_path": "configs/ci.yaml", "approval": "handoff"}
T0 = time.monotonic()


class StepFailed(Exception):
    pass


def say(message: str) -> None:
    print(f"[check {time.monotonic() - T0:6.0f}s] {message}", flush=True)


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float, every_s: float = 3.0) -> Any:
    """Call ``probe`` until it returns something truthy; raise StepFailed naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StepFailed(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(every_s)


def psql(db: str, sql: str) -> str:
    env = {**os.environ, "PGPASSWORD": Path(os.environ["STACK_SECRETS"], "pg_password").read_text().strip()}
    return subprocess.run([f"{os.environ['PGBIN']}/psql", "-h", "127.0.0.1", "-p", os.environ["STACK_PG_PORT"],
                           "-U", "compactlm", "-d", db, "-qtA", "-c", sql], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def prefect_client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def flow_run(run_id):
    with prefect_client() as client:
        return client.read_flow_run(run_id)


def runs_of(deployment_name: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with prefect_client() as client:
        deployment = client.read_deployment_by_name(deployment_name)
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


def artifact_keys(run_id) -> set[str]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with prefect_client() as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[run_id])))
    return {artifact.key for artifact in artifacts if artifact.key}


def mlflow():
    from mlflow import MlflowClient

    return MlflowClient()


def versions() -> dict[str, Any]:
    return {v.version: v for v in mlflow().search_model_versions(f"name='{MODEL}'")}


def champion() -> str | None:
    try:
        return mlflow().get_model_version_by_alias(MODEL, "champion").version
    except Exception:
        return None


def retrain(overrides: list[str]) -> str:
    """Run ``retrain/weekly`` to the end; the version it registered."""
    from prefect.deployments import run_deployment

    before = set(versions())
    run = run_deployment("retrain/weekly", timeout=0, parameters={**RETRAIN, "overrides": overrides})
    say(f"  retrain run {run.name} ({flow_run_link(str(run.id))}) started, overrides {overrides}")
    final = wait_for("the retrain run to finish", lambda: (r := flow_run(run.id)).state.is_final() and r, 1800, 5)
    if not final.state.is_completed():
        raise StepFailed(f"retrain ended {final.state.name}: {final.state.message}")
    new = sorted(set(versions()) - before, key=int)
    if len(new) != 1:
        raise StepFailed(f"retrain registered {new} (expected one new version)")
    took = (final.end_time - final.start_time).total_seconds() if final.end_time and final.start_time else float("nan")
    say(f"  retrain Completed in {took:.0f} s of flow time: version {new[0]} registered")
    artifacts = artifact_keys(run.id)
    if f"review-run-v{new[0]}" not in artifacts:
        raise StepFailed(f"the retrain run has no review-run-v{new[0]} artifact linking its review (has {artifacts})")
    return new[0]


def suspended_review(version: str):
    """The ``promote/review`` run of ``version``, once Suspended."""
    def probe():
        for run in runs_of("promote/review"):
            if str(run.parameters.get("version")) == version and run.state and run.state.name == "Suspended":
                return run
        return None

    run = wait_for(f"the review run of version {version} to suspend", probe, 600, 3)
    say(f"  review run {run.name} of version {version} is Suspended (pause timeout "
        f"{run.state.state_details.pause_timeout:%H:%M:%S} UTC)")
    return run


def step_backend() -> None:
    version = psql("postgres", "SHOW server_version")
    deployments = psql("prefect", "SELECT count(*) FROM deployment")
    tables = psql("mlflow", "SELECT count(*) FROM information_schema.tables WHERE table_name='registered_models'")
    if int(deployments) < 5 or tables != "1":
        raise StepFailed(f"PostgreSQL holds {deployments} Prefect deployments and registered_models={tables}")
    say(f"  PostgreSQL {version}: prefect database holds {deployments} deployments; mlflow database has its schema")
    import httpx

    ui_api = httpx.get(f"{os.environ['PREFECT_UI_URL']}/ui-settings", timeout=10).json().get("api_url")
    if ui_api != os.environ["PREFECT_API_URL"]:
        raise StepFailed(f"the Prefect UI calls the API at {ui_api}, not {os.environ['PREFECT_API_URL']}: it would "
                         "show no deployments and 'Can't connect to Server API'")
    say(f"  the Prefect UI calls its API at {ui_api}")


def step_schedule() -> None:
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import IntervalSchedule

    with prefect_client() as client:
        deployment = client.read_deployment_by_name("review-sweep/every-10-minutes")
        client.create_deployment_schedules(deployment.id, [DeploymentScheduleCreate(
            schedule=IntervalSchedule(interval=timedelta(seconds=60)), active=True)])
    say("  added a 60 s schedule to review-sweep/every-10-minutes")

    def completed_scheduled():
        done = [r for r in runs_of("review-sweep/every-10-minutes") if r.auto_scheduled and r.state.is_completed()]
        return done
    done = wait_for("a scheduled run to complete", completed_scheduled, 300, 5)
    say(f"  the scheduler created runs and the worker completed {len(done)} of them ({done[0].name})")


def step_approve() -> str:
    from prefect.flow_runs import resume_flow_run

    version = retrain(["registry.approval_timeout_s=1800"])
    run = suspended_review(version)
    if versions()[version].tags.get("approval") != "pending":
        raise StepFailed(f"version {version} is not pending while suspended: {versions()[version].tags}")
    if f"review-v{version}" not in artifact_keys(run.id):
        raise StepFailed(f"the review run has no review-v{version} artifact (gate, metrics, links)")
    try:
        resume_flow_run(run.id, run_input={"approved": True})
    except Exception as error:  # the server validates run input against the form's schema
        say(f"  an answer without reviewer is refused: {str(error).splitlines()[0][:120]}")
    else:
        raise StepFailed("the review form accepted an answer without reviewer")
    resume_flow_run(run.id, run_input={"approved": True, "reviewer": "stack-check", "comment": "infra/stack.sh check"})
    final = wait_for("the resumed review to finish", lambda: (r := flow_run(run.id)).state.is_final() and r, 600, 3)
    if not final.state.is_completed():
        raise StepFailed(f"the resumed review ended {final.state.name}: {final.state.message}")
    tags = versions()[version].tags
    if champion() != version or tags.get("approval") != "approved" or tags.get("approval.reviewer") != "stack-check":
        raise StepFailed(f"after approval: champion={champion()}, tags={tags}")
    say(f"  approved through the form: version {version} is champion (approval={tags['approval']}, "
        f"approval.reviewer={tags['approval.reviewer']}, approval.source={tags.get('approval.source')})")
    return version


def step_timeout(champion_version: str) -> None:
    version = retrain(["registry.approval_timeout_s=45"])
    run = suspended_review(version)
    say("  nobody answers; waiting for the review's 45 s timeout and the scheduled sweep")
    tags = wait_for(f"version {version} to be rejected", lambda: (t := versions()[version].tags).get("approval")
                    == "rejected" and t, 300, 5)
    if champion() != champion_version:
        raise StepFailed(f"champion moved to {champion()} after an unanswered review")
    state = flow_run(run.id).state
    say(f"  unanswered review ended approval=rejected ({tags.get('approval.comment', '')[:80]}); champion stays "
        f"{champion_version}; the suspended run is {state.name}")


def step_tag() -> None:
    version = retrain(["registry.approval_timeout_s=1800"])
    run = suspended_review(version)
    mlflow().set_model_version_tag(MODEL, version, "approval", "approved")
    mlflow().set_model_version_tag(MODEL, version, "approval.reviewer", "stack-tag")
    say("  set approval=approved on the version in MLflow (as in its UI) while the review is suspended")
    wait_for(f"version {version} to become champion", lambda: champion() == version, 300, 5)
    tags = versions()[version].tags
    if tags.get("approval.source") != "mlflow-tag":
        raise StepFailed(f"champion moved but approval.source={tags.get('approval.source')}")
    say(f"  the tag decision was honoured: version {version} is champion (approval.source=mlflow-tag)")
    state = wait_for("the decided review's suspended run to be closed",
                     lambda: (st := flow_run(run.id).state).is_cancelled() and st, 60, 3)
    say(f"  its suspended review run {run.name} was closed by the sweep: {state.name} ({state.message})")


def step_storage() -> None:
    import boto3

    s3 = boto3.client("s3")
    counts = {bucket: s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
              for bucket in ("compactlm-data", "compactlm-mlflow")}
    if not all(counts.values()):
        raise StepFailed(f"empty S3 bucket(s): {counts}")
    say(f"  S3 objects: DVC remote compactlm-data {counts['compactlm-data']}, "
        f"MLflow artifacts compactlm-mlflow {counts['compactlm-mlflow']}")


def step_secrets() -> None:
    # The PostgreSQL password and the S3 secret key. The S3 access key ID is an identifier, not a secret (AWS
    # signs requests with the secret key; the ID is in every signed URL and in the S3 server's access log).
    folder = Path(os.environ["STACK_SECRETS"])
    secrets = [(folder / name).read_text().strip() for name in ("pg_password", "s3_secret_key")]
    logs = list(Path(os.environ["STACK_LOGS"]).glob("*.log"))
    from prefect.client.schemas.filters import LogFilter

    with prefect_client() as client:
        flow_logs = "\n".join(log.message for log in client.read_logs(log_filter=LogFilter(), limit=200))
    leaked = [p.name for p in logs if any(s in p.read_text(errors="replace") for s in secrets)]
    if any(s in flow_logs for s in secrets):
        leaked.append("flow-run logs")
    if leaked:
        raise StepFailed(f"a generated credential appears in {leaked}")
    say(f"  no credential in {len(logs)} server/worker logs nor in the flow-run logs")


OFF_DOMAIN = [f"{ask} {topic}?" for ask in ("how do I cook", "what is the best recipe for", "tell me a fun fact about",
                                            "what's the weather like for", "who won the last match of")
              for topic in ("pasta carbonara", "the moon", "tennis", "a sunny afternoon in rome", "bread", "jazz")]


def step_loop(version: str) -> None:
    """Drifted traffic of the champion in the PostgreSQL traffic store -> ``monitor/hourly`` on the worker ->
    its event -> the server's automation starts ``retrain/on-drift`` with the event as ``trigger``."""
    from datetime import UTC, datetime, timedelta

    from prefect.deployments import run_deployment

    from compactlm.serving.traffic.store import RequestRecord, TrafficStore

    store = TrafficStore.open(os.environ["STACK_TRAFFIC_DB_URL"])
    start = datetime.now(UTC) - timedelta(minutes=30)
    store.write_requests([RequestRecord(
        request_id=f"stack-drift-{int(start.timestamp())}-{i}", created_at=start + timedelta(seconds=i),
        route="/v1/chat/completions", model_name=MODEL, model_version=str(version), status=200, latency_ms=20.0,
        prompt_tokens=8, completion_tokens=8, prompt_text=text, completion_text="ok")
        for i, text in enumerate(OFF_DOMAIN * 2)])
    store.close()
    say(f"  {len(OFF_DOMAIN) * 2} off-domain prompts served by champion v{version} written to the PostgreSQL "
        "traffic store (the worker's COMPACTLM_TRAFFIC_DB)")
    before = {str(r.id) for r in runs_of("retrain/on-drift")}
    run = run_deployment("monitor/hourly", timeout=0, parameters={
        "config_path": "configs/ci.yaml", "overrides": ["monitor.min_requests=20"]})
    final = wait_for("the monitor run to finish", lambda: (r := flow_run(run.id)).state.is_final() and r, 600, 3)
    if not final.state.is_completed():
        raise StepFailed(f"monitor ended {final.state.name}: {final.state.message}")
    if "monitor" not in artifact_keys(run.id):
        raise StepFailed(f"the monitor run has no 'monitor' artifact (has {artifact_keys(run.id)})")
    say(f"  monitor run {run.name} ({flow_run_link(str(run.id))}) Completed with its 'monitor' artifact")
    triggered = wait_for("the drift event to start retrain/on-drift",
                         lambda: [r for r in runs_of("retrain/on-drift") if str(r.id) not in before], 120, 2)
    if len(triggered) != 1:
        raise StepFailed(f"the drift event started {len(triggered)} retrain runs (expected 1)")
    trigger = triggered[0].parameters.get("trigger") or {}
    payload = trigger.get("payload") or {}
    if trigger.get("event") != "compactlm.monitor.retrain-needed" or "out_of_domain" not in payload.get("reasons", []):
        raise StepFailed(f"the triggered retrain's trigger parameter is {trigger}")
    say(f"  the server's automation started retrain/on-drift run {triggered[0].name} with trigger event "
        f"{trigger.get('event_id')}: reasons {payload['reasons']}, out-of-domain share "
        f"{payload['figures']['drift.out_of_domain']:.2f}")
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    with prefect_client() as client:  # its retrain is retrain/weekly's, checked above: cancel it to save time
        if not flow_run(triggered[0].id).state.is_final():
            client.set_flow_run_state(triggered[0].id, Cancelled(message="stack check: trigger proven"), force=True)
    wait_for("the triggered retrain to stop", lambda: flow_run(triggered[0].id).state.type in (
        StateType.CANCELLED, StateType.COMPLETED, StateType.FAILED, StateType.CRASHED), 180, 3)


def main() -> int:
    state: dict[str, str] = {}
    steps: list[tuple[str, Callable[[], Any]]] = [("backend", step_backend), ("schedule", step_schedule),
             ("approve", lambda: state.update(champion=step_approve())),
             ("timeout", lambda: step_timeout(state["champion"])), ("tag", step_tag),
             ("loop", lambda: step_loop(champion())),
             ("storage", step_storage), ("secrets", step_secrets)]
    for name, step in steps:
        start = time.monotonic()
        say(f"step {name}")
        try:
            step()
        except StepFailed as error:
            print(f"stack check failed at step '{name}': {error}", file=sys.stderr)
            return 1
        except Exception as error:  # a server error is a failed step too, named
            print(f"stack check failed at step '{name}': {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        say(f"step {name} passed in {time.monotonic() - start:.0f} s")
    say("all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
