"""Turning instruction rows into token datasets: packed blocks for pretraining, masked pairs for SFT."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from compactlm.models.tokenizer import format_prompt

IGNORE_INDEX = -100  # label value the loss skips (prompt and padding tokens)
WEIGHT_COLUMN = "sample_weight"  # per-row loss weight (AIF360 Reweighing), carried into the dataset when present


def instruction_documents(frame: pd.DataFrame) -> list[str]:
    """Each row as one plain-text document (prompt + response), for tokenizer training and pretraining."""
    return [format_prompt(i) + r for i, r in zip(frame["instruction"], frame["response"])]


def pack_documents(documents: Sequence[str], tokenizer, block_size: int):
    """Tokenize documents as BOS + text + EOS, concatenate, and cut into full blocks of ``block_size``.

    Packing wastes no compute on padding. The last partial block is dropped (fewer than
    ``block_size`` tokens of the whole corpus).

    Returns:
        A ``datasets.Dataset`` with ``input_ids`` and ``labels`` (equal: the model shifts internally).
    """
    from datasets import Dataset

    encoded = tokenizer(list(documents), add_special_tokens=False, verbose=False)["input_ids"]
    stream: list[int] = []
    for ids in encoded:
        stream.append(tokenizer.bos_token_id)
        stream.extend(ids)
        stream.append(tokenizer.eos_token_id)
    n_blocks = len(stream) // block_size
    if n_blocks == 0:
        raise ValueError(f"the corpus has {len(stream)} tokens, fewer than one block of {block_size}")
    blocks = [stream[i * block_size:(i + 1) * block_size] for i in range(n_blocks)]
    return Dataset.from_dict({"input_ids": blocks, "labels": blocks})


def encode_instruction_pairs(frame: pd.DataFrame, tokenizer, max_length: int) -> dict[str, list[list[int]]]:
    """Encode rows as BOS + prompt + response + EOS with the loss on the response tokens only.

    Rows longer than ``max_length`` are cut at the end (the prompt is kept whole where it fits).
    """
    prompts = tokenizer([format_prompt(i) for i in frame["instruction"]], add_special_tokens=False,
                        verbose=False)["input_ids"]
    responses = tokenizer(list(frame["response"]), add_special_tokens=False, verbose=False)["input_ids"]
    input_ids, labels = [], []
    for prompt, response in zip(prompts, responses):
        head = [tokenizer.bos_token_id, *prompt]
        tail = [*response, tokenizer.eos_token_id]
        ids = (head + tail)[:max_length]
        mask = ([IGNORE_INDEX] * len(head) + tail)[:max_length]
        input_ids.append(ids)
        labels.append(mask)
    return {"input_ids": input_ids, "labels": labels}


def instruction_dataset(frame: pd.DataFrame, tokenizer, max_length: int):
    """``encode_instruction_pairs`` as a ``datasets.Dataset`` (rows with no response token left are skipped).

    A ``sample_weight`` column in ``frame`` becomes a ``sample_weight`` feature (missing weights count as 1).
    """
    from datasets import Dataset

    encoded: dict[str, list] = dict(encode_instruction_pairs(frame, tokenizer, max_length))
    if WEIGHT_COLUMN in frame.columns:
        encoded[WEIGHT_COLUMN] = frame[WEIGHT_COLUMN].astype(float).fillna(1.0).tolist()
    keep = [i for i, lab in enumerate(encoded["labels"]) if any(t != IGNORE_INDEX for t in lab)]
    return Dataset.from_dict({k: [v[i] for i in keep] for k, v in encoded.items()})


def padding_collator(tokenizer):
    """Pads input_ids with the pad token and labels with IGNORE_INDEX, and builds the attention mask."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, pad_to_multiple_of=8)
