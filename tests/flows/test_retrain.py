"""The retrain and promote flows end to end under a real Prefect API, MLflow (SQLite) and DVC.

One module-scoped state folder holds the two retrain runs that every scenario needs (the first
creates the champion, the second a deferred challenger); each fixture records what its run left
behind, and every scenario that changes the registry reviews its own fresh copy of a version and
puts ``champion`` back, so each test runs alone or in any order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

CI_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ci.yaml"

pytestmark = pytest.mark.slow
MODEL = "compactlm-support-chat"


@pytest.fixture(scope="module")
def state_home(tmp_path_factory, prefect_harness):
    """The module's state folder (COMPACTLM_HOME), restored afterwards."""
    folder = tmp_path_factory.mktemp("retrain") / "state"
    previous = os.environ.get("COMPACTLM_HOME")
    os.environ["COMPACTLM_HOME"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("COMPACTLM_HOME", None)
    else:
        os.environ["COMPACTLM_HOME"] = previous


def _versions():
    from compactlm.registry.store import list_versions

    return {v.version: v for v in list_versions(MODEL)}


def _champion():
    from compactlm.registry.store import alias_version

    return alias_version(MODEL, "champion")


def _copy_of_version_1(**extra: str) -> str:
    """Register version 1's model again as a new, promotable version (no retraining needed)."""
    from compactlm.registry.store import register_version

    return register_version(f"models:/{MODEL}/1", MODEL, {"gate_verdict": "passed", "smoke_test": "passed", **extra})


@pytest.fixture(scope="module")
def state(state_home):
    """The first run (auto-approved): its summary, the version's tags and last_run.json as it left them."""
    from flows.retrain import retrain

    first = retrain(config_path=str(CI_CONFIG), approval="auto")
    return {"home": state_home, "first": first, "tags": _versions()["1"].tags,
            "last_run": json.loads((state_home / "last_run.json").read_text())}


@pytest.fixture(scope="module")
def second(state):
    """A second run with the review deferred: version 2, gated against the re-scored champion."""
    from flows.retrain import retrain

    summary = retrain(config_path=str(CI_CONFIG), approval="defer")
    return {"summary": summary, "tags": _versions()[summary["version"]].tags}


@pytest.fixture
def champion_before(state):
    """The champion when the test starts; the test must leave it there."""
    before = _champion()
    yield before
    assert _champion() == before, "the test did not put champion back"


def test_first_run_registers_an_approved_champion_with_lineage(state):
    first = state["first"]
    assert first["version"] == "1"
    assert first["aliases"] == ["champion"]  # approved: no longer the challenger
    assert first["gate"]["verdict"] == "passed"
    assert any("No champion yet" in note for note in first["gate"]["notes"])
    tags = state["tags"]
    assert tags["data_version"] == first["data_version"] and len(first["data_version"]) == 32
    for key in ("git_commit", "config_hash", "ge_result", "bias_disparate_impact",
                "bias_statistical_parity_difference", "gate_verdict", "metric.rouge_l", "prefect_flow_run_id"):
        assert tags.get(key), f"missing tag {key}"
    assert tags["gate_verdict"] == "passed"
    assert tags["approval"] == "approved" and tags["approval.reviewer"] == "auto-approve"
    assert tags["approval.source"] == "auto" and tags["smoke_test"] == "passed"
    assert tags["model_card"] == f"runs:/{first['mlflow_run_id']}/model_card.md"
    assert "expectations passed" in tags["ge_result"]
    summary = state["last_run"]
    for key in ("registered_model", "version", "aliases", "metrics", "gate", "data_version"):
        assert key in summary
    assert summary["metrics"]["perplexity"] > 1.0


def test_first_run_logged_reports_and_dataset_to_mlflow(state):
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(state["first"]["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["data_version"] == state["first"]["data_version"]
    assert "test_rouge_l" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert {"reports/gate.md", "reports/data-validation.md", "reports/bias-audit.md",
            "reports/evaluation.md", "reports/ingest-report.md", "reports/pretrain.md",
            "reports/finetune.md"} <= artifacts
    digests = {d.dataset.digest for d in run.inputs.dataset_inputs}
    assert state["first"]["data_version"][:32] in {d[:32] for d in digests}
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    names = {c.info.run_name for c in children}
    assert {"pretrain", "finetune-lora"} <= names
    pretrain_run = next(c for c in children if c.info.run_name == "pretrain")
    assert len(client.get_metric_history(pretrain_run.info.run_id, "loss")) >= 2  # a loss curve, not a point


def test_registered_model_loads_in_a_fresh_process(state):
    code = (
        "import mlflow, json;"
        f"m = mlflow.pyfunc.load_model('models:/{MODEL}@champion');"
        "out = m.predict(['Where is my order?', 'I want a refund'], params={'max_new_tokens': 8});"
        "print(json.dumps(out))"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{state['home'] / 'mlflow.db'}"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_second_run_is_gated_against_the_rescored_champion(second):
    tags, second = second["tags"], second["summary"]
    assert second["version"] == "2"
    assert second["champion"] == "1"  # deferred: not promoted
    assert second["aliases"] == ["challenger"]
    assert second["review"]["status"] == "pending"
    assert tags["approval"] == "pending" and tags["smoke_test"] == "passed"
    versus = [c for c in second["gate"]["checks"] if "vs champion" in c["name"]]
    assert {c["metric"] for c in versus} == {"rouge_l", "bleu", "word_perplexity", "mcq_accuracy"}
    assert all(c["baseline"] is not None for c in versus)
    assert any("re-scored" in note for note in second["gate"]["notes"])
    from mlflow import MlflowClient

    metrics = MlflowClient().get_run(second["mlflow_run_id"]).data.metrics
    assert "champion_rouge_l" in metrics and "champion_word_perplexity" in metrics


def _resume_when_paused(run_input: dict, found: list) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run

    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    with get_client(sync_client=True) as client:
        for _ in range(240):
            runs = client.read_flow_runs(flow_run_filter=paused)
            if runs:
                found.append(runs[0].id)
                resume_flow_run(runs[0].id, run_input=run_input)
                return
            time.sleep(0.5)


def _review(version: str, run_input: dict | None, timeout_s: int = 120) -> dict:
    from flows.review import promote

    found: list = []
    helper = threading.Thread(target=_resume_when_paused, args=(run_input, found)) if run_input else None
    if helper:
        helper.start()
    result = promote(model_name=MODEL, version=version, approval="wait", timeout_s=timeout_s,
                     home=str(os.environ["COMPACTLM_HOME"]))
    if helper:
        helper.join(timeout=5)
        assert found, "the promote flow never paused for input"
    return result


def _pending_copy() -> str:
    """A fresh promotable version waiting for review (a copy of version 1's model)."""
    from compactlm.registry.review import request_review

    version = _copy_of_version_1()
    request_review(MODEL, version)
    return version


def test_rejection_in_the_review_form_leaves_the_champion(champion_before):
    version = _pending_copy()
    result = _review(version, {"approved": False, "reviewer": "bob", "comment": "answers too short"})
    assert result["status"] == "rejected" and result["champion"] == champion_before
    tags = _versions()[version].tags
    assert tags["approval"] == "rejected" and tags["approval.reviewer"] == "bob"
    assert tags["approval.comment"] == "answers too short" and tags["approval.time"]
    assert _champion() == champion_before


def test_review_timeout_counts_as_rejection(champion_before):
    version = _pending_copy()
    result = _review(version, None, timeout_s=2)
    assert result["status"] == "rejected" and result["reviewer"] == "timeout"
    assert _versions()[version].tags["approval"] == "rejected"
    assert _champion() == champion_before


def test_approval_in_the_review_form_moves_the_champion(champion_before):
    from compactlm.registry.review import rollback

    version = _pending_copy()
    result = _review(version, {"approved": True, "reviewer": "alice", "comment": "looks good"})
    assert result["status"] == "approved" and result["champion"] == version
    tags = _versions()[version].tags
    assert tags["approval"] == "approved" and tags["previous_champion"] == champion_before
    assert tags["approval.source"] == "prefect-form"
    assert _champion() == version
    rollback(MODEL, to_version=champion_before)


def test_a_decision_set_as_an_mlflow_tag_is_honoured_by_the_promote_flow(champion_before):
    from compactlm.registry.store import tag_version
    from flows.review import promote

    version = _copy_of_version_1()
    tag_version(MODEL, version, {"approval": "approved", "approval.reviewer": "erin", "approval.comment": "via UI"})
    result = promote(model_name=MODEL, version=version, approval="wait", timeout_s=60,
                     home=str(os.environ["COMPACTLM_HOME"]))
    assert result["status"] == "approved" and result["source"] == "mlflow-tag" and result["reviewer"] == "erin"
    assert _champion() == version
    from compactlm.registry.review import rollback

    assert rollback(MODEL) == (version, champion_before)  # and back


@contextmanager
def _suspended_review(tmp_path, name: str, **parameters):
    """A served ``promote`` deployment (a worker process) and one run of it, waited for until Suspended.

    Yields ``(run, suspended state)``; the worker is stopped after the block.
    """
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_HOME": str(tmp_path / "worker"),
           "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_LOGGING_LEVEL": "INFO"}
    worker = subprocess.Popen([sys.executable, "-c", "from flows.review import promote; "
                               f"promote.serve(name={name!r}, limit=2)"],
                              cwd=Path(__file__).resolve().parents[2], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        run = None
        for _ in range(120):  # the served deployment appears once the worker process has started
            try:
                run = run_deployment(f"promote/{name}", timeout=0, parameters={
                    "model_name": MODEL, "approval": "suspend", "home": str(os.environ["COMPACTLM_HOME"]),
                    **parameters})
                break
            except Exception:
                time.sleep(1)
        assert run is not None, "the served deployment never appeared"
        yield run, _wait_for_state(run.id, lambda s: s.name == "Suspended")
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def _resume(run, **form) -> None:
    """Submit the review form to a suspended run and wait for it to complete."""
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(run.id, run_input=form)
    final = _wait_for_state(run.id, lambda s: s.is_final())
    assert final.is_completed(), final


def test_deployed_promote_suspends_then_resumes_from_the_form(champion_before, tmp_path):
    from prefect.client.schemas.objects import StateType

    from compactlm.registry.review import request_review, rollback

    version = _copy_of_version_1()
    request_review(MODEL, version)
    with _suspended_review(tmp_path, "review-test", version=version, timeout_s=600) as (run, suspended):
        assert suspended.type == StateType.PAUSED
        assert _versions()[version].tags["approval"] == "pending"  # nothing decided while suspended
        _resume(run, approved=True, reviewer="dana", comment="after suspension")
    tags = _versions()[version].tags
    assert tags["approval"] == "approved" and tags["approval.reviewer"] == "dana"
    assert tags["approval.source"] == "prefect-form"
    assert _champion() == version
    rollback(MODEL, to_version=champion_before)


def test_a_tag_decision_set_while_the_review_is_suspended_is_honoured_on_resume(champion_before, tmp_path):
    """Resumed, the run starts again from the top: the MLflow-tag check must read the registry again (not cached)."""
    from compactlm.registry.review import request_review
    from compactlm.registry.store import tag_version

    version = _copy_of_version_1()
    request_review(MODEL, version, timeout_s=600)
    # the version as a JSON integer, as `--param version=N` sends it
    with _suspended_review(tmp_path, "review-tag-test", version=int(version)) as (run, _):
        tag_version(MODEL, version, {"approval": "rejected", "approval.reviewer": "erin",
                                     "approval.comment": "set in the MLflow UI while suspended"})
        _resume(run, approved=True, reviewer="dana", comment="too late")
    tags = _versions()[version].tags
    assert tags["approval"] == "rejected" and tags["approval.reviewer"] == "erin", tags
    assert tags["approval.source"] == "mlflow-tag"
    assert _champion() == champion_before


def test_a_form_answer_after_the_review_closed_is_not_applied(champion_before, tmp_path):
    """The sweep rejected the review at its deadline while the run was still suspended: a later approval through
    the form must not overturn it. The run waits only what is left of the review's own timeout."""
    from datetime import datetime

    from prefect import get_client

    from compactlm.registry.review import reject_unanswered, request_review

    version = _copy_of_version_1()
    request_review(MODEL, version, timeout_s=600)
    deadline = datetime.fromisoformat(_versions()[version].tags["review.deadline"])
    with _suspended_review(tmp_path, "review-late-test", version=version) as (run, suspended):
        assert suspended.state_details.pause_timeout <= deadline + timedelta(seconds=2)  # what is left, no more
        reject_unanswered(MODEL, version, 600)  # what the sweep records once the deadline has passed
        _resume(run, approved=True, reviewer="late", comment="after the deadline")
        with get_client(sync_client=True) as client:
            keys = {a.key for a in client.read_artifacts() if a.flow_run_id == run.id}
        assert "review-decision" in keys
    tags = _versions()[version].tags
    assert tags["approval"] == "rejected" and tags["approval.source"] == "timeout", tags
    assert _champion() == champion_before


def test_the_sweep_closes_the_suspended_run_of_a_review_it_decided(champion_before, tmp_path):
    """A review decided by the sweep (here an MLflow tag) must not stay Suspended with a Resume button."""
    from prefect.settings import PREFECT_API_URL

    from compactlm.registry.review import request_review
    from compactlm.registry.store import tag_version

    version = _copy_of_version_1()
    request_review(MODEL, version, timeout_s=600)
    with _suspended_review(tmp_path, "review-sweep-test", version=version) as (run, _):
        tag_version(MODEL, version, {"approval": "rejected", "approval.reviewer": "erin"})
        # the sweep in its own process, as the deployment runs it (an in-process flow run here would leave
        # Prefect's log handlers on this test's captured stderr for the tests after it)
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_HOME": str(tmp_path / "sweep")}
        code = ("import json, sys; from flows.review import review_sweep; "
                "print(json.dumps(review_sweep(model_name=sys.argv[1], home=sys.argv[2])))")
        done = subprocess.run([sys.executable, "-c", code, MODEL, str(os.environ["COMPACTLM_HOME"])], env=env,
                              cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        decided = json.loads(done.stdout.strip().splitlines()[-1])
        assert [d["version"] for d in decided] == [version]
        from prefect import get_client

        with get_client(sync_client=True) as client:
            closed = client.read_flow_run(run.id).state
    assert closed.is_cancelled() and f"version {version} was rejected" in closed.message, closed
    assert _versions()[version].tags["approval"] == "rejected" and _champion() == champion_before


def _wait_for_state(flow_run_id, predicate, timeout_s: float = 180):
    from prefect import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and predicate(state):
                return state
            if state is not None and state.is_final():
                raise AssertionError(f"flow run {flow_run_id} ended in an unexpected state: {state}")
            time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not reach the expected state; last: {state}")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "compactlm.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=Path(__file__).resolve().parents[2])


@pytest.fixture
def second_is_champion(second):
    """Version 2 approved and champion (as a reviewer would leave it), the champion before restored after."""
    from compactlm.registry.review import apply_decision, rollback

    before = _champion()
    if before != "2":
        apply_decision(MODEL, "2", True, "alice", "looks good", "cli")
    yield
    if before != "2":
        rollback(MODEL, to_version=before)


def test_cli_lists_rolls_back_and_runs_a_blind_human_evaluation(second_is_champion, tmp_path):
    listing = _cli("registry", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {v["version"]: v for v in json.loads(listing.stdout)}
    assert "champion" in rows["2"]["aliases"] and rows["1"]["tags"]["approval"] == "approved"
    exported = _cli("eval", "human-export", "--out", str(tmp_path / "sheet"), "--n", "4", "--challenger", "1")
    assert exported.returncode == 0, exported.stderr
    key = json.loads((tmp_path / "sheet" / "key.json").read_text())
    assert key["metadata"] == {"champion_uri": f"models:/{MODEL}@champion", "challenger_uri": f"models:/{MODEL}/1"}
    rows = [{"item_id": item, "best": next(k for k, v in slots.items() if v == "challenger"),
             "human": next(k for k, v in slots.items() if v == "reference")} for item, slots in key["items"].items()]
    import pandas as pd

    pd.DataFrame(rows).to_csv(tmp_path / "ratings.csv", index=False)
    imported = _cli("eval", "human-import", "--ratings", str(tmp_path / "ratings.csv"),
                    "--key", str(tmp_path / "sheet" / "key.json"))
    assert imported.returncode == 0, imported.stderr
    assert "human_win_rate_challenger: 1.000" in imported.stdout
    assert "human_turing_fooled_rate: 0.000" in imported.stdout
    rolled = _cli("registry", "rollback", "--reason", "test")
    assert rolled.returncode == 0, rolled.stderr
    assert _champion() != "2"
    restored = _cli("registry", "rollback", "--to", "2")
    assert restored.returncode == 0 and _champion() == "2"
    refused = _cli("registry", "rollback", "--to", "99")
    assert refused.returncode == 2 and "has no version 99" in refused.stderr and "Traceback" not in refused.stderr


def test_failed_gate_registers_nothing_and_keeps_the_champion(champion_before):
    from flows.retrain import retrain

    before = set(_versions())
    result = retrain(config_path=str(CI_CONFIG), overrides=["gate.checks.rouge_l.min=1.0"], approval="auto")
    assert result["gate"]["verdict"] == "failed" and result["version"] is None
    assert set(_versions()) == before
    assert _champion() == champion_before
    failed = [c for c in result["gate"]["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["rouge_l >= 1"]


def test_corrupted_dataset_fails_validation_and_registers_nothing(tmp_path, prefect_harness, monkeypatch):
    from compactlm.data.sources.generator import INTENTS, generate_support_dataset
    from compactlm.errors import ValidationFailed
    from flows.retrain import retrain

    home = tmp_path / "state"
    monkeypatch.setenv("COMPACTLM_HOME", str(home))
    frame = generate_support_dataset(n_rows=400, seed=5)
    frame.loc[frame.index[::10], "intent"] = "refund_plz"  # labels outside the allowed set
    source = tmp_path / "corrupted.csv"
    frame.to_csv(source, index=False)
    allowed = "[" + ",".join(sorted(INTENTS)) + "]"
    with pytest.raises(ValidationFailed) as failure:
        retrain(config_path=str(CI_CONFIG), source=str(source), overrides=[f"data.allowed_intents={allowed}"],
                approval="auto")
    message = str(failure.value)
    assert "expect_column_values_to_be_in_set" in message and "'intent'" in message and "gen-" in message
    assert "\n" not in message
    from mlflow import MlflowClient

    assert MlflowClient().search_registered_models() == []
    runs = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("compactlm-retrain").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert not list((home / "runs").glob("*/base")), "training must not start after a failed validation"
    # The rejected version stays recorded in DVC so the offending rows can be inspected.
    assert Path(home / "data" / "datasets" / "support-instructions.dvc").is_file()
