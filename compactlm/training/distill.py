"""Knowledge distillation of a causal-LM student from any teacher checkpoint, and the loss classifiers share.

The loss is ``alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE`` over
the labelled next-token positions (the ``T^2`` keeps the soft gradients on the hard loss's scale,
Hinton et al. 2015); a distilled sequence classifier (``compactlm.training.encoder``) takes the same
loss over its batch, with teacher logits from ``compactlm.training.classifier_teachers``.

A causal teacher and its student must share a tokenizer: a different vocabulary or token-to-id map fails
before any compute. A student built from a preset simply takes the teacher's tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from compactlm.config import DistillConfig, ModelConfig, TrainConfig
from compactlm.errors import ConfigError
from compactlm.models.loading import load_base, load_tokenizer_for, resolve_model_ref
from compactlm.models.presets import build_decoder
from compactlm.training.encoding import IGNORE_INDEX, corpus_texts, document_dataset, pack_documents, padding_collator
from compactlm.training.runner import (
    StageOptim,
    TrainSummary,
    fit_stage,
    on_main_process,
    resolve_device,
    resolve_precision,
    summarize,
)

BASELINE_TEACHER = "baseline"  # distill.teacher: the run's TF-IDF + linear SVM baseline (classifiers only)


def check_vocab_match(teacher_tokenizer, student_tokenizer, teacher_ref: str) -> None:
    """Fail unless both tokenizers map the same tokens to the same ids.

    Args:
        teacher_tokenizer, student_tokenizer: the two tokenizers (``get_vocab()`` compared, added tokens included).
        teacher_ref: the teacher as configured, named in the error.

    Raises:
        ConfigError: one line naming ``distill.teacher``, the sizes or the first differing token.
    """
    teacher_vocab, student_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if len(teacher_vocab) != len(student_vocab):
        raise ConfigError(f"distill.teacher {teacher_ref!r}: vocabulary mismatch: the teacher's tokenizer has "
                          f"{len(teacher_vocab)} tokens, the student's {len(student_vocab)}")
    for token, index in sorted(teacher_vocab.items(), key=lambda item: item[1]):
        if student_vocab.get(token) != index:
            raise ConfigError(f"distill.teacher {teacher_ref!r}: vocabulary mismatch: token {token!r} is id {index} "
                              f"for the teacher and {student_vocab.get(token)} for the student")


def classifier_distillation_loss(student_logits, teacher_logits, labels, alpha: float, temperature: float,
                                 hard_loss=None):
    """``alpha * T^2 * KL + (1 - alpha) * hard``, both means over the rows: one classification per row.

    Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"
    (https://arxiv.org/abs/1503.02531): ``KL(softmax(teacher / T) || softmax(student / T))`` per row,
    summed over the classes; the ``T^2`` factor keeps the soft term's gradients on the hard term's scale.
    A sequence classifier's batch is the rows; a causal LM's labelled positions are (``distillation_loss``).

    Args:
        student_logits, teacher_logits: (rows, classes), any float dtype (computed in fp32).
        labels: (rows,) class ids (int64).
        alpha: weight of the soft (KL) term, in [0, 1]; ``1 - alpha`` weighs the hard term.
        temperature: the softmax temperature ``T`` (> 0; 1 leaves the distributions as they are).
        hard_loss: ``hard_loss(student_logits, labels) -> scalar`` (e.g. the focal loss); None: cross-entropy.

    Returns:
        A scalar tensor, in nats per row.
    """
    import torch.nn.functional as F

    student, teacher = student_logits.float(), teacher_logits.float()
    hard = F.cross_entropy(student, labels) if hard_loss is None else hard_loss(student, labels)
    soft = F.kl_div(F.log_softmax(student / temperature, -1), F.log_softmax(teacher / temperature, -1),
                    log_target=True, reduction="batchmean") * temperature**2
    return alpha * soft + (1.0 - alpha) * hard


def distillation_loss(student_logits, teacher_logits, labels, alpha: float, temperature: float, vocab: int):
    """``classifier_distillation_loss`` over a causal LM's labelled next-token positions (one row each).

    Args:
        student_logits, teacher_logits: (batch, seq, >= vocab); only the first ``vocab`` logits count
            (a model may pad its embedding matrix). Computed in fp32.
        labels: (batch, seq) with IGNORE_INDEX where no loss is taken; shifted here like HF does.
        alpha, temperature: as ``classifier_distillation_loss``.
        vocab: the tokenizer's size, in tokens.

    Returns:
        A scalar tensor, in nats per labelled position (0 for a batch without one).
    """
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX  # (batch, seq - 1)
    if not keep.any():
        return student_logits.sum() * 0.0  # keeps the graph: every process runs the same backward
    return classifier_distillation_loss(student_logits[:, :-1, :vocab][keep], teacher_logits[:, :-1, :vocab][keep],
                                        targets[keep], alpha, temperature)


def _distillation_trainer_class(teacher, alpha: float, temperature: float, vocab: int):
    from transformers import Trainer

    class DistillationTrainer(Trainer):
        """A Trainer whose loss mixes the teacher's softened distribution with the hard labels."""

        loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides it for gradient accumulation

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch

            labels = inputs.pop("labels")
            outputs = model(**inputs)
            if teacher.device != outputs.logits.device:
                teacher.to(outputs.logits.device)
            with torch.no_grad():
                teacher_logits = teacher(**inputs).logits
            loss = distillation_loss(outputs.logits, teacher_logits, labels, alpha, temperature, vocab)
            return (loss, outputs) if return_outputs else loss

    return DistillationTrainer


def distill(train: pd.DataFrame, val: pd.DataFrame, output_dir: str | Path, model_cfg: ModelConfig,
            train_cfg: TrainConfig, distill_cfg: DistillConfig, teacher: str | Path | None = None,
            student: str | Path | None = None, report_to_mlflow: bool = True) -> TrainSummary:
    """Distil a causal-LM student from a teacher on the corpus of ``train`` (language-model distillation).

    Args:
        train, val: rows of any shape (see ``corpus_texts``).
        output_dir: receives the student and the (shared) tokenizer; ``checkpoints/`` beside them.
        model_cfg: the student preset (its vocabulary is the teacher's), ``max_seq_len``, ``dropout``;
            or ``model.base`` as the student.
        train_cfg: optimisation and the shared machinery (packing: ``train.pack_train``/``pack_eval``).
        distill_cfg: ``alpha`` (weight of the KL term), ``temperature``; ``teacher`` when the argument is None.
        teacher: a model folder, a ``models:/`` registry URI or a hub id (a model object is not accepted:
            the reference is logged).
        student: an existing student model (folder/URI/hub id); None: ``model.base``, else the preset.
        report_to_mlflow: log step metrics to the active MLflow run.

    Returns:
        The stage's summary; the student and tokenizer are saved in ``output_dir``.

    Raises:
        ConfigError: no teacher, the ``baseline`` teacher, an unreachable teacher or student, or a
            vocabulary mismatch; before any training compute.
        DataError: rows without a text column (see ``corpus_texts``).
        ValueError: packing a corpus shorter than one block of ``model.max_seq_len`` tokens.
    """
    from transformers import set_seed

    teacher_ref = str(teacher or distill_cfg.teacher or "")
    if not teacher_ref:
        raise ConfigError("distill.teacher must be set to distil a student (a model folder, models:/ URI or hub id)")
    if teacher_ref == BASELINE_TEACHER:
        raise ConfigError(f"distill.teacher {BASELINE_TEACHER!r} (the TF-IDF baseline) teaches classifiers only; "
                          "a causal student needs a causal teacher (a model folder, models:/ URI or hub id)")
    output_dir = Path(output_dir)
    device = resolve_device(train_cfg.device)
    resolve_precision(train_cfg.precision, device)
    teacher_source = resolve_model_ref(teacher_ref, "distill.teacher")  # downloads a registry version once
    tokenizer = load_tokenizer_for(teacher_source, "distill.teacher")
    student_ref = student or model_cfg.base
    if student_ref is not None:
        student_model, student_tokenizer = load_base(str(student_ref), "causal", max_seq_len=model_cfg.max_seq_len)
        check_vocab_match(tokenizer, student_tokenizer, teacher_ref)
    teacher_model, _ = load_base(teacher_source, "causal", max_seq_len=model_cfg.max_seq_len, field="distill.teacher")
    teacher_model.eval().requires_grad_(False)
    set_seed(train_cfg.seed)
    if student_ref is None:
        student_model = build_decoder(model_cfg.preset, len(tokenizer), tokenizer.pad_token_id,
                                      tokenizer.bos_token_id, tokenizer.eos_token_id, dropout=model_cfg.dropout)
    length = model_cfg.max_seq_len
    documents, val_docs = corpus_texts(train), corpus_texts(val)
    train_ds = pack_documents(documents, tokenizer, length) if train_cfg.pack_train \
        else document_dataset(documents, tokenizer, length)
    val_ds = pack_documents(val_docs, tokenizer, length) if train_cfg.pack_eval \
        else document_dataset(val_docs, tokenizer, length)
    trainer_class = _distillation_trainer_class(teacher_model, distill_cfg.alpha, distill_cfg.temperature,
                                                len(tokenizer))
    trainer, result = fit_stage(student_model, tokenizer, train_ds, val_ds, output_dir / "checkpoints",
                                StageOptim.from_train(train_cfg), train_cfg, device, "distill", report_to_mlflow,
                                data_collator=padding_collator(tokenizer), trainer_class=trainer_class)
    on_main_process(trainer, lambda: (student_model.save_pretrained(output_dir), tokenizer.save_pretrained(output_dir)))
    return summarize(trainer, result, output_dir, train_ds, student_model, teacher=teacher_ref)
