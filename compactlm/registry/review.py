"""Review governance on the MLflow registry: who may become champion, decisions, timeouts, rollback.

State lives in model-version tags, so the MLflow UI shows it and a reviewer can act there:

* ``approval``: ``pending`` (review requested), ``approved`` or ``rejected``. A reviewer may set
  ``approved``/``rejected`` by hand in the MLflow UI (optionally ``approval.reviewer`` and
  ``approval.comment``); the promote and sweep flows honour it.
* ``approval.reviewer``, ``approval.time``, ``approval.comment``, ``approval.source`` (prefect-form,
  mlflow-tag, cli, auto, timeout) and ``approval.applied_at`` once the decision has been acted on.
* ``gate_verdict`` and ``smoke_test``: a version whose gate failed or whose smoke test did not pass
  can never become champion, whatever a reviewer says.
* ``promoted_at`` (microsecond ISO time) and ``rolled_back_at``: the champion history for rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mlflow import MlflowClient

from compactlm.errors import CompactLMError
from compactlm.registry.store import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    list_versions,
    retire_alias,
    set_alias,
    tag_version,
)

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _tags(model_name: str, version: str) -> dict[str, str]:
    return dict(MlflowClient().get_model_version(model_name, str(version)).tags or {})


def promotable(tags: dict[str, str]) -> tuple[bool, str]:
    """Whether a version may become champion at all, and why not.

    Args:
        tags: the version's registry tags (``gate_verdict`` and ``smoke_test`` must both be ``passed``).

    Returns:
        ``(ok, reason)``: the reason is one clause for a message.
    """
    if tags.get("gate_verdict") != "passed":
        return False, f"its gate verdict is {tags.get('gate_verdict', 'missing')!r}, not 'passed'"
    if tags.get("smoke_test") != "passed":
        return False, f"its smoke test is {tags.get('smoke_test', 'missing')!r}, not 'passed'"
    return True, "gate passed and smoke test passed"


def version_to_review(model_name: str, version: str | int | None = None) -> str:
    """The version a review is about: ``version`` when given, else the current ``challenger``.

    Raises:
        CompactLMError: no such version, or no challenger when none was named.
    """
    chosen = str(version) if version is not None else alias_version(model_name, CHALLENGER)
    if chosen is None:
        raise CompactLMError(f"registered model {model_name!r} has no 'challenger' version to review")
    if chosen not in {v.version for v in list_versions(model_name)}:
        raise CompactLMError(f"registered model {model_name!r} has no version {chosen}")
    return chosen


DEFAULT_TIMEOUT_S = 86400  # a review requested without a timeout (older versions): one day


def request_review(model_name: str, version: str, timeout_s: int = DEFAULT_TIMEOUT_S) -> None:
    """Mark a version as waiting for a reviewer (starts the review timeout clock).

    Sets ``approval=pending``, ``review.requested_at`` (UTC ISO time, microseconds), ``review.timeout_s``
    and ``review.deadline`` (UTC ISO time) on the version. The timeout travels with the version, so the
    review form, the suspended review run and the sweep all use the one value the review was opened with
    (``registry.approval_timeout_s``).

    Args:
        model_name: the registered model.
        version: the version to review.
        timeout_s: seconds a reviewer has to answer; no answer by then is a rejection.

    Raises:
        CompactLMError: ``timeout_s`` below 1.
    """
    if int(timeout_s) < 1:
        raise CompactLMError(f"review timeout must be >= 1 s, got {timeout_s}")
    now = datetime.now(UTC)
    tag_version(model_name, version, {
        "approval": PENDING, "review.requested_at": now.isoformat(timespec="microseconds"),
        "review.timeout_s": str(int(timeout_s)),
        "review.deadline": (now + timedelta(seconds=int(timeout_s))).isoformat(timespec="seconds")})


def review_timeout(tags: dict[str, str], default_s: int | None = None) -> int:
    """The timeout (seconds) a version's review was opened with: its ``review.timeout_s`` tag.

    Args:
        tags: the version's registry tags.
        default_s: for a review opened without one (older versions); None means ``DEFAULT_TIMEOUT_S``.
    """
    try:
        return int(tags["review.timeout_s"])
    except (KeyError, ValueError):
        return int(default_s) if default_s is not None else DEFAULT_TIMEOUT_S


def _requested_at(tags: dict[str, str]) -> datetime | None:
    if "review.requested_at" not in tags:
        return None
    requested = datetime.fromisoformat(tags["review.requested_at"])
    # typed by hand in the MLflow UI: read as UTC, like every time here
    return requested.replace(tzinfo=UTC) if requested.tzinfo is None else requested


def seconds_left(model_name: str, version: str, default_s: int | None = None,
                 now: datetime | None = None) -> tuple[int, int]:
    """``(timeout_s, seconds left)`` of a version's open review (left is 0 once the deadline has passed).

    Args:
        model_name: the registered model.
        version: the version under review.
        default_s: the timeout of a review opened without one (see ``review_timeout``).
        now: the current time, timezone-aware (default: now in UTC).
    """
    tags = _tags(model_name, version)
    timeout_s = review_timeout(tags, default_s)
    requested = _requested_at(tags)
    if requested is None:
        return timeout_s, timeout_s
    waited = ((now or datetime.now(UTC)) - requested).total_seconds()
    return timeout_s, max(0, int(timeout_s - waited))


@dataclass
class Decision:
    """What happened to one version's review.

    Attributes:
        version: the reviewed version.
        status: ``approved``, ``rejected`` or ``refused`` (approved by a reviewer, but not promotable).
        reviewer: who decided (``timeout`` for a review that timed out).
        comment: the reviewer's comment; a refusal appends why the version could not be promoted.
        source: where the decision came from (``prefect-form``, ``mlflow-tag``, ``cli``, ``auto``, ``timeout``).
        champion: the version ``champion`` points to after the decision (None: no champion).
    """

    version: str
    status: str  # approved | rejected | refused (approved by a reviewer, but not promotable)
    reviewer: str
    comment: str
    source: str
    champion: str | None

    def to_dict(self) -> dict[str, object]:
        """The decision as a plain dict, with ``approved`` True only for an approval that moved champion."""
        return {"version": self.version, "status": self.status, "approved": self.status == APPROVED,
                "reviewer": self.reviewer, "comment": self.comment, "source": self.source, "champion": self.champion}

    @property
    def verdict(self) -> str:
        """One line saying what the decision did to ``champion``."""
        return {APPROVED: f"approved by {self.reviewer}; `champion` moved to v{self.version}",
                REJECTED: f"rejected by {self.reviewer}; `champion` unchanged",
                "refused": f"approved by {self.reviewer} but refused: {self.comment}"}[self.status]

    def to_markdown(self, model_name: str) -> str:
        """The decision as a short report: verdict, the reviewer's comment and where it came from."""
        return (f"# Review of `{model_name}` v{self.version}\n\n{self.verdict}.\n\n"
                f"> {self.comment or '(no comment)'}\n\nSource: {self.source}.")


def decisions_table(decisions: list[Decision]) -> str:
    """A markdown table of decisions (version, status, reviewer, source), e.g. what a review sweep applied."""
    rows = "\n".join(f"| {d.version} | {d.status} | {d.reviewer} | {d.source} |" for d in decisions)
    return "| version | status | reviewer | source |\n|---|---|---|---|\n" + rows


def apply_decision(model_name: str, version: str, approved: bool, reviewer: str, comment: str,
                   source: str) -> Decision:
    """Record a decision on the version and act on it: only an approval of a promotable version moves champion.

    An approval of a version that failed its gate or smoke test is recorded as ``rejected`` with the
    reason appended to the comment (status ``refused``), so the registry never shows an approved
    version that could not be promoted.

    Args:
        model_name: the registered model.
        version: the version decided on.
        approved: the reviewer's decision.
        reviewer: who decided (empty: ``unknown``).
        comment: why.
        source: where the decision came from (recorded as ``approval.source``).

    Returns:
        The decision, with the champion after it. Either way the ``challenger`` alias leaves the version.
    """
    status = APPROVED if approved else REJECTED
    if approved:
        ok, why = promotable(_tags(model_name, version))
        if not ok:
            status = "refused"
            comment = f"{comment} [not promoted: {why}]".strip()
    tag_version(model_name, version, {
        "approval": APPROVED if status == APPROVED else REJECTED,
        "approval.reviewer": reviewer or "unknown",
        "approval.time": _now(),
        "approval.comment": comment or "",
        "approval.source": source,
        "approval.applied_at": _now(),
    })
    if status == APPROVED:
        promote(model_name, version)
    # decided: no longer the candidate waiting for review (a later review of "the challenger" must not find it)
    retire_alias(model_name, CHALLENGER, version)
    return Decision(version, status, reviewer, comment, source, alias_version(model_name, CHAMPION))


def promote(model_name: str, version: str) -> str | None:
    """Move ``champion`` to a promotable version and record it in the history.

    Tags the version ``promoted_at`` (and ``previous_champion``) and clears an earlier ``rolled_back_at``.
    Promoting the current champion changes nothing.

    Returns:
        The champion before the move (None when there was none).

    Raises:
        CompactLMError: the version's gate did not pass or its smoke test did not pass.
    """
    tags = _tags(model_name, version)
    ok, why = promotable(tags)
    if not ok:
        raise CompactLMError(f"{model_name} version {version} cannot become champion: {why}")
    previous = alias_version(model_name, CHAMPION)
    if previous == str(version):
        return previous
    client = MlflowClient()
    if "rolled_back_at" in tags:
        client.delete_model_version_tag(model_name, str(version), "rolled_back_at")
    history = {"promoted_at": _now()}
    if previous is not None:
        history["previous_champion"] = previous
    tag_version(model_name, version, history)
    set_alias(model_name, CHAMPION, version)
    return previous


def tag_decision(tags: dict[str, str]) -> bool | None:
    """A decision a reviewer typed into the MLflow UI and nobody has acted on yet.

    Returns:
        True (``approval=approved``), False (``rejected``), or None when there is none or it was applied.
    """
    if "approval.applied_at" in tags:
        return None
    value = tags.get("approval", "").strip().lower()
    return {APPROVED: True, REJECTED: False}.get(value)


def honour_tag_decision(model_name: str, version: str) -> Decision | None:
    """Apply a decision set as an MLflow tag on the version, if there is an unapplied one."""
    tags = _tags(model_name, version)
    decision = tag_decision(tags)
    if decision is None:
        return None
    return apply_decision(model_name, version, decision, tags.get("approval.reviewer", "mlflow-ui"),
                          tags.get("approval.comment", ""), "mlflow-tag")


def reject_unanswered(model_name: str, version: str, timeout_s: int) -> Decision:
    """Record that nobody answered the review of ``version`` within ``timeout_s`` seconds: a rejection."""
    return apply_decision(model_name, version, False, "timeout",
                          f"no decision within {timeout_s} s: rejected by default", "timeout")


def close_if_late(model_name: str, version: str, now: datetime | None = None) -> Decision | None:
    """The decision that already closed a version's open review, or the timeout rejection once its deadline passed.

    A reviewer's answer that arrives after either must not be applied: the suspended review run can be
    resumed a few seconds past ``review.deadline`` (it started after the review opened), by which time the
    sweep may have recorded the rejection.

    Args:
        model_name: the registered model.
        version: the version under review.
        now: the current time, timezone-aware (default: now in UTC).

    Returns:
        None while the review is open and within its deadline (apply the answer); else the decision
        recorded on the version (a past-deadline review is rejected here, source ``timeout``).
    """
    tags = _tags(model_name, version)
    requested = _requested_at(tags)
    if requested is None:
        return None  # no review was opened with a deadline (e.g. the promote flow run by hand)
    applied = tags.get("approval.applied_at")
    if tags.get("approval") in (APPROVED, REJECTED) and applied and datetime.fromisoformat(applied) >= requested:
        return Decision(version, tags["approval"], tags.get("approval.reviewer", ""), tags.get("approval.comment", ""),
                        tags.get("approval.source", ""), alias_version(model_name, CHAMPION))
    timeout = review_timeout(tags)
    if ((now or datetime.now(UTC)) - requested).total_seconds() >= timeout:
        return reject_unanswered(model_name, version, timeout)
    return None


def sweep(model_name: str, timeout_s: int | None = None, now: datetime | None = None) -> list[Decision]:
    """Apply unapplied MLflow-tag decisions and reject pending reviews whose timeout has passed.

    A review that is never answered therefore always ends as a rejection, never an approval, even
    when the flow that asked for it has been suspended and is gone (a suspended run whose timeout
    passes is failed by the Prefect server without running any of its code).

    Args:
        model_name: the registered model.
        timeout_s: None (the deployed sweep): each review uses the timeout it was opened with (its
            ``review.timeout_s`` tag; ``DEFAULT_TIMEOUT_S`` for reviews opened without one). A number
            overrides it for every pending review (``compactlm registry sweep --timeout``).
        now: the current time, timezone-aware (default: now in UTC; tests pass their own).

    Returns:
        The decisions applied, oldest version first.
    """
    now = now or datetime.now(UTC)
    decisions = []
    for info in sorted(list_versions(model_name), key=lambda v: int(v.version)):
        tags = info.tags
        if tag_decision(tags) is not None:
            decisions.append(honour_tag_decision(model_name, info.version))
        elif tags.get("approval") == PENDING and (requested := _requested_at(tags)) is not None:
            timeout = int(timeout_s) if timeout_s is not None else review_timeout(tags)
            if (now - requested).total_seconds() >= timeout:
                decisions.append(reject_unanswered(model_name, info.version, timeout))
    return decisions


def champion_history(model_name: str) -> list[str]:
    """Versions that were champion and were not rolled back, oldest promotion first."""
    promoted = [(v.tags["promoted_at"], v.version) for v in list_versions(model_name)
                if "promoted_at" in v.tags and "rolled_back_at" not in v.tags]
    return [version for _, version in sorted(promoted)]


def rollback(model_name: str, to_version: str | None = None, reason: str = "") -> tuple[str, str]:
    """Move ``champion`` back to the previous champion (or ``to_version``); returns ``(from, to)``.

    The demoted version is tagged ``rolled_back_at`` so a second rollback goes one step further back.

    Args:
        model_name: the registered model.
        to_version: the version to restore; None: the latest earlier champion not rolled back.
        reason: recorded on the demoted version as ``rollback.reason``.

    Raises:
        CompactLMError: no champion, no earlier champion, an unknown ``to_version``, or a target whose
            gate or smoke test did not pass.
    """
    current = alias_version(model_name, CHAMPION)
    if current is None:
        raise CompactLMError(f"registered model {model_name!r} has no champion to roll back")
    history = [v for v in champion_history(model_name) if v != current]
    target = to_version or (history[-1] if history else None)
    if target is None:
        raise CompactLMError(f"{model_name} has no previous champion before version {current}")
    if str(target) not in {v.version for v in list_versions(model_name)}:
        raise CompactLMError(f"registered model {model_name!r} has no version {target}")
    ok, why = promotable(_tags(model_name, target))
    if not ok:
        raise CompactLMError(f"cannot roll back to version {target}: {why}")
    tag_version(model_name, current, {"rolled_back_at": _now(), "rollback.reason": reason or "manual rollback"})
    set_alias(model_name, CHAMPION, target)
    return current, str(target)

