"""Human review of registered versions: a typed form in the Prefect UI, or a tag in the MLflow UI.

* The ``promote`` flow reviews one version. Deployed (``promote/review``), it **suspends**: the process
  exits and holds nothing until a reviewer submits the form in the Prefect UI, then the run is
  rescheduled and applies the decision. Run directly, it pauses in-process instead.
* A reviewer may instead set the tag ``approval=approved`` (or ``rejected``) on the version in the
  MLflow UI: the promote flow honours it, and the ``review-sweep`` flow (scheduled) applies such
  decisions and turns reviews that waited longer than the timeout into rejections.
* The retrain flow calls ``request_review`` after registering a candidate.

Every decision is recorded on the version (reviewer, time, comment, source); only an approval of a
version whose gate and smoke test passed moves ``champion``.
"""

from datetime import UTC, datetime, timedelta
from typing import Literal

from prefect import flow, get_run_logger, pause_flow_run, suspend_flow_run
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from prefect.runtime import deployment
from pydantic import Field

from compactlm.registry import store
from compactlm.registry.review import seconds_left, version_to_review
from compactlm.registry.review_context import review_context
from compactlm.state import configure_environment
from tasks.review import (
    apply_decision,
    close_if_late,
    honour_mlflow_decision,
    reject_unanswered,
    sweep_reviews,
    trigger_review_deployment,
)

ApprovalMode = Literal["wait", "auto", "defer", "handoff"]
REVIEW_DEPLOYMENT = "promote/review"


class ReviewDecision(RunInput):
    """The form a reviewer fills in the Prefect UI to resume the flow (``approved`` and ``reviewer`` required)."""

    approved: bool
    reviewer: str = Field(min_length=1, description="Who decides (recorded as approval.reviewer)")
    comment: str = ""


def _form(model_name: str, version: str, context_markdown: str, timeout_s: int) -> type[ReviewDecision]:
    deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
    return ReviewDecision.with_initial_data(
        description=f"## Review `{model_name}` version {version}\n\n{context_markdown}\n\n"
                    "Set **approved** to true to move `champion` to this version, false to reject it.\n\n"
                    f"**Answer by {deadline:%Y-%m-%d %H:%M} UTC** ({timeout_s} s from now; "
                    "`registry.approval_timeout_s`): a review left unanswered is rejected, never approved.")


def _timed_out(model_name: str, version: str, timeout_s: int) -> dict[str, object]:
    """A decision set in the MLflow UI meanwhile wins; otherwise the silence is a rejection."""
    decided = honour_mlflow_decision(model_name, version)
    return decided if decided is not None else reject_unanswered(model_name, version, timeout_s)


def _ask_reviewer(model_name: str, version: str, form: type[ReviewDecision], timeout_s: int,
                  suspend: bool) -> dict[str, object]:
    """Wait for the reviewer's form (suspended: the process exits; paused: in-process) and apply the decision.

    No answer within ``timeout_s`` is a rejection (unless a decision was set in the MLflow UI meanwhile).
    """
    try:
        if suspend:
            decision = suspend_flow_run(wait_for_input=form, timeout=timeout_s, key=f"review-{version}")
        else:
            decision = pause_flow_run(wait_for_input=form, timeout=timeout_s, poll_interval=2)
    except FlowPauseTimeout:
        return _timed_out(model_name, version, timeout_s)
    answer = f"{'approved' if decision.approved else 'rejected'} by {decision.reviewer}"
    closed = close_if_late(model_name, version, answer)
    if closed is not None:  # past review.deadline, or closed meanwhile (the sweep's timeout, an MLflow tag)
        get_run_logger().warning("The review of version %s was already closed (%s by %s): the form answer (%s) "
                                 "is not applied.", version, closed["status"], closed["reviewer"], answer)
        return closed
    return apply_decision(model_name, version, decision.approved, decision.reviewer, decision.comment,
                          "prefect-form")


def request_review(model_name: str, version: str, mode: ApprovalMode, timeout_s: int,
                   context_markdown: str = "") -> dict[str, object]:
    """Obtain (or schedule) a decision for ``version``; must be called inside a flow run.

    ``auto`` approves at once (demo, CI); ``wait`` pauses this flow run for the form (or the
    timeout, which rejects); ``defer`` leaves the review pending (promote flow, MLflow tag or
    ``compactlm registry promote``); ``handoff`` starts the ``promote/review`` deployment, which
    suspends until a reviewer answers, and returns immediately.
    """
    logger = get_run_logger()
    if mode == "auto":
        return apply_decision(model_name, version, True, "auto-approve", "approved by the auto-approve parameter",
                              "auto")
    if mode == "defer":
        logger.info("Review deferred: version %s stays 'challenger' with approval=pending. Approve it with the "
                    "promote flow, the MLflow tag approval=approved, or `compactlm registry promote`.", version)
        return {"version": version, "status": "pending", "approved": False}
    if mode == "handoff":
        run_id = trigger_review_deployment(REVIEW_DEPLOYMENT, model_name, version)
        if run_id is None:
            logger.warning("No %s deployment: the review of version %s stays pending.", REVIEW_DEPLOYMENT, version)
            return {"version": version, "status": "pending", "approved": False}
        return {"version": version, "status": "pending", "approved": False, "review_flow_run": run_id}
    return _ask_reviewer(model_name, version, _form(model_name, version, context_markdown, timeout_s), timeout_s,
                         suspend=False)


@flow(name="promote", persist_result=True)
def promote(model_name: str = "compactlm-support-chat", version: str | int | None = None,
            approval: Literal["suspend", "wait", "auto"] = "suspend", timeout_s: int | None = None,
            home: str = ".compactlm") -> dict[str, object]:
    """Review one registered version (default: the current ``challenger``) and promote it if approved.

    A decision already set as an MLflow tag is applied without asking. ``suspend`` needs a
    deployment (the process exits while waiting); without one the flow pauses in-process instead.
    ``timeout_s`` None waits what is left of the timeout the review was opened with (its
    ``review.timeout_s`` tag, i.e. ``registry.approval_timeout_s``), so the form, this run and the
    review sweep keep one deadline.
    """
    logger = get_run_logger()
    store.setup_tracking(configure_environment(home), "compactlm-retrain")
    version = version_to_review(model_name, version)
    decided = honour_mlflow_decision(model_name, version)
    if decided is not None:
        logger.info("Applied the decision set in MLflow on version %s: %s.", version, decided["status"])
        return decided
    if approval == "auto":
        return apply_decision(model_name, version, True, "auto-approve", "approved by the auto parameter", "auto")
    if timeout_s is None:
        _, timeout_s = seconds_left(model_name, version)
        if timeout_s <= 0:
            logger.info("The review of version %s is past its deadline: rejecting it.", version)
            return _timed_out(model_name, version, seconds_left(model_name, version)[0])
    context = review_context(model_name, version)
    create_markdown_artifact(key=f"review-v{version}", markdown=f"## Review of `{model_name}` version {version}\n\n"
                             f"{context}", description=f"What the reviewer of version {version} sees")
    form = _form(model_name, version, context, timeout_s)
    suspend = approval == "suspend" and bool(deployment.id)
    if approval == "suspend" and not suspend:
        logger.info("Not running from a deployment: pausing in-process instead of suspending.")
    return _ask_reviewer(model_name, version, form, timeout_s, suspend)


@flow(name="review-sweep")
def review_sweep(model_name: str = "compactlm-support-chat", timeout_s: int | None = None,
                 home: str = ".compactlm") -> list[dict[str, object]]:
    """Apply decisions set as MLflow tags and reject reviews whose timeout has passed.

    ``timeout_s`` None (as deployed): each review's own timeout (``registry.approval_timeout_s`` when it
    was opened); a number overrides it for every pending review.
    """
    store.setup_tracking(configure_environment(home), "compactlm-retrain")
    return sweep_reviews(model_name, timeout_s)
