"""Sequence-to-sequence fine-tuning (T5-style bases) for summarization and other text-to-text tasks.

The encoder reads ``source_prefix + source`` and the decoder learns the target; the loss covers the
target tokens only (padding masked). LoRA/QLoRA/full follow ``finetune.mode`` like the causal path; T5's
attention projections are ``q``/``k``/``v``/``o`` (``finetune.target_modules: [q, v]`` or ``[auto]``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from compactlm.config import FinetuneConfig, ModelConfig, TrainConfig
from compactlm.training.adapters import load_for_finetuning, save_finetuned
from compactlm.training.encoding import IGNORE_INDEX, SEQ2SEQ_PREFIX, source_target_pairs
from compactlm.training.runner import StageOptim, TrainSummary, fit_stage, start_stage, summarize


def _ending_with(ids: list[int], eos: int | None, max_length: int) -> list[int]:
    """Cut to ``max_length`` and make sure the sequence ends with EOS (T5 tokenizers add it, BPE ones do not)."""
    if eos is None:
        return ids[:max_length]
    ids = ids[:max_length]
    return ids if ids and ids[-1] == eos else ids[:max_length - 1] + [eos]


def seq2seq_dataset(frame: pd.DataFrame, tokenizer, max_length: int, source_column: str = "document",
                    target_column: str = "summary", source_prefix: str = SEQ2SEQ_PREFIX):
    """``input_ids``/``attention_mask`` of the sources and ``labels`` of the targets, each ending with EOS.

    Args:
        frame: rows with ``source_column``/``target_column`` (else prompt/completion-style rows, unprefixed).
        tokenizer: the base's tokenizer.
        max_length: tokens per source and, separately, per target (EOS included).
        source_column, target_column, source_prefix: which columns, and the text put before each source.

    Returns:
        A ``datasets.Dataset``, one unpadded row per frame row.

    Raises:
        DataError: the frame has neither the named columns nor any supervised columns.
    """
    from datasets import Dataset

    sources, targets = source_target_pairs(frame, source_column, target_column, source_prefix)
    eos = tokenizer.eos_token_id
    source_ids = tokenizer(sources, verbose=False)["input_ids"]
    target_ids = tokenizer(text_target=targets, verbose=False)["input_ids"]
    inputs = [_ending_with(ids, eos, max_length) for ids in source_ids]
    return Dataset.from_dict({"input_ids": inputs, "attention_mask": [[1] * len(ids) for ids in inputs],
                              "labels": [_ending_with(ids, eos, max_length) for ids in target_ids]})


def finetune_seq2seq(base: str | Path, train: pd.DataFrame, val: pd.DataFrame, output_dir: str | Path,
                     model_cfg: ModelConfig, finetune_cfg: FinetuneConfig, train_cfg: TrainConfig | None = None,
                     source_column: str = "document", target_column: str = "summary",
                     source_prefix: str = SEQ2SEQ_PREFIX, report_to_mlflow: bool = True) -> TrainSummary:
    """Fine-tune a seq2seq base (T5, BART...) on source -> target rows.

    Args:
        base: a seq2seq model folder, a ``models:/`` URI or a hub id.
        train, val: rows with ``source_column``/``target_column`` (else prompt/completion-style rows).
        output_dir: receives ``merged/`` (model + tokenizer), ``adapter/`` with LoRA, ``checkpoints/``.
        model_cfg: ``max_seq_len`` caps sources and targets (tokens, each).
        finetune_cfg: fine-tuning mode and optimisation.
        train_cfg: the shared machinery (None: defaults).
        source_column, target_column, source_prefix: which columns, and the task prefix T5 expects.
        report_to_mlflow: log step metrics to the active MLflow run.

    Returns:
        The stage's summary; ``output_dir`` in it is ``output_dir/merged``.

    Raises:
        ConfigError: a base that is not seq2seq, an unknown LoRA target, or QLoRA without CUDA.
        DataError: rows without source/target or supervised columns.
    """
    from transformers import DataCollatorForSeq2Seq

    cfg = train_cfg or TrainConfig()
    output_dir = Path(output_dir)
    optim = StageOptim.from_finetune(finetune_cfg, cfg, n_rows=len(train))
    device = start_stage(cfg, optim.seed)
    model, tokenizer = load_for_finetuning(base, "seq2seq", finetune_cfg, device, model_cfg.max_seq_len,
                                           cfg.gradient_checkpointing)
    columns = (model_cfg.max_seq_len, source_column, target_column, source_prefix)
    train_ds, val_ds = seq2seq_dataset(train, tokenizer, *columns), seq2seq_dataset(val, tokenizer, *columns)
    # Seq2seq models shift the labels into decoder inputs themselves; the collator only pads.
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, pad_to_multiple_of=8)
    trainer, result = fit_stage(model, tokenizer, train_ds, val_ds, output_dir / "checkpoints", optim, cfg, device,
                                "finetune-seq2seq", report_to_mlflow, data_collator=collator,
                                gradient_checkpointing=False if finetune_cfg.quantize_4bit else None)
    summary = summarize(trainer, result, output_dir / "merged", train_ds, model)

    save_finetuned(trainer, model, tokenizer, base, "seq2seq", finetune_cfg, output_dir)
    return summary
