"""The bundled generator in every task shape: chats, intent classification and ticket summaries.

Built on ``generate_support_dataset``, so the same seeded customer messages and agent replies feed
each shape, with the columns of its canonical schema (``compactlm.data.schemas``). It lets every
shipped config (configs/chat.yaml, classification.yaml, summarization.yaml) run offline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from compactlm.data.sources.generator import generate_support_dataset
from compactlm.errors import DataError

ATTRIBUTE_COLUMNS = ("age_band", "region", "customer_tier", "resolved")
_CHANNELS = ("e-mail", "chat", "phone call", "contact form")
_CLOSINGS = ("The customer thanked the agent and the conversation ended.",
             "The customer said that this answered the question.",
             "No further questions were raised.")
_FOLLOW_UPS = ("Thanks! One more thing: ", "Great, thank you. Also, ", "OK. Another question: ")


def _first_sentence(text: str) -> str:
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]


def _chats(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Two-turn conversations: a request and its reply, then a follow-up request and its reply."""
    half = len(frame) // 2
    first, second = frame.iloc[:half].reset_index(drop=True), frame.iloc[half:2 * half].reset_index(drop=True)
    records = []
    for i in range(half):
        follow = _FOLLOW_UPS[int(rng.integers(len(_FOLLOW_UPS)))]
        messages = [{"role": "user", "content": first.instruction[i]},
                    {"role": "assistant", "content": first.response[i]},
                    {"role": "user", "content": follow + second.instruction[i][0].lower() + second.instruction[i][1:]},
                    {"role": "assistant", "content": second.response[i]}]
        records.append({"id": f"chat-{i + 1:06d}", "messages": messages, "intent": second.intent[i],
                        "category": second.category[i], **{c: second[c][i] for c in ATTRIBUTE_COLUMNS}})
    return pd.DataFrame.from_records(records)


def _summaries(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Ticket transcripts and a one-line summary of what was asked and what the agent advised."""
    records = []
    for row in frame.itertuples(index=False):
        channel = _CHANNELS[int(rng.integers(len(_CHANNELS)))]
        closing = _CLOSINGS[int(rng.integers(len(_CLOSINGS)))]
        document = (f"Support ticket received by {channel} from a {row.customer_tier} customer in the {row.region} "
                    f"region. Customer: {row.instruction} Agent: {row.response} {closing}")
        summary = (f"The customer asked about {row.intent.replace('_', ' ')} ({row.category.lower()}). "
                   f"Agent: {_first_sentence(row.response)}")
        records.append({"id": row.id.replace("gen-", "ticket-"), "document": document, "summary": summary,
                        "category": row.category, **{c: getattr(row, c) for c in ATTRIBUTE_COLUMNS}})
    return pd.DataFrame.from_records(records)


def generate_task_dataset(task: str, n_rows: int = 10_000, seed: int = 0, bias: float = 0.0) -> pd.DataFrame:
    """Rows of the support generator in the columns of ``task``'s canonical schema.

    Args:
        task: instruction | chat | classification | summarization | pretraining.
        n_rows: rows (conversations for ``chat``: each uses two generated exchanges).
        seed, bias: as in ``generate_support_dataset``.

    Raises:
        DataError: ``task`` has no bundled generator, or ``n_rows``/``seed``/``bias`` are out of range.
    """
    rng = np.random.default_rng(seed + 7919)
    if task == "instruction":
        return generate_support_dataset(n_rows=n_rows, seed=seed, bias=bias)
    if task == "chat":
        return _chats(generate_support_dataset(n_rows=2 * n_rows, seed=seed, bias=bias), rng)
    frame = generate_support_dataset(n_rows=n_rows, seed=seed, bias=bias)
    if task == "classification":
        return pd.DataFrame({"id": frame["id"], "text": frame["instruction"], "label": frame["intent"],
                             **{c: frame[c] for c in ATTRIBUTE_COLUMNS}})
    if task == "summarization":
        return _summaries(frame, rng)
    if task == "pretraining":
        return pd.DataFrame({"id": frame["id"], "text": frame["instruction"] + "\n" + frame["response"]})
    raise DataError(f"data.task {task!r} has no bundled generator")
