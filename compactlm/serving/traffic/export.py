"""Corrected answers as instruction/response rows with their provenance: the next dataset's raw material.

A row is made for each feedback with a non-blank ``corrected_answer`` (the latest one per request id):
``instruction`` is the prompt the feedback carried, else the served request's stored prompt text (the
last user message of a chat, or the raw prompt of a completion; stored only with
``serve.redact_prompts: false``); feedback with neither is skipped and counted. ``intent`` is
``feedback`` (the instruction schema needs one; map another column with ``data.columns.intent``).
The rows are raw: the ingest cleans them, scrubs PII, validates and versions them like any source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from compactlm.errors import CompactLMError
from compactlm.fileio import atomic_open
from compactlm.serving.traffic.store import TrafficStore, TrafficStoreError, masked_url

FEEDBACK_INTENT = "feedback"
ROW_COLUMNS = ("instruction", "response", "intent", "source", "request_id", "model_name", "model_version",
               "feedback_id", "created_at", "reason")
PROVENANCE_COLUMNS = ROW_COLUMNS[3:]  # carried through the ingest next to the schema's columns


@dataclass(frozen=True)
class Corrections:
    """The rows, and how many corrected answers had no prompt text to pair with (skipped)."""

    rows: list[dict]
    skipped_without_prompt: int


def parse_since(text: str) -> datetime:
    """An ISO 8601 date or time as a UTC datetime (a time without a zone is UTC; ``Z`` accepted).

    Raises:
        CompactLMError: not an ISO 8601 date or time (the message names the value).
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CompactLMError(f"--since {text!r} is not an ISO 8601 date or time; expected e.g. 2026-12-01 or "
                             f"2026-12-01T08:00:00Z") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


def correction_rows(store: TrafficStore, since: datetime | None = None) -> Corrections:
    """Instruction/response rows from the corrected answers in ``store`` (oldest feedback first).

    Args:
        store: the traffic store.
        since: only feedback created at or after this time.

    Raises:
        SQLAlchemyError: the database is unreachable or lacks the tables.
    """
    latest: dict[str, dict] = {}
    for feedback in store.feedback(since):
        if _text(feedback["corrected_answer"]) is not None:
            latest.pop(feedback["request_id"], None)  # re-inserted: the order stays by latest feedback
            latest[feedback["request_id"]] = feedback
    rows, skipped = [], 0
    for fb in latest.values():
        instruction = _text(fb["prompt"]) or _text(fb["request_prompt_text"])
        if instruction is None:
            skipped += 1
            continue
        rows.append({"instruction": instruction, "response": fb["corrected_answer"], "intent": FEEDBACK_INTENT,
                     "source": "feedback", "request_id": fb["request_id"], "model_name": fb["request_model_name"],
                     "model_version": fb["request_model_version"], "feedback_id": fb["id"],
                     "created_at": _iso(fb["created_at"]), "reason": fb["reason"]})
    return Corrections(rows, skipped)


def write_rows(rows: list[dict], out: str | Path) -> Path:
    """Write rows as JSON lines, atomically (a temporary file beside ``out``, renamed over it)."""
    out = Path(out)
    with atomic_open(out) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out


def read_corrections(url: str, since: datetime | None = None) -> Corrections:
    """Open the store at ``url`` (existing only: nothing is created) and read its corrections.

    Raises:
        TrafficStoreError: the store is missing, unreachable or has no traffic tables (one line, password
            masked).
    """
    store = TrafficStore.open(url, create=False)
    try:
        return correction_rows(store, since)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        raise TrafficStoreError(f"traffic store {store.display_url}: cannot read feedback ({detail})") from None
    finally:
        store.close()


def export_corrections(url: str, out: str | Path, since: datetime | None = None) -> dict:
    """``compactlm feedback export``: the corrections of the store at ``url`` as JSON lines in ``out``.

    The file is written atomically (a temporary file renamed over ``out``), also when there are no rows.

    Returns:
        ``{"path", "rows", "skipped_without_prompt", "store"}`` (the store's URL with its password masked).

    Raises:
        TrafficStoreError: see ``read_corrections``.
    """
    corrections = read_corrections(url, since)
    path = write_rows(corrections.rows, out)
    return {"path": str(path), "rows": len(corrections.rows),
            "skipped_without_prompt": corrections.skipped_without_prompt, "store": masked_url(url)}
