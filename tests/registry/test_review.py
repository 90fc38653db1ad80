"""Review governance against a real MLflow registry: guards, decisions, MLflow-tag approvals, timeouts, rollback."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compactlm.errors import CompactLMError
from compactlm.models.presets import build_decoder
from compactlm.models.tokenizer import train_bpe_tokenizer
from compactlm.registry import review, store
from compactlm.registry.pyfunc import log_chat_model
from compactlm.registry.review_context import review_context
from compactlm.state import state_paths

NAME = "review-model"
GOOD = {"gate_verdict": "passed", "smoke_test": "passed"}


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory):
    """One logged tiny model, registered many times by the tests (a fresh registry each test)."""
    folder = tmp_path_factory.mktemp("model")
    tok = train_bpe_tokenizer(["hello there, where is my order?"] * 30, 300, 32)
    model = build_decoder("decoder-tiny", len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def new_version(home, model_uri):
    import mlflow

    experiment = store.setup_tracking(state_paths(), "review")
    with mlflow.start_run(experiment_id=experiment):
        uri = log_chat_model(model_uri).model_uri

    def make(**tags: str) -> str:
        return store.register_version(uri, NAME, {**GOOD, **tags})

    yield make
    mlflow.set_tracking_uri(None)


def _tags(version: str) -> dict[str, str]:
    return {v.version: v.tags for v in store.list_versions(NAME)}[version]


def test_approval_promotes_and_records_who_when_why(new_version):
    v1 = new_version()
    review.request_review(NAME, v1)
    assert _tags(v1)["approval"] == "pending" and "review.requested_at" in _tags(v1)
    decision = review.apply_decision(NAME, v1, True, "alice", "good answers", "cli")
    assert decision.status == "approved" and decision.champion == v1
    tags = _tags(v1)
    assert tags["approval"] == "approved" and tags["approval.reviewer"] == "alice"
    assert tags["approval.comment"] == "good answers" and tags["approval.source"] == "cli"
    assert tags["approval.time"] and tags["approval.applied_at"] and tags["promoted_at"]


def test_rejection_keeps_the_champion(new_version):
    v1, v2 = new_version(), new_version()
    review.promote(NAME, v1)
    decision = review.apply_decision(NAME, v2, False, "bob", "too terse", "prefect-form")
    assert decision.status == "rejected" and decision.champion == v1
    assert _tags(v2)["approval"] == "rejected"


@pytest.mark.parametrize("approved", [True, False])
def test_a_decided_version_is_no_longer_the_challenger(new_version, approved):
    """A review of "the current challenger" must not find a version that was already rejected (or promoted)."""
    v1, v2 = new_version(), new_version()
    store.set_alias(NAME, store.CHALLENGER, v1)
    review.apply_decision(NAME, v2, False, "bob", "", "cli")  # another version's decision leaves it alone
    assert store.alias_version(NAME, store.CHALLENGER) == v1
    review.apply_decision(NAME, v1, approved, "bob", "", "cli")
    assert store.alias_version(NAME, store.CHALLENGER) is None
    assert store.alias_version(NAME, store.CHAMPION) == (v1 if approved else None)
    with pytest.raises(CompactLMError, match="no 'challenger' version to review"):
        review.version_to_review(NAME)


@pytest.mark.parametrize("tags", [{"gate_verdict": "failed"}, {"smoke_test": "failed"}, {"smoke_test": ""}])
def test_an_approved_version_that_failed_its_gate_or_smoke_test_never_becomes_champion(new_version, tags):
    v1 = new_version()
    review.promote(NAME, v1)
    bad = new_version(**tags)
    decision = review.apply_decision(NAME, bad, True, "alice", "ship it", "cli")
    assert decision.status == "refused" and decision.champion == v1
    assert _tags(bad)["approval"] == "rejected" and "not promoted" in _tags(bad)["approval.comment"]
    with pytest.raises(CompactLMError, match="cannot become champion"):
        review.promote(NAME, bad)


def test_a_decision_typed_into_the_mlflow_ui_is_honoured_once(new_version):
    v1 = new_version()
    review.request_review(NAME, v1)
    assert review.honour_tag_decision(NAME, v1) is None  # pending: nothing to apply
    store.tag_version(NAME, v1, {"approval": "Approved", "approval.reviewer": "carol"})
    decision = review.honour_tag_decision(NAME, v1)
    assert decision.status == "approved" and decision.reviewer == "carol" and decision.source == "mlflow-tag"
    assert store.alias_version(NAME, "champion") == v1
    assert review.honour_tag_decision(NAME, v1) is None  # applied: not again


def test_sweep_rejects_expired_reviews_and_applies_tag_decisions(new_version):
    v1, v2, v3 = new_version(), new_version(), new_version()
    for v in (v1, v2, v3):
        review.request_review(NAME, v)
    store.tag_version(NAME, v2, {"approval": "approved"})
    later = datetime.now(UTC) + timedelta(seconds=120)
    decisions = {d.version: d for d in review.sweep(NAME, timeout_s=60, now=later)}
    assert decisions[v1].status == "rejected" and decisions[v1].source == "timeout"
    assert decisions[v2].status == "approved" and decisions[v2].source == "mlflow-tag"
    assert store.alias_version(NAME, "champion") == v2
    assert review.sweep(NAME, timeout_s=60, now=later) == []  # nothing left to do
    assert _tags(v3)["approval"] == "rejected"  # v3 expired in the same sweep


def test_a_fresh_pending_review_is_left_alone(new_version):
    v1 = new_version()
    review.request_review(NAME, v1)
    assert review.sweep(NAME, timeout_s=3600) == []
    assert _tags(v1)["approval"] == "pending"


def test_an_unanswered_review_is_rejected_at_the_timeout_it_was_opened_with(new_version):
    """One timeout: the one the review was opened with (registry.approval_timeout_s) decides, not the sweep's."""
    v = new_version()
    review.request_review(NAME, v, timeout_s=60)
    tags = _tags(v)
    assert tags["review.timeout_s"] == "60"
    deadline = datetime.fromisoformat(tags["review.deadline"])
    assert abs((deadline - datetime.fromisoformat(tags["review.requested_at"])).total_seconds() - 60) < 1
    assert review.seconds_left(NAME, v)[0] == 60 and 50 <= review.seconds_left(NAME, v)[1] <= 60
    soon = datetime.now(UTC) + timedelta(seconds=30)
    assert v not in {d.version for d in review.sweep(NAME, now=soon)}
    assert _tags(v)["approval"] == "pending"
    later = datetime.now(UTC) + timedelta(seconds=61)
    assert review.seconds_left(NAME, v, now=later)[1] == 0
    decision = {d.version: d for d in review.sweep(NAME, now=later)}[v]
    assert decision.status == "rejected" and decision.source == "timeout" and "60 s" in decision.comment
    assert _tags(v)["approval"] == "rejected"


def test_a_review_timeout_below_one_second_is_refused(new_version):
    v = new_version()
    with pytest.raises(CompactLMError, match="review timeout must be >= 1 s, got 0"):
        review.request_review(NAME, v, timeout_s=0)


def test_rollback_walks_back_through_the_champion_history(new_version):
    v1, v2, v3 = new_version(), new_version(), new_version()
    for v in (v1, v2, v3):
        review.promote(NAME, v)
    assert review.champion_history(NAME) == [v1, v2, v3]
    assert review.rollback(NAME, reason="latency regression") == (v3, v2)
    assert _tags(v3)["rollback.reason"] == "latency regression"
    assert review.rollback(NAME) == (v2, v1)
    with pytest.raises(CompactLMError, match="no previous champion"):
        review.rollback(NAME)
    review.promote(NAME, v3)  # a re-promotion clears its rolled-back mark
    assert store.alias_version(NAME, "champion") == v3 and "rolled_back_at" not in _tags(v3)


def test_rollback_to_an_unpromotable_version_is_refused(new_version):
    v1, bad = new_version(), new_version(gate_verdict="failed")
    review.promote(NAME, v1)
    with pytest.raises(CompactLMError, match="cannot roll back to version"):
        review.rollback(NAME, to_version=bad)
    assert store.alias_version(NAME, "champion") == v1


def test_two_concurrent_promotions_leave_exactly_one_champion(new_version):
    versions = [new_version() for _ in range(2)]
    threads = [threading.Thread(target=review.promote, args=(NAME, v)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    holders = [v.version for v in store.list_versions(NAME) if "champion" in v.aliases]
    assert len(holders) == 1 and holders[0] in versions


OUTCOMES = st.sampled_from(["gate_failed", "smoke_failed", "rejected", "timeout", "tag_rejected", "pending"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outcome=OUTCOMES, approve_anyway=st.booleans())
def test_property_no_bad_path_ever_moves_the_champion(new_version, outcome, approve_anyway):
    champion = new_version()
    review.promote(NAME, champion)
    tags = {"gate_failed": {"gate_verdict": "failed"}, "smoke_failed": {"smoke_test": "failed"}}.get(outcome, {})
    candidate = new_version(**tags)
    review.request_review(NAME, candidate)
    if outcome in ("gate_failed", "smoke_failed"):
        review.apply_decision(NAME, candidate, approve_anyway, "x", "", "cli")
    elif outcome == "rejected":
        review.apply_decision(NAME, candidate, False, "x", "", "prefect-form")
    elif outcome == "timeout":
        review.sweep(NAME, timeout_s=1, now=datetime.now(UTC) + timedelta(seconds=5))
    elif outcome == "tag_rejected":
        store.tag_version(NAME, candidate, {"approval": "rejected"})
        review.sweep(NAME, timeout_s=3600)
    assert store.alias_version(NAME, "champion") == champion


def test_the_reviewer_sees_the_gate_the_metrics_against_the_champion_and_where_to_look(new_version):
    champion = new_version(**{"metric.rouge_l": "0.2500", "metric.mcq_accuracy": "0.4000"})
    review.promote(NAME, champion)
    candidate = new_version(**{"metric.rouge_l": "0.3100", "metric.mcq_accuracy": "0.4500",
                               "prefect_flow_run_id": "0b7e-run"})
    text = review_context(NAME, candidate)
    assert "**Gate:** passed" in text and "**smoke test:** passed" in text
    assert "| rouge_l | 0.3100 | 0.2500 |" in text and "| mcq_accuracy | 0.4500 | 0.4000 |" in text
    assert f"champion (v{champion})" in text
    assert "mlflow ui --backend-store-uri" in text and f"version {candidate}" in text
    assert "Retrain flow run" in text and "0b7e-run" in text
    failed = new_version(gate_verdict="failed")
    assert "cannot become champion" in review_context(NAME, failed)
    # the gate re-scored the champion on the candidate's test split: the review shows those figures, not the
    # champion's stored ones from another data version
    rescored = new_version(**{"metric.rouge_l": "0.3100", "gate.champion.rouge_l": "0.2800"})
    text = review_context(NAME, rescored)
    assert "| rouge_l | 0.3100 | 0.2800 |" in text and "re-scored by the gate on this test split" in text


def test_the_review_form_requires_a_decision_and_a_reviewer():
    from pydantic import ValidationError

    from flows.review import ReviewDecision

    with pytest.raises(ValidationError, match="reviewer"):
        ReviewDecision(approved=True)
    with pytest.raises(ValidationError, match="reviewer"):
        ReviewDecision(approved=True, reviewer="")
    with pytest.raises(ValidationError, match="approved"):
        ReviewDecision(reviewer="dana")
    assert ReviewDecision(approved=False, reviewer="dana").comment == ""


def test_an_answer_after_the_deadline_or_after_the_review_closed_is_not_applied(new_version):
    v = new_version()
    assert review.close_if_late(NAME, v) is None  # no review opened: nothing to close
    review.request_review(NAME, v, timeout_s=60)
    assert review.close_if_late(NAME, v) is None  # open and within its deadline: apply the answer
    late = review.close_if_late(NAME, v, now=datetime.now(UTC) + timedelta(seconds=61))
    assert late.status == "rejected" and late.source == "timeout"
    again = review.close_if_late(NAME, v)  # closed: the recorded decision, whatever the time
    assert (again.status, again.source, again.reviewer) == ("rejected", "timeout", "timeout")
    assert _tags(v)["approval"] == "rejected" and store.alias_version(NAME, "champion") != v
    review.request_review(NAME, v, timeout_s=60)  # a new review opens it again
    assert review.close_if_late(NAME, v) is None


def test_the_prefect_ui_link_of_a_flow_run_is_made_in_one_place(monkeypatch):
    from compactlm.registry.review_context import flow_run_link

    monkeypatch.delenv("PREFECT_UI_URL", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert flow_run_link("abc") == "http://127.0.0.1:4200/runs/flow-run/abc"
    monkeypatch.setenv("PREFECT_UI_URL", "https://prefect.example.com/")
    assert flow_run_link("abc") == "https://prefect.example.com/runs/flow-run/abc"
    monkeypatch.delenv("PREFECT_UI_URL")
    monkeypatch.delenv("PREFECT_API_URL")
    assert flow_run_link("abc") == "flow run abc"  # the ephemeral API has no UI
