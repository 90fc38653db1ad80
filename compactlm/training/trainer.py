"""Pretraining and LoRA instruction fine-tuning with the Hugging Face Trainer.

Both entry points take typed configs, write a ``save_pretrained`` folder and return a small summary
(losses, steps, timings). Step metrics go to whatever MLflow run is active in the calling thread
(``report_to=["mlflow"]``), so the caller decides where curves land.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from compactlm.config import LoraConfig, ModelConfig, TrainConfig
from compactlm.errors import ConfigError
from compactlm.models.presets import build_decoder
from compactlm.models.tokenizer import train_bpe_tokenizer
from compactlm.training.data import (
    WEIGHT_COLUMN,
    instruction_dataset,
    instruction_documents,
    pack_documents,
    padding_collator,
)

# PEFT still calls a transformers method that transformers 5 deprecates; nothing for users to act on.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


@dataclass
class TrainSummary:
    """What a training stage did and where it saved the result."""

    output_dir: str
    train_loss: float
    eval_loss: float | None
    steps: int
    seconds: float
    train_tokens: int
    parameters: int
    trainable_parameters: int
    device: str

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(requested: str) -> str:
    """``auto`` -> cuda when available, else cpu; asking for cuda without one is a config error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available (use auto or cpu)")
    return requested


def weighted_causal_lm_loss(logits, labels, weights):
    """Causal-LM cross-entropy where each example's tokens count ``weights[i]`` times.

    ``sum_i w_i * sum_t loss_it / sum_i w_i * n_i`` over the batch: with equal weights it is exactly
    the usual mean over every labelled token (what the unweighted Trainer computes).

    Args:
        logits: (batch, seq, vocab) model outputs.
        labels: (batch, seq) targets, IGNORE_INDEX where no loss is taken; shifted here like HF does.
        weights: (batch,) per-example weights.
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


def _training_arguments(output_dir: Path, *, epochs: float, max_steps: int, batch_size: int, grad_accum: int,
                        learning_rate: float, weight_decay: float, warmup_ratio: float, scheduler: str,
                        logging_steps: int, seed: int, device: str, run_name: str, report_to_mlflow: bool,
                        remove_unused_columns: bool = True):
    import torch
    from transformers import TrainingArguments

    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=str(output_dir),
        run_name=run_name,
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_steps=warmup_ratio,  # a float < 1 is a ratio of the total steps in transformers 5
        lr_scheduler_type=scheduler,
        logging_steps=logging_steps,
        eval_strategy="epoch",
        save_strategy="no",  # the caller saves the final model; checkpoints are not needed here
        seed=seed,
        data_seed=seed,
        use_cpu=device == "cpu",
        bf16=bf16,
        report_to=["mlflow"] if report_to_mlflow else [],
        dataloader_num_workers=0,
        disable_tqdm=False,
        remove_unused_columns=remove_unused_columns,
    )


def _count_parameters(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def _final_losses(trainer) -> tuple[float, float | None]:
    history = trainer.state.log_history
    train = [h["train_loss"] for h in history if "train_loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    return (float(train[-1]) if train else math.nan), (float(evals[-1]) if evals else None)


def pretrain_decoder(train: pd.DataFrame, val: pd.DataFrame, output_dir: str | Path, model_cfg: ModelConfig,
                     train_cfg: TrainConfig, report_to_mlflow: bool = True) -> TrainSummary:
    """Train a tokenizer on the train split, build the preset and pretrain it as a causal LM.

    Args:
        train: training rows (instruction + response), the only text the tokenizer sees.
        val: validation rows, for the per-epoch eval loss.
        output_dir: receives the model and tokenizer (``save_pretrained``).
        model_cfg: preset, vocabulary and context length.
        train_cfg: optimisation settings.
        report_to_mlflow: log step metrics to the active MLflow run.
    """
    from transformers import Trainer, set_seed

    output_dir = Path(output_dir)
    device = resolve_device(train_cfg.device)
    set_seed(train_cfg.seed)
    documents = instruction_documents(train)
    tokenizer = train_bpe_tokenizer(documents, model_cfg.vocab_size, model_cfg.max_seq_len)
    model = build_decoder(model_cfg.preset, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                          tokenizer.eos_token_id)
    train_ds = pack_documents(documents, tokenizer, model_cfg.max_seq_len)
    val_ds = pack_documents(instruction_documents(val), tokenizer, model_cfg.max_seq_len)
    args = _training_arguments(
        output_dir / "checkpoints", epochs=train_cfg.epochs, max_steps=train_cfg.max_steps,
        batch_size=train_cfg.batch_size, grad_accum=train_cfg.grad_accum, learning_rate=train_cfg.learning_rate,
        weight_decay=train_cfg.weight_decay, warmup_ratio=train_cfg.warmup_ratio, scheduler=train_cfg.lr_scheduler,
        logging_steps=train_cfg.logging_steps, seed=train_cfg.seed, device=device, run_name="pretrain",
        report_to_mlflow=report_to_mlflow)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                      processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    train_loss, eval_loss = _final_losses(trainer)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    total, trainable = _count_parameters(model)
    return TrainSummary(str(output_dir), train_loss, eval_loss, trainer.state.global_step, seconds,
                        trainer.state.global_step * train_cfg.batch_size * train_cfg.grad_accum * model_cfg.max_seq_len,
                        total, trainable, device)


def finetune_lora(base_dir: str | Path, train: pd.DataFrame, val: pd.DataFrame, output_dir: str | Path,
                  model_cfg: ModelConfig, lora_cfg: LoraConfig, seed: int = 0, device: str = "auto",
                  report_to_mlflow: bool = True) -> TrainSummary:
    """LoRA instruction fine-tuning (loss on response tokens only), then merge the adapter.

    ``output_dir/adapter`` holds the PEFT adapter alone; ``output_dir/merged`` the merged model and
    tokenizer, a plain transformers model that needs no PEFT to load.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, set_seed

    output_dir = Path(output_dir)
    device = resolve_device(device)
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    available = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [m for m in lora_cfg.target_modules if m not in available]
    if unknown:
        raise ConfigError(f"lora.target_modules {unknown} are not modules of the model "
                          f"(linear layers: {sorted(n for n in available if n.endswith('_proj'))})")
    peft_config = PeftLoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                                 target_modules=list(lora_cfg.target_modules), task_type="CAUSAL_LM")
    model = get_peft_model(model, peft_config)
    total, trainable = _count_parameters(model)
    train_ds = instruction_dataset(train, tokenizer, model_cfg.max_seq_len)
    val_ds = instruction_dataset(val.drop(columns=[WEIGHT_COLUMN], errors="ignore"), tokenizer, model_cfg.max_seq_len)
    weighted = WEIGHT_COLUMN in train_ds.column_names  # reweighed data: each example's loss counts its weight
    args = _training_arguments(
        output_dir / "checkpoints", epochs=lora_cfg.epochs, max_steps=lora_cfg.max_steps,
        batch_size=lora_cfg.batch_size, grad_accum=1, learning_rate=lora_cfg.learning_rate, weight_decay=0.0,
        warmup_ratio=lora_cfg.warmup_ratio, scheduler="cosine", logging_steps=10, seed=seed, device=device,
        run_name="finetune-lora", report_to_mlflow=report_to_mlflow, remove_unused_columns=not weighted)
    trainer_class = _weighted_trainer_class() if weighted else Trainer
    trainer = trainer_class(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                            data_collator=padding_collator(tokenizer), processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    train_loss, eval_loss = _final_losses(trainer)
    model.save_pretrained(output_dir / "adapter")
    merged = model.merge_and_unload()
    merged.save_pretrained(output_dir / "merged")
    tokenizer.save_pretrained(output_dir / "merged")
    n_tokens = sum(len(ids) for ids in train_ds["input_ids"])
    return TrainSummary(str(output_dir / "merged"), train_loss, eval_loss, trainer.state.global_step, seconds,
                        int(n_tokens * lora_cfg.epochs), total, trainable, device)
