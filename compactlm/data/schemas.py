"""The canonical schema of each task shape, and the mapping of a user's columns onto it.

A shape says which columns a source must provide (after ``data.columns`` renames them), which are
optional (with their default), which text columns are cleaned and length-checked, which column is the
label (stratified split, label consistency, distribution checks), which text identifies near-duplicate
rows (deduplication and the leak-free split), and which Great Expectations suite validates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from compactlm.errors import DataError

AUGMENT_METHODS = ("synonym", "insert", "swap", "delete", "case", "typo")
_ATTRIBUTES = {"age_band": "unknown", "region": "unknown", "customer_tier": "unknown", "resolved": None}


@dataclass(frozen=True)
class TaskSchema:
    """One task shape: its columns, cleaning targets, label, grouping text and quality suite.

    ``text_columns`` maps each cleaned text column to its length bound: ``short`` (``data.min_chars``
    to ``data.max_chars``) or ``document`` (up to ``data.max_document_chars``).
    """

    name: str
    required: tuple[str, ...]
    optional: dict[str, Any]
    text_columns: dict[str, str]
    label: str | None
    key_column: str  # near-duplicate keys of this text decide duplicates, label conflicts and split groups
    augment_column: str | None
    suite: str
    prompt: str | None = None  # instruction-format conversion: the user turn, formatted from the row
    completion: str | None = None  # ...and the column holding the assistant turn
    output_columns: tuple[str, ...] = field(default=())

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Every canonical column a source may provide (what ``data.columns`` may be keyed by)."""
        return (*self.required, *self.optional)


SCHEMAS: dict[str, TaskSchema] = {
    "instruction": TaskSchema(
        name="instruction", required=("instruction", "response", "intent"),
        optional={"id": None, "category": "general", **_ATTRIBUTES},
        text_columns={"instruction": "short", "response": "short"}, label="intent", key_column="instruction",
        augment_column="instruction", suite="support_instructions", prompt="{instruction}", completion="response",
        output_columns=("id", "instruction", "response", "category", "intent", "age_band", "region",
                        "customer_tier", "resolved")),
    "chat": TaskSchema(
        name="chat", required=("messages",),
        optional={"id": None, "intent": "general", "category": "general", **_ATTRIBUTES},
        text_columns={"instruction": "short", "response": "short"}, label="intent", key_column="conversation_id",
        augment_column="instruction", suite="chat_turns", prompt="{instruction}", completion="response",
        output_columns=("id", "conversation_id", "turn", "context", "instruction", "response", "category",
                        "intent", "age_band", "region", "customer_tier", "resolved")),
    "classification": TaskSchema(
        name="classification", required=("text", "label"), optional={"id": None},
        text_columns={"text": "short"}, label="label", key_column="text", augment_column="text",
        suite="text_classification", prompt="Classify the following text.\n{text}", completion="label",
        output_columns=("id", "text", "label")),
    "summarization": TaskSchema(
        name="summarization", required=("document", "summary"), optional={"id": None, "category": "general"},
        text_columns={"document": "document", "summary": "short"}, label="category", key_column="document",
        augment_column=None, suite="summarization", prompt="Summarize the following document.\n{document}",
        completion="summary", output_columns=("id", "document", "summary", "category")),
    "pretraining": TaskSchema(
        name="pretraining", required=("text",), optional={"id": None, "title": ""},
        text_columns={"text": "corpus"}, label=None, key_column="text", augment_column=None,
        suite="pretraining_corpus", output_columns=("id", "doc_id", "chunk", "title", "text", "n_words")),
}


def fold_columns(frame: pd.DataFrame, schema: TaskSchema, columns: dict[str, str] | None = None,
                 keep: tuple[str, ...] = ()) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rename columns that differ from a wanted name only in case or surrounding spaces (`` Text `` -> ``text``).

    A wanted name is a canonical column of ``schema`` (unless ``data.columns`` maps it), a source column
    ``data.columns`` names, or one of ``keep``. It is matched only when it is missing and exactly one
    column folds onto it (two candidates, such as ``Text`` and ``TEXT``, are left for the missing-column
    error to list).

    Args:
        frame: the rows as read.
        schema: the task shape.
        columns: ``data.columns``: canonical name -> the source's column name.
        keep: extra columns the run carries through (bias attributes, ``data.extra_columns``...).

    Returns:
        ``(frame, mapped)``: the frame with renamed columns, and each renamed column -> its new name.
    """
    columns = columns or {}
    wanted = [c for c in schema.input_columns if c not in columns] + list(columns.values()) + list(keep)
    present = set(map(str, frame.columns))
    renames: dict[str, str] = {}
    for name in dict.fromkeys(wanted):
        if name in present:
            continue
        key = str(name).strip().casefold()
        candidates = [c for c in map(str, frame.columns) if c.strip().casefold() == key and c not in wanted]
        if len(candidates) == 1 and candidates[0] not in renames:
            renames[candidates[0]] = name
    return (frame.rename(columns=renames) if renames else frame), renames


def map_columns(frame: pd.DataFrame, columns: dict[str, str], source: str) -> pd.DataFrame:
    """Rename the source's columns to canonical names as ``data.columns`` says (canonical -> source column).

    A canonical column the source also holds under its own name is replaced by the mapped one.

    Args:
        frame: the rows as read.
        columns: ``data.columns``: canonical name -> the source's column name.
        source: how errors name the source (a path or address).

    Raises:
        DataError: a mapped source column is not in the data (the message lists what was found).
    """
    if not columns:
        return frame
    missing = {canonical: column for canonical, column in columns.items() if column not in frame.columns}
    if missing:
        canonical, column = next(iter(missing.items()))
        found = ", ".join(map(str, frame.columns[:12]))
        raise DataError(f"{source}: data.columns maps {canonical!r} to column {column!r}, which the data does not "
                        f"have (found: {found})")
    replaced = [c for c in columns if c in frame.columns and c not in columns.values()]
    renamed = frame.drop(columns=replaced).rename(columns={v: k for k, v in columns.items()})
    return renamed


def check_required(frame: pd.DataFrame, schema: TaskSchema, source: str) -> None:
    """Fail naming ``source`` when a required column is missing.

    Args:
        frame: the rows, with canonical column names (after ``map_columns``).
        schema: the task shape whose ``required`` columns are checked.
        source: how errors name the source.

    Raises:
        DataError: the message lists what was found, and hints at a wrong delimiter when the whole
            header landed in one column, or at ``data.columns`` when no required column is there.
    """
    missing = [c for c in schema.required if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:12]))
        hint = ""
        if len(frame.columns) == 1 and any(sep in str(frame.columns[0]) for sep in ";|\t"):
            hint = " - wrong delimiter? CompactLM reads CSV with ',' and .tsv with tabs"
        elif frame.columns.size and not set(schema.required) & set(frame.columns):
            hint = " - map your columns with data.columns (e.g. data.columns.instruction=question)"
        raise DataError(f"{source}: missing required column(s) {', '.join(repr(c) for c in missing)} "
                        f"(found: {found}){hint}")


def to_schema(frame: pd.DataFrame, schema: TaskSchema, source: str, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """Select the schema's input columns (filling optional ones with their defaults) plus ``keep``.

    Args:
        frame: the rows, with canonical column names (after ``map_columns``).
        schema: the task shape.
        source: how errors name the source.
        keep: extra columns carried through unchanged when present (e.g. bias attributes).

    Raises:
        DataError: a required column is missing (see ``check_required``).
    """
    check_required(frame, schema, source)
    out = pd.DataFrame(index=frame.index)
    for column in schema.input_columns:
        if column in frame.columns:
            out[column] = frame[column]
        elif schema.optional.get(column) is not None:
            out[column] = schema.optional[column]
        else:
            out[column] = pd.NA
    for column in keep:
        if column in frame.columns and column not in out.columns:
            out[column] = frame[column]
    return out.reset_index(drop=True)
