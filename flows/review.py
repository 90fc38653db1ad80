"""The human review step: a typed form in the Prefect UI, auto-approval for demos and CI, or deferral.

Used by the retrain flow and by the promote flow. The decision is recorded on the registry version
either way; a reviewer who does not answer within the timeout counts as a rejection, never an approval.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger, pause_flow_run
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput

from tasks.registry import apply_decision

ApprovalMode = Literal["wait", "auto", "defer"]


class ReviewDecision(RunInput):
    """The form a reviewer fills in the Prefect UI to resume the flow."""

    approved: bool = False
    reviewer: str = ""
    comment: str = ""


def request_review(model_name: str, version: str, mode: ApprovalMode, timeout_s: int,
                   context_markdown: str = "") -> dict[str, object]:
    """Obtain a decision for ``version``, apply it, and return it.

    ``wait`` pauses the flow run until a reviewer submits the form (or the timeout, which rejects);
    ``auto`` approves at once (demo, CI); ``defer`` leaves the version as ``challenger`` for a later
    ``promote`` run. Must be called inside a flow run.
    """
    logger = get_run_logger()
    if mode == "defer":
        logger.info("Review deferred: version %s stays 'challenger'; promote it with the promote flow "
                    "or `compactlm registry promote --version %s`.", version, version)
        return {"status": "deferred", "approved": False, "reviewer": "", "comment": ""}
    if mode == "auto":
        decision = ReviewDecision(approved=True, reviewer="auto-approve",
                                  comment="approved by the auto-approve parameter")
    else:
        form = ReviewDecision.with_initial_data(
            description=f"## Review `{model_name}` version {version}\n\n{context_markdown}\n\n"
                        "Tick **approved** to move `champion` to this version; leave it unticked to reject.",
            approved=False)
        try:
            decision = pause_flow_run(wait_for_input=form, timeout=timeout_s, poll_interval=2)
        except FlowPauseTimeout:
            decision = ReviewDecision(approved=False, reviewer="timeout",
                                      comment=f"no decision within {timeout_s} s: rejected by default")
    apply_decision(model_name, version, decision.approved, decision.reviewer, decision.comment)
    status = "approved" if decision.approved else "rejected"
    logger.info("Version %s %s by %s.", version, status, decision.reviewer or "an anonymous reviewer")
    return {"status": status, "approved": decision.approved, "reviewer": decision.reviewer, "comment": decision.comment}


@flow(name="promote")
def promote(model_name: str = "compactlm-support-chat", version: str | None = None,
            approval: ApprovalMode = "wait", timeout_s: int = 3600, home: str = ".compactlm") -> dict[str, object]:
    """Review a registered version (default: the current ``challenger``) and promote it if approved."""
    from compactlm.errors import CompactLMError
    from compactlm.registry import registry
    from compactlm.state import configure_environment

    paths = configure_environment(home)
    registry.setup_tracking(paths, "compactlm-retrain")
    version = version or registry.alias_version(model_name, registry.CHALLENGER)
    if version is None:
        raise CompactLMError(f"registered model {model_name!r} has no 'challenger' version to review")
    known = {v.version for v in registry.list_versions(model_name)}
    if str(version) not in known:
        raise CompactLMError(f"registered model {model_name!r} has no version {version}")
    decision = request_review(model_name, str(version), approval, timeout_s)
    return {"model": model_name, "version": str(version), **decision,
            "champion": registry.alias_version(model_name, registry.CHAMPION)}
