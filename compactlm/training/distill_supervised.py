"""Supervised (response-token) distillation from a teacher's cached sparse top-k targets.

The teacher reads each training pair once, in the chat format both models share (``supervised_dataset``:
prompt-masked, the loss on the response and its EOS only), and its next-token distribution at
temperature ``T`` is kept at every labelled position as its ``k`` most likely tokens, their
log-probabilities and the log of the mass left over (the "tail"). The student then trains for any number
of epochs against those targets without running the teacher again: on two CPU cores a 135M teacher costs
several ms per token, a 13M student a fraction of that, so a teacher forward per student step would
dominate the run. Caching top-k teacher logits is the usual sparse knowledge distillation of LLMs
(e.g. Raman et al. 2023, https://arxiv.org/abs/2306.04586; Anshumann et al. 2025, "Sparse Logit
Sampling", https://arxiv.org/abs/2503.16870, on its bias).

The soft term is the KL divergence between the two distributions coarsened to ``k + 1`` outcomes (the
teacher's top-k tokens and "any other token"), which needs no renormalisation, is exact when
``k`` covers the vocabulary and, by the data-processing inequality, never exceeds the full KL. The loss is
``alpha * T^2 * KL_k(teacher_T || student_T) + (1 - alpha) * CE`` per labelled position (Hinton et al.
2015, as ``compactlm.training.distill``). ``alpha = 0`` with no targets is the no-teacher control: the
same student, data order and steps on the cross-entropy alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from compactlm.config import TrainConfig
from compactlm.errors import ConfigError
from compactlm.models.presets import build_decoder
from compactlm.training.encoding import IGNORE_INDEX, padding_collator, supervised_dataset
from compactlm.training.runner import StageOptim, TrainSummary, fit_stage, on_main_process, start_stage, summarize

TEACHER_COLUMNS = ("teacher_ids", "teacher_logprobs", "teacher_tail")


@dataclass
class SparseTargets:
    """The teacher's sparse next-token targets over the labelled positions of each encoded pair.

    Attributes:
        input_ids, labels: the encoded pairs (``supervised_dataset``: ``labels`` is IGNORE_INDEX over the prompt).
        token_ids: per pair, ``positions x k`` top-k token ids, flattened row by row (a position predicts
            the next token; positions in the order of the pair's labelled next tokens).
        logprobs: per pair, the matching ``positions x k`` log-probabilities at ``temperature`` (nats).
        tail: per pair, one log-probability per position: the mass outside the top k (nats; -inf clamped
            to -100).
        top_k: tokens kept per position.
        temperature: the softmax temperature the log-probabilities were taken at.
        seconds: wall time of the teacher's forward passes, in seconds.
        tokens: tokens the teacher read (prompts included).
    """

    input_ids: list[list[int]]
    labels: list[list[int]]
    token_ids: list[list[int]]
    logprobs: list[list[float]]
    tail: list[list[float]]
    top_k: int
    temperature: float
    seconds: float
    tokens: int

    @property
    def positions(self) -> int:
        """Labelled positions, all pairs together (one target distribution each)."""
        return sum(len(t) for t in self.tail)

    def dataset(self):
        """The pairs and their targets as a ``datasets.Dataset`` (the columns ``distillation_collator`` reads)."""
        from datasets import Dataset

        return Dataset.from_dict({"input_ids": self.input_ids, "labels": self.labels, "teacher_ids": self.token_ids,
                                  "teacher_logprobs": self.logprobs, "teacher_tail": self.tail})


def _topk_with_tail(logits, top_k: int, temperature: float):
    """``(ids, logprobs, tail)`` of ``logits`` (N, V) at ``temperature``: top-k and the log-mass of the rest."""
    import torch

    scaled = logits.float() / temperature
    total = torch.logsumexp(scaled, -1, keepdim=True)
    values, ids = scaled.topk(top_k, -1)
    rest = torch.logsumexp(scaled.scatter(-1, ids, float("-inf")), -1) - total.squeeze(-1)
    return ids, values - total, rest.clamp(min=-100.0)


def teacher_targets(teacher, tokenizer, frame: pd.DataFrame, max_length: int, top_k: int = 32,
                    temperature: float = 2.0, batch_size: int = 8) -> SparseTargets:
    """Run the teacher once over the supervised pairs of ``frame`` and keep its top-k targets.

    Pairs are batched by length (little padding) and run without gradients on the teacher's device.

    Args:
        teacher: a causal LM (``model(input_ids, attention_mask).logits``), e.g. the fine-tuned SmolLM2.
        tokenizer: the tokenizer teacher and student share; pairs are rendered in its chat format.
        frame: supervised rows (instruction/response or prompt/completion, see ``supervised_pairs``).
        max_length: tokens per pair, prompt and response together (longer pairs are cut at the end).
        top_k: tokens kept per position (1 to the vocabulary size).
        temperature: softmax temperature of the stored log-probabilities (> 0).
        batch_size: pairs per forward pass.

    Returns:
        The encoded pairs with their targets; only the first ``len(tokenizer)`` logits count.

    Raises:
        ConfigError: ``top_k`` outside [1, vocabulary] or ``temperature`` <= 0.
        DataError: the frame has no supervised columns.
    """
    import torch

    vocab = len(tokenizer)
    if not 1 <= top_k <= vocab:
        raise ConfigError(f"top_k must be in [1, {vocab}] (the vocabulary), got {top_k}")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    data = supervised_dataset(frame, tokenizer, max_length)
    input_ids, labels = list(data["input_ids"]), list(data["labels"])
    token_ids: list[list[int]] = [[] for _ in input_ids]
    logprobs: list[list[float]] = [[] for _ in input_ids]
    tail: list[list[float]] = [[] for _ in input_ids]
    order = sorted(range(len(input_ids)), key=lambda i: len(input_ids[i]))
    device = next(teacher.parameters()).device
    teacher.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(order), batch_size):
            rows = order[first:first + batch_size]
            width = max(len(input_ids[i]) for i in rows)
            ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(rows):
                ids[r, :len(input_ids[i])], mask[r, :len(input_ids[i])] = torch.tensor(input_ids[i]), 1
            logits = teacher(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1, :vocab]
            for r, i in enumerate(rows):
                keep = torch.tensor([t != IGNORE_INDEX for t in labels[i][1:]], dtype=torch.bool)
                top_ids, top_logprobs, rest = _topk_with_tail(logits[r, :len(keep)][keep.to(device)], top_k,
                                                              temperature)
                token_ids[i] = top_ids.to(torch.int32).flatten().tolist()
                logprobs[i] = top_logprobs.flatten().tolist()
                tail[i] = rest.tolist()
    return SparseTargets(input_ids, labels, token_ids, logprobs, tail, top_k, temperature,
                         time.perf_counter() - start, sum(len(i) for i in input_ids))


def sparse_distillation_loss(student_logits, targets, teacher_ids, teacher_logprobs, teacher_tail, alpha: float,
                             temperature: float):
    """``alpha * T^2 * KL_k + (1 - alpha) * CE``, means over labelled positions (one row each).

    ``KL_k`` compares the teacher's and the student's distributions at temperature ``T`` over ``k + 1``
    outcomes: each of the teacher's top-k tokens, and "any other token" (the tail). With ``k`` equal to
    the vocabulary it is the full KL (``classifier_distillation_loss``); with fewer it is a lower bound.

    Args:
        student_logits: (positions, >= vocab) the student's next-token logits (computed in fp32).
        targets: (positions,) the reference next tokens (int64), for the cross-entropy.
        teacher_ids: (positions, k) the teacher's top-k token ids (int64).
        teacher_logprobs: (positions, k) their log-probabilities at ``temperature``, in nats.
        teacher_tail: (positions,) the log-probability of every other token, in nats.
        alpha: weight of the soft term, in [0, 1]; 0 is the cross-entropy alone (teacher tensors ignored).
        temperature: the temperature the teacher's log-probabilities were taken at (> 0).

    Returns:
        A scalar tensor, in nats per labelled position.
    """
    import torch
    import torch.nn.functional as F

    logits = student_logits.float()
    logprobs = torch.log_softmax(logits, -1)
    hard = F.nll_loss(logprobs, targets)
    if alpha == 0.0:
        return hard
    scaled = logprobs if temperature == 1.0 else torch.log_softmax(logits / temperature, -1)
    student_top = scaled.gather(-1, teacher_ids)
    # The tail from the top-k mass: no second pass over the vocabulary. Clamped at 1e-6 of mass, where
    # float32 stops resolving 1 - sum; the teacher's tail weighs that term, and it is as small there.
    student_tail = torch.log1p(-student_top.exp().sum(-1).clamp(max=1.0 - 1e-6))
    teacher_top, teacher_tail = teacher_logprobs.float(), teacher_tail.float()
    kl = (teacher_top.exp() * (teacher_top - student_top)).sum(-1) \
        + teacher_tail.exp() * (teacher_tail - student_tail)
    return alpha * temperature**2 * kl.mean() + (1.0 - alpha) * hard


def distillation_collator(tokenizer, top_k: int):
    """Pads pairs like ``padding_collator`` and stacks the teacher columns of the batch's positions.

    Returns:
        ``collate(rows) -> batch``: ``input_ids``, ``attention_mask``, ``labels`` and, when the rows have
        them, ``teacher_ids`` (positions, k), ``teacher_logprobs`` (positions, k), ``teacher_tail``
        (positions,), in the row-major order of the batch's labelled positions.
    """
    import torch

    pad = padding_collator(tokenizer)

    def collate(rows: list[dict]) -> dict:
        teacher = {c: [row.pop(c) for row in rows] for c in TEACHER_COLUMNS if c in rows[0]}
        batch = pad(rows)
        if teacher:
            flat = {c: torch.tensor([t for r in values for t in r]) for c, values in teacher.items()}
            batch["teacher_ids"] = flat["teacher_ids"].view(-1, top_k)
            batch["teacher_logprobs"] = flat["teacher_logprobs"].view(-1, top_k)
            batch["teacher_tail"] = flat["teacher_tail"]
        return batch

    return collate


def response_logits(model, input_ids, attention_mask, labels):
    """The causal LM's logits at the positions that predict a label, and those labels.

    The decoder runs over every token; the output layer only over the labelled positions (about half of
    a support pair), which saves the largest matrix product of a small-width, large-vocabulary model.

    Returns:
        ``(logits (positions, vocab), targets (positions,))``, positions in row-major order.
    """
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return model.get_output_embeddings()(hidden[:, :-1][keep]), targets[keep]


def _sparse_trainer_class(alpha: float, temperature: float):
    from transformers import Trainer

    class SparseDistillationTrainer(Trainer):
        """A Trainer whose loss mixes cached sparse teacher targets with the hard labels (CE alone without)."""

        loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides it for gradient accumulation

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            logits, targets = response_logits(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
            if "teacher_ids" in inputs:  # training batches; validation batches score the cross-entropy
                if inputs["teacher_tail"].shape[0] != targets.shape[0]:
                    raise ValueError(f"the batch has {targets.shape[0]} labelled positions but "
                                     f"{inputs['teacher_tail'].shape[0]} teacher targets")
                loss = sparse_distillation_loss(logits, targets, inputs["teacher_ids"].long(),
                                                inputs["teacher_logprobs"], inputs["teacher_tail"], alpha,
                                                temperature)
            else:
                loss = sparse_distillation_loss(logits, targets, None, None, None, 0.0, temperature)
            return (loss, {"logits": logits}) if return_outputs else loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            import torch

            inputs = self._prepare_inputs(inputs)
            with torch.no_grad():
                loss = self.compute_loss(model, inputs)
            return loss.detach(), None, None

    return SparseDistillationTrainer


def distill_supervised(train: pd.DataFrame | SparseTargets, tokenizer, output_dir: str | Path, preset: str,
                       train_cfg: TrainConfig, max_length: int, alpha: float = 0.5, temperature: float = 2.0,
                       val: pd.DataFrame | None = None, report_to_mlflow: bool = False,
                       run_name: str = "distill-supervised") -> TrainSummary:
    """Train a decoder preset from scratch on supervised pairs, with or without a teacher's sparse targets.

    Args:
        train: the teacher's targets over the training pairs (``teacher_targets``), or the training rows
            themselves for the no-teacher control (then ``alpha`` must be 0).
        tokenizer: the teacher's tokenizer; the student takes it (vocabulary, special ids, chat template)
            and is saved with it.
        output_dir: receives the student and the tokenizer; ``checkpoints/`` beside them.
        preset: a decoder preset (``compactlm.models.presets``), built with the tokenizer's vocabulary.
        train_cfg: optimisation (``epochs`` or ``max_steps``, batch, learning rate, schedule, seed) and the
            shared machinery (device, precision, evaluation cadence, early stopping on the validation loss).
        max_length: tokens per pair (the validation pairs are cut like the training ones).
        alpha: weight of the soft term, in [0, 1] (0: the cross-entropy alone).
        temperature: must equal the targets' temperature when ``alpha`` > 0.
        val: validation rows, scored by the student's cross-entropy per response token (nats); None: none.
        report_to_mlflow: log step metrics to the active MLflow run.
        run_name: the name the MLflow callback gives a run it has to create.

    Returns:
        The stage's summary (``teacher`` is ``sparse-top<k>`` when the student learned from targets).

    Raises:
        ConfigError: ``alpha`` outside [0, 1], ``alpha`` > 0 without targets, a temperature different from
            the targets', an unknown or encoder preset, early stopping without ``val``; before any training.
        DataError: rows without supervised columns.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    targets = train if isinstance(train, SparseTargets) else None
    if targets is None and alpha > 0:
        raise ConfigError(f"alpha {alpha} needs the teacher's targets (teacher_targets); the control uses alpha 0")
    if targets is not None and alpha > 0 and abs(targets.temperature - temperature) > 1e-9:
        raise ConfigError(f"temperature {temperature} differs from the targets' ({targets.temperature})")
    if train_cfg.keeps_best and val is None:
        raise ConfigError("train.early_stopping_patience / load_best_model_at_end need validation rows (val)")
    output_dir = Path(output_dir)
    device = start_stage(train_cfg, train_cfg.seed)
    student = build_decoder(preset, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                            tokenizer.eos_token_id)
    if targets is not None:
        train_ds = targets.dataset()
        if alpha == 0.0:
            train_ds = train_ds.remove_columns(list(TEACHER_COLUMNS))
    else:
        train_ds = supervised_dataset(train, tokenizer, max_length)
    val_ds = supervised_dataset(val, tokenizer, max_length) if val is not None else None
    trainer, result = fit_stage(student, tokenizer, train_ds, val_ds, output_dir / "checkpoints",
                                StageOptim.from_train(train_cfg), train_cfg, device, run_name, report_to_mlflow,
                                data_collator=distillation_collator(tokenizer, targets.top_k if targets else 1),
                                trainer_class=_sparse_trainer_class(alpha, temperature),
                                remove_unused_columns=False)
    on_main_process(trainer, lambda: (student.save_pretrained(output_dir), tokenizer.save_pretrained(output_dir)))
    return summarize(trainer, result, output_dir, train_ds, student,
                     teacher=f"sparse-top{targets.top_k}" if targets is not None and alpha > 0 else None)
