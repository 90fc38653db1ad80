"""Multi-turn chats and the instruction format: parse, clean and expand conversations; render prompts.

A chat row holds ``messages``: a list (or its JSON text) of ``{"role": ..., "content": ...}`` with roles
system/user/assistant (ShareGPT's ``{"from": "human"|"gpt", "value": ...}`` is accepted too). Other
role names are mapped through ``ROLE_ALIASES`` (human/customer -> user, gpt/bot/model/agent -> assistant)
and counted in the report; a conversation with any other role is quarantined naming it. Each
assistant reply that follows a user message becomes one training row: ``instruction`` (that user
message), ``response`` (the reply) and ``context`` (the earlier turns, rendered with the chat template).
All rows of a conversation share ``conversation_id`` and always land in the same split.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from compactlm.data.cleaning import (
    CleanedRows,
    CleanOptions,
    Quarantine,
    clean_text_columns,
    is_blank,
    reject_near_duplicates,
)
from compactlm.data.schemas import SCHEMAS, TaskSchema
from compactlm.data.text import invisible_series, near_duplicate_keys
from compactlm.models.tokenizer import format_prompt, render_chat

ROLES = ("system", "user", "assistant")
# Role names other tools write, case and surrounding spaces ignored (documented in the README's Data section).
ROLE_ALIASES = {"human": "user", "customer": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant",
                "agent": "assistant", "ai": "assistant"}


def parse_messages(value: Any, aliases_used: dict[str, int] | None = None) -> list[dict[str, str]] | str:
    """A conversation as a list of ``{"role", "content"}`` dicts, or the reason it is malformed.

    Args:
        value: the ``messages`` value: a list of message objects, or its JSON text.
        aliases_used: when given, counts each role mapped through ``ROLE_ALIASES`` (``"bot -> assistant"``).
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            return f"messages is not valid JSON ({exc.msg})"
    if isinstance(value, np.ndarray):  # Parquet/Arrow lists arrive as arrays
        value = value.tolist()
    if not isinstance(value, list) or not value:
        return "messages must be a non-empty list of {role, content} objects"
    messages, mapped = [], []
    for position, message in enumerate(value, start=1):
        if not isinstance(message, dict):
            return f"message {position} is not an object"
        role = message.get("role", message.get("from"))
        content = message.get("content", message.get("value"))
        name = str(role).strip().lower() if role is not None else None
        if name in ROLE_ALIASES:
            mapped.append(f"{name} -> {ROLE_ALIASES[name]}")
            name = ROLE_ALIASES[name]
        if name not in ROLES:
            return (f"message {position} has role {role!r} (expected system, user or assistant, or one of "
                    f"{', '.join(ROLE_ALIASES)})")
        if not isinstance(content, str):
            return f"message {position} has no text content"
        messages.append({"role": name, "content": content})
    if aliases_used is not None:
        for alias in mapped:
            aliases_used[alias] = aliases_used.get(alias, 0) + 1
    return messages


def render_messages(messages: list[dict[str, str]]) -> str:
    """The earlier turns of a conversation as the model's context (``compactlm.models.tokenizer.render_chat``)."""
    return render_chat(messages)


def _clean_messages(rows: pd.DataFrame, options: CleanOptions, quarantine: Quarantine,
                    cleaning: dict[str, int]) -> pd.DataFrame:
    """Parse every conversation, clean each message's text; quarantine malformed or blank ones."""
    aliases: dict[str, int] = {}
    parsed = rows["messages"].map(lambda value: parse_messages(value, aliases))
    for alias, n in sorted(aliases.items()):
        cleaning[f"messages with role {alias}"] = n
    malformed = parsed.map(lambda p: isinstance(p, str))
    unknown_role = malformed & parsed.map(lambda p: isinstance(p, str) and " has role " in p)
    reasons = parsed.where(malformed, "").astype(str)
    # The quarantine keeps the conversation as it was read (the reason says what is wrong with it).
    rows = quarantine.reject(rows, unknown_role, "unknown role in a message", reasons)
    rows = quarantine.reject(rows, malformed[rows.index], "malformed messages", reasons[rows.index])
    if rows.empty:
        return rows
    rows = rows.assign(messages=parsed[rows.index].astype(object))
    long = rows[["messages"]].explode("messages")
    long = pd.DataFrame({"row": long.index, "role": [m["role"] for m in long["messages"]],
                         "content": pd.Series([m["content"] for m in long["messages"]], dtype="string")})
    long = clean_text_columns(long, ["content"], options, cleaning)
    blank_rows = set(long.loc[is_blank(long["content"]) | invisible_series(long["content"]), "row"])
    messages = long.groupby("row", sort=False).apply(
        lambda g: [{"role": r, "content": c} for r, c in zip(g["role"], g["content"].fillna(""))],
        include_groups=False)
    rows = rows.assign(messages=messages.reindex(rows.index).to_numpy())
    return quarantine.reject(rows, pd.Series(rows.index.isin(blank_rows), index=rows.index),
                             "blank message in the conversation")


def _expand(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """One row per assistant reply that follows a user message; also the conversations that had none."""
    records = []
    answered = pd.Series(False, index=rows.index)
    attributes = [c for c in rows.columns if c not in ("messages", "id")]
    for index, conversation_id, messages, *values in zip(rows.index, rows["id"], rows["messages"],
                                                          *(rows[c] for c in attributes)):
        turn = 0
        for k in range(1, len(messages)):
            if messages[k]["role"] == "assistant" and messages[k - 1]["role"] == "user":
                turn += 1
                records.append({"id": f"{conversation_id}-t{turn}", "conversation_id": conversation_id, "turn": turn,
                                "context": render_messages(messages[:k - 1]),
                                "instruction": messages[k - 1]["content"], "response": messages[k]["content"],
                                **dict(zip(attributes, values))})
                answered[index] = True
    columns = ["id", "conversation_id", "turn", "context", "instruction", "response", *attributes]
    return pd.DataFrame.from_records(records, columns=columns), answered


def prepare_chat(rows: pd.DataFrame, options: CleanOptions) -> CleanedRows:
    """Clean conversations, drop duplicate ones, and expand them into one row per answered turn.

    Quarantines malformed conversations, blank messages, duplicate conversations (exact or near, by the
    whole rendered conversation), conversations with no answered user message, and turns whose
    instruction or response is out of length bounds.

    Args:
        rows: canonical chat rows (a ``messages`` column, see ``parse_messages``).
        options: the cleaning switches and length bounds (``min_chars``/``max_chars`` per turn).

    Returns:
        One row per answered turn, the quarantined conversations or turns with their reason, and counts.
    """
    quarantine = Quarantine()
    counts: dict[str, int] = {"rows_in": len(rows)}
    cleaning: dict[str, int] = {}
    rows = quarantine.reject(rows, is_blank(rows["messages"].astype("string")), "blank or null messages")
    rows = _clean_messages(rows, options, quarantine, cleaning)
    rendered = rows["messages"].map(render_messages).astype("string")
    rows = quarantine.reject(rows, rendered.duplicated(), "exact duplicate of an earlier conversation")
    if options.near_duplicates and len(rows):
        rows = reject_near_duplicates(rows, near_duplicate_keys(rendered[rows.index]), quarantine, "conversation")
    rows = quarantine.reject(rows, rows["id"].duplicated(), "id already used by an earlier conversation")
    turns, answered = _expand(rows)
    rows = quarantine.reject(rows, ~answered, "conversation has no user message answered by the assistant")
    for column in ("instruction", "response"):
        turns = turns.astype({column: "string"})
        turns = quarantine.reject(turns, turns[column].str.len() < options.min_chars,
                                  f"{column} shorter than {options.min_chars} characters")
        turns = quarantine.reject(turns, turns[column].str.len() > options.max_chars,
                                  f"{column} longer than {options.max_chars} characters")
    turns = turns.assign(intent=turns["intent"].astype("string").str.strip(),
                         category=turns["category"].astype("string").fillna("general").str.strip())
    quarantined = quarantine.frame(turns)
    counts.update({"conversations_kept": int(turns["conversation_id"].nunique()) if len(turns) else 0,
                   "rows_kept": len(turns), "rows_quarantined": len(quarantined), **quarantine.counts()})
    return CleanedRows(rows=turns.reset_index(drop=True), quarantine=quarantined, counts=counts, cleaning=cleaning)


def add_instruction_format(rows: pd.DataFrame, schema: TaskSchema | str) -> pd.DataFrame:
    """Add ``prompt`` (the user turn rendered with the chat template, after any earlier turns) and
    ``completion`` (the assistant turn) so every supervised shape trains the same way.

    Args:
        rows: one split of a supervised shape (unchanged when the shape has no prompt, e.g. pretraining).
        schema: the task shape, or its name (a key of ``SCHEMAS``).
    """
    schema = SCHEMAS[schema] if isinstance(schema, str) else schema
    if schema.prompt is None or rows.empty:
        return rows
    fields = [name for name in schema.input_columns + ("instruction", "text", "document") if name in rows.columns]
    records = rows[list(dict.fromkeys(fields))].astype("string").fillna("").to_dict("records")
    prompts = [format_prompt(schema.prompt.format(**record)) for record in records]
    if "context" in rows.columns:
        prompts = [str(context) + prompt for context, prompt in zip(rows["context"].fillna(""), prompts)]
    return rows.assign(prompt=pd.Series(prompts, index=rows.index, dtype="string"),
                       completion=rows[schema.completion].astype("string"))
