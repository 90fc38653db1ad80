"""The causal-LM recipe: decoder pretraining and instruction/chat/summarization fine-tuning (HF Trainer).

Every entry point takes typed configs, writes a ``save_pretrained`` folder and returns a
``TrainSummary``. Step metrics go to whatever MLflow run is active in the calling thread
(``report_to=["mlflow"]``), so the caller decides where curves land. The same functions run
data-parallel under ``torchrun`` (see ``compactlm.training.launch``): only the main process saves.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from compactlm.config import FinetuneConfig, ModelConfig, TrainConfig
from compactlm.models.presets import build_decoder
from compactlm.models.tokenizer import train_bpe_tokenizer
from compactlm.training.adapters import load_for_finetuning, save_finetuned
from compactlm.training.encoding import (
    WEIGHT_COLUMN,
    corpus_texts,
    document_dataset,
    pack_documents,
    pack_examples,
    padding_collator,
    supervised_dataset,
)
from compactlm.training.runner import (
    StageOptim,
    TrainSummary,
    fit_stage,
    on_main_process,
    start_stage,
    summarize,
)

# PEFT still calls a transformers method that transformers 5 deprecates; nothing for users to act on.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def weighted_causal_lm_loss(logits, labels, weights):
    """Causal-LM cross-entropy where each example's tokens count ``weights[i]`` times.

    ``sum_i w_i * sum_t loss_it / sum_i w_i * n_i`` over the batch: with equal weights it is exactly
    the usual mean over every labelled token (what the unweighted Trainer computes).

    Args:
        logits: (batch, seq, vocab) model outputs.
        labels: (batch, seq) targets, IGNORE_INDEX where no loss is taken; shifted here like HF does.
        weights: (batch,) per-example weights (e.g. AIF360 Reweighing ``sample_weight``, mean 1).

    Returns:
        A scalar tensor, in nats per (weighted) labelled token.
    """
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    token_loss = F.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=-100, reduction="none")
    counted = (shift_labels != -100).sum(dim=1).to(token_loss.dtype)  # labelled tokens per example
    weights = weights.to(token_loss.dtype)
    return (weights * token_loss.sum(dim=1)).sum() / (weights * counted).sum().clamp_min(1e-12)


def _weighted_trainer_class():
    from transformers import Trainer

    class WeightedLossTrainer(Trainer):
        """A Trainer that weights each example's loss by its ``sample_weight`` (reweighing mitigation).

        Batches without weights (evaluation) use the Trainer's own loss.
        """

        # The weighted loss is a per-batch mean: the Trainer divides it for gradient accumulation.
        loss_is_scaled_for_ga = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            weights = inputs.pop(WEIGHT_COLUMN, None)
            if weights is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = weighted_causal_lm_loss(outputs.logits, labels, weights)
            return (loss, outputs) if return_outputs else loss

    return WeightedLossTrainer


def pretrain_decoder(train: pd.DataFrame, val: pd.DataFrame, output_dir: str | Path, model_cfg: ModelConfig,
                     train_cfg: TrainConfig, report_to_mlflow: bool = True) -> TrainSummary:
    """Train a BPE tokenizer on the train split, build the decoder preset and pretrain it as a causal LM.

    Args:
        train: training rows of any shape (see ``corpus_texts``), the only text the tokenizer sees.
        val: validation rows, for the eval loss.
        output_dir: receives the model and tokenizer (``save_pretrained``); checkpoints go to
            ``output_dir/checkpoints``.
        model_cfg: preset, vocabulary, context length and dropout.
        train_cfg: optimisation and the shared machinery (packing: ``train.pack_train``/``pack_eval``).
        report_to_mlflow: log step metrics (and system metrics) to the active MLflow run.

    Returns:
        The stage's summary (losses in nats per token).

    Raises:
        ConfigError: an encoder preset, a vocabulary below 260 tokens, or an unusable device or precision.
        DataError: rows without a text column (see ``corpus_texts``).
        ValueError: packing a corpus shorter than one block of ``model.max_seq_len`` tokens.
    """
    output_dir = Path(output_dir)
    device = start_stage(train_cfg, train_cfg.seed)  # a bad precision fails before the tokenizer trains
    documents = corpus_texts(train)
    tokenizer = train_bpe_tokenizer(documents, model_cfg.vocab_size, model_cfg.max_seq_len)
    model = build_decoder(model_cfg.preset, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                          tokenizer.eos_token_id, dropout=model_cfg.dropout)
    block = model_cfg.max_seq_len
    train_ds = pack_documents(documents, tokenizer, block) if train_cfg.pack_train \
        else document_dataset(documents, tokenizer, block)
    val_docs = corpus_texts(val)
    val_ds = pack_documents(val_docs, tokenizer, block) if train_cfg.pack_eval \
        else document_dataset(val_docs, tokenizer, block)
    packed = train_cfg.pack_train and train_cfg.pack_eval  # equal-length rows need no padding collator
    trainer, result = fit_stage(model, tokenizer, train_ds, val_ds, output_dir / "checkpoints",
                                StageOptim.from_train(train_cfg), train_cfg, device, "pretrain", report_to_mlflow,
                                data_collator=None if packed else padding_collator(tokenizer))
    on_main_process(trainer, lambda: (model.save_pretrained(output_dir), tokenizer.save_pretrained(output_dir)))
    return summarize(trainer, result, output_dir, train_ds, model)


def finetune_causal(base: str | Path, train: pd.DataFrame, val: pd.DataFrame, output_dir: str | Path,
                    model_cfg: ModelConfig, finetune_cfg: FinetuneConfig, train_cfg: TrainConfig | None = None, *,
                    seed: int | None = None, device: str | None = None, prompt_column: str | None = None,
                    completion_column: str | None = None, keep_completion: bool = False,
                    report_to_mlflow: bool = True) -> TrainSummary:
    """Fine-tune a causal LM on prompt/completion pairs with the loss on the completion only.

    ``finetune.mode`` picks LoRA (QLoRA with ``finetune.quantize_4bit``) or full fine-tuning. With an adapter,
    ``output_dir/adapter`` holds it alone and ``output_dir/merged`` the merged model and tokenizer (a
    plain transformers model that needs no PEFT to load); full fine-tuning writes ``merged`` only.

    Args:
        base: the model to start from: a folder (a pretrained preset), a ``models:/`` URI or a hub id.
        train: supervised rows (see ``supervised_pairs``); a ``sample_weight`` column weights each row.
        val: validation rows (their weights are ignored).
        output_dir: receives ``adapter/``, ``merged/`` and ``checkpoints/``.
        model_cfg: ``max_seq_len`` caps each pair (tokens, BOS and EOS included).
        finetune_cfg: fine-tuning mode and optimisation.
        train_cfg: the shared machinery (precision, checkpoints, early stopping, resume); defaults if None.
        seed: overrides ``train_cfg.seed``; device: overrides ``train_cfg.device``.
        prompt_column, completion_column: explicit columns (the prompt already rendered).
        keep_completion: cut long prompts in the middle so completions survive (summarization).
        report_to_mlflow: log step metrics to the active MLflow run.

    Returns:
        The stage's summary; ``output_dir`` in it is ``output_dir/merged``.

    Raises:
        ConfigError: an unknown base, LoRA target, sequence length beyond the base's positions, or
            QLoRA without CUDA/bitsandbytes, all before any compute; packing with sample weights.
        DataError: a named column is missing, or the rows have no supervised columns.
        ValueError: packing examples that hold fewer than one block of tokens.
    """
    cfg = train_cfg or TrainConfig()
    output_dir = Path(output_dir)
    optim = StageOptim.from_finetune(finetune_cfg, cfg, seed, len(train))
    device = start_stage(cfg, optim.seed, device)
    model, tokenizer = load_for_finetuning(base, "causal", finetune_cfg, device, model_cfg.max_seq_len,
                                           cfg.gradient_checkpointing)
    length = model_cfg.max_seq_len
    train_ds = supervised_dataset(train, tokenizer, length, prompt_column, completion_column, keep_completion)
    val_ds = supervised_dataset(val.drop(columns=[WEIGHT_COLUMN], errors="ignore"), tokenizer, length,
                                prompt_column, completion_column, keep_completion)
    if finetune_cfg.pack_train:
        train_ds = pack_examples(train_ds, length)
    if finetune_cfg.pack_eval:
        val_ds = pack_examples(val_ds, length)
    weighted = WEIGHT_COLUMN in train_ds.column_names  # reweighed data: each example's loss counts its weight
    trainer, result = fit_stage(
        model, tokenizer, train_ds, val_ds, output_dir / "checkpoints", optim, cfg, device, "finetune",
        report_to_mlflow, data_collator=padding_collator(tokenizer),
        trainer_class=_weighted_trainer_class() if weighted else None, remove_unused_columns=not weighted,
        gradient_checkpointing=False if finetune_cfg.quantize_4bit else None)  # QLoRA prepared it already
    summary = summarize(trainer, result, output_dir / "merged", train_ds, model)

    save_finetuned(trainer, model, tokenizer, base, "causal", finetune_cfg, output_dir)
    return summary
