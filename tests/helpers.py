"""Assertions shared by the test modules (importable because pyproject sets pytest's pythonpath to tests/)."""

from __future__ import annotations

import pytest

from compactlm.errors import CompactLMError


def one_line_error(excinfo: pytest.ExceptionInfo, *names: str) -> str:
    """The error's message, checked to be a project error on a single line that names every one of ``names``."""
    message = str(excinfo.value)
    assert isinstance(excinfo.value, CompactLMError), repr(excinfo.value)
    assert "\n" not in message, message
    for name in names:
        assert name in message, f"{name!r} not named in: {message}"
    return message


def write_csv(path, header: str, rows: list[str]):
    """Write a small UTF-8 CSV file (``header`` then ``rows``, one per line) and return its path."""
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


# The serving engine's tests: customer messages, their BOS-prefixed prompt ids, and transformers' greedy answer.
PROMPTS = ["Where is my order?", "Cancel my plan please, it is too expensive for me now",
           "refund", "How do I change my address?", "My package arrived damaged and the box was open"]


def prompt_ids(tokenizer, text: str) -> list[int]:
    """BOS + the tokens of ``format_prompt(text)``."""
    from compactlm.models.tokenizer import format_prompt

    return [tokenizer.bos_token_id, *tokenizer(format_prompt(text), add_special_tokens=False)["input_ids"]]


def hf_greedy(model, ids: list[int], max_new_tokens: int, eos: int) -> list[int]:
    """``model.generate``'s greedy tokens after ``ids``, up to (without) EOS."""
    import torch

    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=0, eos_token_id=eos)
    tokens = out[0, len(ids):].tolist()
    return tokens[:tokens.index(eos)] if eos in tokens else tokens
