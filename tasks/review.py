"""Review tasks: a reviewer's decision applied, MLflow-tag decisions honoured, timeouts swept, the review handed off.

Each reads or writes the registry's current state, so none is cached (``NO_CACHE``): a suspended review
run starts again from the top when it is resumed, and a cached "no decision in MLflow" from before the
suspension would hide a tag a reviewer set in the MLflow UI meanwhile.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from compactlm.registry import review
from compactlm.registry.review_context import flow_run_link
from tasks.common import IO_RETRIES


@task(name="apply-decision", cache_policy=NO_CACHE, **IO_RETRIES)
def apply_decision(model_name: str, version: str, approved: bool, reviewer: str, comment: str,
                   source: str) -> dict[str, object]:
    """Record the reviewer's decision on the version; ``champion`` moves only for an approved, promotable version."""
    decision = review.apply_decision(model_name, version, approved, reviewer, comment, source)
    create_markdown_artifact(key="review-decision", description=decision.verdict,
                             markdown=decision.to_markdown(model_name))
    return decision.to_dict()


@task(name="reject-unanswered", cache_policy=NO_CACHE, **IO_RETRIES)
def reject_unanswered(model_name: str, version: str, timeout_s: int) -> dict[str, object]:
    """Nobody answered within the timeout: record the review as rejected (``champion`` stays)."""
    decision = review.reject_unanswered(model_name, version, timeout_s)
    create_markdown_artifact(key="review-decision", description=decision.verdict,
                             markdown=decision.to_markdown(model_name))
    return decision.to_dict()


@task(name="honour-mlflow-decision", cache_policy=NO_CACHE, **IO_RETRIES)
def honour_mlflow_decision(model_name: str, version: str) -> dict[str, object] | None:
    """Apply a decision a reviewer set as a tag in the MLflow UI (None when there is none)."""
    decision = review.honour_tag_decision(model_name, version)
    if decision is None:
        return None
    note = "Decided by the `approval` tag set in MLflow; a Prefect form answer, if any, was not applied."
    create_markdown_artifact(key="review-decision", description=decision.verdict,
                             markdown=f"{decision.to_markdown(model_name)}\n\n{note}")
    return decision.to_dict()


@task(name="close-if-late", cache_policy=NO_CACHE, **IO_RETRIES)
def close_if_late(model_name: str, version: str, answer: str) -> dict[str, object] | None:
    """None while the review is open; else the decision that closed it (a timeout past the deadline), as a dict.

    ``answer`` describes the form answer that is then not applied (it goes into the run's artifact).
    """
    decision = review.close_if_late(model_name, version)
    if decision is None:
        return None
    create_markdown_artifact(key="review-decision", description=f"late answer not applied; {decision.verdict}",
                             markdown=decision.to_markdown(model_name) + f"\n\nThe review was already closed when "
                             f"this answer came ({answer}): it was not applied.")
    return decision.to_dict()


@task(name="sweep-reviews", cache_policy=NO_CACHE, **IO_RETRIES)
def sweep_reviews(model_name: str, timeout_s: int | None) -> list[dict[str, object]]:
    """Apply MLflow-tag decisions and reject reviews that waited longer than the timeout.

    Each decision is logged, and the suspended ``promote`` run still waiting on a decided version is closed
    (Cancelled, naming the decision) so the UI no longer offers a Resume for a review that is over.
    """
    logger = get_run_logger()
    decisions = review.sweep(model_name, timeout_s)
    for d in decisions:
        logger.info("%s version %s: %s by %s (%s)", model_name, d.version, d.status, d.reviewer, d.source)
    if decisions:
        create_markdown_artifact(key="review-sweep", description=f"{len(decisions)} decision(s) applied",
                                 markdown=review.decisions_table(decisions))
        try:  # best effort: the decision is already recorded in MLflow, which is what governs champion
            for name in _close_suspended_reviews(model_name, {d.version: d.status for d in decisions}):
                logger.info("closed the suspended review run %s", name)
        except Exception as error:  # noqa: BLE001 - a server hiccup must not fail the sweep after it decided
            logger.warning("could not close the suspended review runs: %s", error)
    return [d.to_dict() for d in decisions]


def _close_suspended_reviews(model_name: str, decided: dict[str, str]) -> list[str]:
    """Cancel the paused ``promote`` runs of ``model_name`` whose version was decided; their names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    closed = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["promote"])),
                                     flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                                         type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
        for run in runs:
            version = str(run.parameters.get("version"))
            if run.parameters.get("model_name", model_name) == model_name and version in decided:
                client.set_flow_run_state(run.id, Cancelled(
                    message=f"Review closed: version {version} was {decided[version]} (review-sweep)"), force=True)
                closed.append(run.name)
    return closed


@task(name="trigger-review", cache_policy=NO_CACHE, **IO_RETRIES)
def trigger_review_deployment(deployment: str, model_name: str, version: str) -> str | None:
    """Start the review deployment for a version without waiting; None when the deployment does not exist."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        # Not a subflow: a subflow cannot suspend, and the review must outlive this run.
        # No timeout_s: the review run waits what is left of the one the review was opened with (it starts
        # some seconds later; a full timeout of its own would accept answers past review.deadline).
        run = run_deployment(deployment, timeout=0, as_subflow=False, parameters={
            "model_name": model_name, "version": version, "approval": "suspend"})
    except ObjectNotFound:
        return None
    link = flow_run_link(str(run.id))
    create_markdown_artifact(key=f"review-run-v{version}", description=f"The review of version {version}",
                             markdown=f"The review of `{model_name}` version {version} waits in [{run.name}]({link})"
                                      f" (suspended until a reviewer answers the form): {link}")
    return str(run.id)
