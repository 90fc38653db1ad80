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


# Questions no support customer of the generated shop asks: the "drifted" served traffic of the monitor tests.
OFF_DOMAIN_PROMPTS = [f"{ask} {topic}?" for ask in (
    "how do I cook", "what is the best recipe for", "can you tell me a fun fact about", "what's the weather like for",
    "who won the last match of", "translate into french the word for")
    for topic in ("pasta carbonara", "the moon", "tennis", "a sunny afternoon in rome", "bread", "the olympics",
                  "my cat", "jazz music")]


def register_served_champion(home, model_name: str, n_rows: int = 600, seed: int = 0):
    """A served champion with real lineage: ingest ``n_rows`` generated rows into a DVC version under ``home``,
    register a tiny untrained decoder trained-on-paper on it (tags ``data_name``/``data_version``, as
    registration sets them) in the home's MLflow registry, alias it ``champion``.

    Returns:
        ``(dataset_version, test_split_frame, registered_version)``.
    """
    import mlflow
    import torch

    from compactlm.config import DataConfig
    from compactlm.data.ingest import ingest_version
    from compactlm.data.versioning import read_split
    from compactlm.models.presets import build_decoder
    from compactlm.models.tokenizer import train_bpe_tokenizer
    from compactlm.registry import store
    from compactlm.registry.pyfunc import log_chat_model
    from compactlm.state import state_paths

    paths = state_paths(home)
    data = DataConfig(n_rows=n_rows, seed=seed)
    version = ingest_version(data, paths.data_repo, str(paths.local_remote)).version
    train = read_split(version.path, "train")
    tokenizer = train_bpe_tokenizer(train["instruction"].tolist()[:200], 300, 128)
    torch.manual_seed(seed)
    model = build_decoder("decoder-tiny", len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                          tokenizer.eos_token_id)
    folder = paths.home / "champion-model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    experiment = store.setup_tracking(paths, "monitor-tests")
    with mlflow.start_run(experiment_id=experiment):
        logged = log_chat_model(folder)
    registered = store.register_version(getattr(logged, "model_uri", logged), model_name,
                                        {"data_name": version.name, "data_version": version.md5})
    store.set_alias(model_name, store.CHAMPION, registered)
    return version, read_split(version.path, "test"), registered


def served_records(prompts: list[str], model_name: str, version: str, start=None):
    """One stored served request per prompt (prompt text kept), a second apart from ``start`` (default: now - 1 h)."""
    from datetime import UTC, datetime, timedelta

    from compactlm.serving.traffic.store import RequestRecord

    start = start or datetime.now(UTC) - timedelta(hours=1)
    return [RequestRecord(request_id=f"req-{version}-{start.timestamp():.0f}-{i}",
                          created_at=start + timedelta(seconds=i),
                          route="/v1/chat/completions", model_name=model_name, model_version=str(version), status=200,
                          latency_ms=12.0, prompt_tokens=len(text.split()), completion_tokens=8, prompt_text=text,
                          completion_text="ok") for i, text in enumerate(prompts)]
