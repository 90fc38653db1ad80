"""Turning rows into token datasets: packed blocks for pretraining, prompt-masked pairs for SFT.

Every task shape (see ``compactlm.data.schemas``) maps to plain documents (``corpus_texts``: what
tokenizers and pretraining see) and, for supervised shapes, to prompt/completion pairs
(``supervised_pairs``: what fine-tuning sees, the loss on the completion only).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from compactlm.data.schemas import SCHEMAS
from compactlm.errors import ConfigError, DataError
from compactlm.models.tokenizer import has_own_chat_template, prompt_start_ids, render_prompt

IGNORE_INDEX = -100  # label value the loss skips (prompt and padding tokens): torch cross_entropy's default
WEIGHT_COLUMN = "sample_weight"  # per-row loss weight (AIF360 Reweighing), carried into the dataset when present


def corpus_texts(frame: pd.DataFrame) -> list[str]:
    """Each row as one plain-text document, whatever the task shape.

    ``text`` (pretraining chunks, classification texts) when present; else the rendered
    ``prompt`` + ``completion``; else instruction + response or document + summary in the prompt format.

    Raises:
        DataError: the frame has none of those columns.
    """
    if "text" in frame.columns:
        return [str(t) for t in frame["text"]]
    prompts, completions = supervised_pairs(frame)
    return [p + c for p, c in zip(prompts, completions)]


def supervised_pairs(frame: pd.DataFrame, prompt_column: str | None = None,
                     completion_column: str | None = None, tokenizer=None) -> tuple[list[str], list[str]]:
    """``(prompts, completions)`` for fine-tuning: the model reads the prompt and learns the completion.

    Explicit columns are used as they are (the prompt already rendered); otherwise ``prompt`` /
    ``completion`` (rendered at ingest in CompactLM's format; for a model with its own chat template
    the ``instruction``, after any earlier turns in ``context``, is rendered in the model's format
    instead), else instruction/response or document/summary rendered in the model's format
    (``render_prompt``: CompactLM's, or the chat template of a pretrained ``tokenizer`` that has its own).

    Raises:
        DataError: a named column is missing, or the frame has no supervised columns.
    """

    if prompt_column or completion_column:
        missing = [c for c in (prompt_column, completion_column) if c is None or c not in frame.columns]
        if missing:
            raise DataError(f"fine-tuning needs columns {prompt_column!r} and {completion_column!r}; "
                            f"missing {missing} (found: {', '.join(map(str, frame.columns[:12]))})")
        return [str(p) for p in frame[prompt_column]], [str(c) for c in frame[completion_column]]
    # Columns rendered at ingest hold CompactLM's format; a row is re-rendered in the model's own, with
    # the earlier turns of a multi-turn row (its ``context``) as messages of the model's chat template.
    rerender = has_own_chat_template(tokenizer) and "instruction" in frame.columns
    if {"prompt", "completion"} <= set(frame.columns) and not rerender:
        return [str(p) for p in frame["prompt"]], [str(c) for c in frame["completion"]]
    if {"instruction", "response"} <= set(frame.columns):
        contexts = frame["context"].fillna("").astype(str) if "context" in frame.columns else [""] * len(frame)
        return ([render_prompt(str(i), tokenizer, c) for i, c in zip(frame["instruction"], contexts)],
                [str(r) for r in frame["response"]])
    if {"document", "summary"} <= set(frame.columns):
        template = SCHEMAS["summarization"].prompt
        return ([render_prompt(template.format(document=str(d)), tokenizer) for d in frame["document"]],
                [str(s) for s in frame["summary"]])
    raise DataError("no supervised columns: expected prompt/completion, instruction/response or document/summary "
                    f"(found: {', '.join(map(str, frame.columns[:12]))})")



SEQ2SEQ_PREFIX = "summarize: "  # what a seq2seq base reads before a document, in training, evaluation and serving


def source_target_pairs(frame: pd.DataFrame, source_column: str = "document", target_column: str = "summary",
                        prefix: str = SEQ2SEQ_PREFIX) -> tuple[list[str], list[str]]:
    """(prefixed sources, targets) of document/summary rows; instruction-style rows give rendered prompts.

    Raises:
        DataError: the frame has neither the two columns nor any supervised columns (see ``supervised_pairs``).
    """
    if {source_column, target_column} <= set(frame.columns):
        return [prefix + str(s) for s in frame[source_column]], [str(t) for t in frame[target_column]]
    return supervised_pairs(frame)


def boundary_ids(tokenizer) -> tuple[list[int], list[int]]:
    """Tokens around each document: BOS/EOS for decoders, CLS/SEP for BERT-style encoders."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return ([start] if start is not None else []), ([end] if end is not None else [])


def pack_documents(documents: Sequence[str], tokenizer, block_size: int):
    """Tokenize documents as BOS + text + EOS, concatenate, and cut into full blocks of ``block_size``.

    Packing wastes no compute on padding. The last partial block is dropped (fewer than
    ``block_size`` tokens of the whole corpus). Encoders get CLS/SEP instead of BOS/EOS.

    Args:
        documents: plain-text documents (see ``corpus_texts``).
        tokenizer: encodes without special tokens; its BOS/EOS (or CLS/SEP) ids frame each document.
        block_size: tokens per block (the model's context length).

    Returns:
        A ``datasets.Dataset`` with ``input_ids`` and ``labels`` (equal: the model shifts internally),
        ``len(stream) // block_size`` rows of ``block_size`` tokens each.

    Raises:
        DataError: the whole corpus has fewer than ``block_size`` tokens.
    """
    from datasets import Dataset

    encoded = tokenizer(list(documents), add_special_tokens=False, verbose=False)["input_ids"]
    start, end = boundary_ids(tokenizer)
    stream: list[int] = []
    for ids in encoded:
        stream.extend(start)
        stream.extend(ids)
        stream.extend(end)
    n_blocks = len(stream) // block_size
    if n_blocks == 0:
        raise DataError(f"the training text has {len(stream)} tokens, fewer than one block of {block_size} "
                        "(model.max_seq_len): add data or lower model.max_seq_len")
    blocks = [stream[i * block_size:(i + 1) * block_size] for i in range(n_blocks)]
    return Dataset.from_dict({"input_ids": blocks, "labels": blocks})


def document_dataset(documents: Sequence[str], tokenizer, max_length: int, with_labels: bool = True):
    """One row per document (BOS + text + EOS, cut at ``max_length``): the unpacked alternative.

    Rows are padded by the collator; ``with_labels=False`` for masked-LM data (the collator makes them).
    Documents that encode to no token are dropped.

    Args:
        documents: plain-text documents.
        tokenizer: as ``pack_documents``.
        max_length: tokens per row, boundary tokens included.
        with_labels: add ``labels`` equal to ``input_ids``.
    """
    from datasets import Dataset

    encoded = tokenizer(list(documents), add_special_tokens=False, verbose=False)["input_ids"]
    start, end = boundary_ids(tokenizer)
    rows = [(start + ids + end)[:max_length] for ids in encoded if ids]
    return Dataset.from_dict({"input_ids": rows, **({"labels": rows} if with_labels else {})})


def encode_prompt_completion(prompts: Sequence[str], completions: Sequence[str], tokenizer, max_length: int,
                             keep_completion: bool = False) -> dict[str, list[list[int]]]:
    """Encode pairs as BOS + prompt + completion + EOS with the loss on the completion (and EOS) only.

    No BOS is added for a model with its own chat template (``prompt_start_ids``): its template
    writes its special tokens into the prompt.

    Args:
        prompts: rendered prompts (encoded without special tokens).
        completions: one completion per prompt.
        tokenizer: supplies BOS (if any; see ``prompt_start_ids``) and EOS (or SEP).
        max_length: tokens per pair, BOS and EOS included.
        keep_completion: when a pair is too long, cut the middle of the prompt (keeping its start
            and its last tokens, at most 16: the response marker) so the completion keeps at least
            half of ``max_length``; otherwise the pair is cut at the end (for short prompts such as
            customer messages).

    Returns:
        ``{"input_ids": [...], "labels": [...]}``: one token-id list per pair, ``labels`` the same length
        with ``IGNORE_INDEX`` over BOS and the prompt. A pair cut inside its prompt has no label left.
    """
    start, end = prompt_start_ids(tokenizer), boundary_ids(tokenizer)[1]
    head_ids = tokenizer(list(prompts), add_special_tokens=False, verbose=False)["input_ids"]
    tail_ids = tokenizer(list(completions), add_special_tokens=False, verbose=False)["input_ids"]
    input_ids, labels = [], []
    for prompt, completion in zip(head_ids, tail_ids):
        head, tail = [*start, *prompt], [*completion, *end]
        if keep_completion and len(head) + len(tail) > max_length:
            tail = tail[:max(max_length // 2, max_length - len(head))]
            room = max_length - len(tail)
            keep_end = min(16, room // 2)  # the response marker closes the prompt
            head = head[:room - keep_end] + (head[-keep_end:] if keep_end else [])
        ids = (head + tail)[:max_length]
        input_ids.append(ids)
        labels.append(([IGNORE_INDEX] * len(head) + tail)[:max_length])
    return {"input_ids": input_ids, "labels": labels}


def encode_instruction_pairs(frame: pd.DataFrame, tokenizer, max_length: int) -> dict[str, list[list[int]]]:
    """Encode rows as BOS + prompt + response + EOS with the loss on the response tokens only.

    Rows longer than ``max_length`` are cut at the end (the prompt is kept whole where it fits).
    """
    return encode_prompt_completion([render_prompt(i, tokenizer) for i in frame["instruction"]],
                                    [str(r) for r in frame["response"]], tokenizer, max_length)


def supervised_dataset(frame: pd.DataFrame, tokenizer, max_length: int, prompt_column: str | None = None,
                       completion_column: str | None = None, keep_completion: bool = False):
    """Prompt-masked pairs (see ``supervised_pairs``) as a ``datasets.Dataset``; rows with no completion
    token left are skipped.

    A ``sample_weight`` column in ``frame`` becomes a ``sample_weight`` feature (missing weights count as 1).

    Args:
        frame: supervised rows; prompt_column, completion_column: explicit columns (see ``supervised_pairs``).
        tokenizer, max_length, keep_completion: as ``encode_prompt_completion`` (``max_length`` in tokens).

    Raises:
        DataError: a named column is missing, or the frame has no supervised columns.
    """
    from datasets import Dataset

    prompts, completions = supervised_pairs(frame, prompt_column, completion_column, tokenizer)
    encoded: dict[str, list] = dict(encode_prompt_completion(prompts, completions, tokenizer, max_length,
                                                             keep_completion))
    if WEIGHT_COLUMN in frame.columns:
        encoded[WEIGHT_COLUMN] = frame[WEIGHT_COLUMN].astype(float).fillna(1.0).tolist()
    keep = [i for i, lab in enumerate(encoded["labels"]) if any(t != IGNORE_INDEX for t in lab)]
    return Dataset.from_dict({k: [v[i] for i in keep] for k, v in encoded.items()})


def pack_examples(dataset, block_size: int):
    """Concatenate prompt-masked examples and cut full blocks of ``block_size`` (SFT packing).

    Labels keep their masks, so the loss stays on completions; attention crosses example boundaries
    (each example starts with BOS), the usual trade for no padding. The last partial block is dropped.

    Args:
        dataset: a prompt-masked ``datasets.Dataset`` (``input_ids``, ``labels``), e.g. ``supervised_dataset``'s.
        block_size: tokens per block.

    Raises:
        ConfigError: weighted examples (a per-example weight has no meaning inside a shared block).
        DataError: the examples hold fewer than ``block_size`` tokens in all.
    """
    from datasets import Dataset

    if WEIGHT_COLUMN in dataset.column_names:
        raise ConfigError("finetune.pack_train must be false with per-example sample weights (bias.reweighing)")
    ids = [t for row in dataset["input_ids"] for t in row]
    labels = [t for row in dataset["labels"] for t in row]
    n_blocks = len(ids) // block_size
    if n_blocks == 0:
        raise DataError(f"the examples have {len(ids)} tokens, fewer than one block of {block_size} "
                        "(model.max_seq_len): add data or set finetune.pack_train=false")
    cut = range(0, n_blocks * block_size, block_size)
    return Dataset.from_dict({"input_ids": [ids[i:i + block_size] for i in cut],
                              "labels": [labels[i:i + block_size] for i in cut]})


def padding_collator(tokenizer):
    """Pads input_ids with the pad token and labels with IGNORE_INDEX, and builds the attention mask.

    Batches are padded to the longest row, rounded up to a multiple of 8 (the alignment NVIDIA's
    mixed-precision guide recommends for Tensor Cores).
    """
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, pad_to_multiple_of=8)
