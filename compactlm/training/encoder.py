"""Encoders: masked-LM pretraining and sequence classification (cross-entropy or focal loss, optionally distilled).

A classifier starts from an encoder preset (WordPiece tokenizer trained here), from the output of
``pretrain_encoder_mlm`` (the same corpus, MLM first), or from any Hugging Face encoder. Label strings
become ids; ``id2label``/``label2id`` are saved in the model's config, so ``predict_labels`` returns
strings again. With ``distill.teacher`` set, the classifier also learns the teacher's softened
distribution (``compactlm.training.classifier_teachers``: the run's baseline or another classifier).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from compactlm.config import ClassifierConfig, DistillConfig, FinetuneConfig, ModelConfig, TrainConfig
from compactlm.errors import ConfigError, DataError
from compactlm.evaluation.metrics import accuracy, macro_f1
from compactlm.models.classifier import choose_threshold, class_probabilities
from compactlm.models.compress import compact_encoder
from compactlm.models.loading import load_base
from compactlm.models.presets import build_encoder
from compactlm.models.tokenizer import train_wordpiece_tokenizer
from compactlm.training.adapters import load_for_finetuning, save_finetuned
from compactlm.training.classifier_teachers import teacher_logits
from compactlm.training.distill import classifier_distillation_loss
from compactlm.training.encoding import corpus_texts, document_dataset, pack_documents
from compactlm.training.runner import (
    StageOptim,
    TrainSummary,
    fit_stage,
    on_main_process,
    start_stage,
    summarize,
)

logger = logging.getLogger(__name__)
# Below this many optimizer steps, masked-LM pretraining from scratch left an encoder worse than a random one.
MIN_USEFUL_MLM_STEPS = 1000

TEXT, LABEL = "text", "label"
TEACHER_LOGITS = "teacher_logits"  # the train dataset's column of teacher logits when distilling


def _texts(rows: pd.DataFrame | Sequence[str]) -> list[str]:
    return corpus_texts(rows) if isinstance(rows, pd.DataFrame) else [str(t) for t in rows]


def pretrain_encoder_mlm(train: pd.DataFrame | Sequence[str], val: pd.DataFrame | Sequence[str],
                         output_dir: str | Path, model_cfg: ModelConfig, train_cfg: TrainConfig,
                         report_to_mlflow: bool = True) -> TrainSummary:
    """Masked-LM pretraining of an encoder (a preset with a WordPiece tokenizer trained here, or ``model.base``).

    Args:
        train: texts, or rows of any shape (see ``corpus_texts``); the only text the tokenizer sees.
        val: validation texts or rows.
        output_dir: receives the ``BertForMaskedLM`` (or the base's MLM model) and its tokenizer.
        model_cfg: an encoder preset (or ``base``), vocabulary and context length (``max_seq_len``, tokens:
            the block size when packed, the cut otherwise).
        train_cfg: optimisation, ``mlm_probability`` (fraction of tokens masked; transformers'
            ``DataCollatorForLanguageModeling`` replaces 80% of them with ``[MASK]``, 10% with a random
            token and keeps 10%, BERT's recipe, Devlin et al. 2019) and the shared machinery (packing).
        report_to_mlflow: log step metrics to the active MLflow run.

    Returns:
        The stage's summary (losses are the MLM cross-entropy in nats per masked token).

    Raises:
        ConfigError: a base whose tokenizer has no mask token, a decoder preset, an unusable device or
            precision, or any base/length problem (see ``load_base``).
        DataError: rows without a text column (see ``corpus_texts``).
        ValueError: packing a corpus shorter than one block of ``max_seq_len`` tokens.
    """
    from transformers import DataCollatorForLanguageModeling


    output_dir = Path(output_dir)
    device = start_stage(train_cfg, train_cfg.seed)
    documents, val_docs = _texts(train), _texts(val)
    if model_cfg.base:
        model, tokenizer = load_base(model_cfg.base, "encoder", max_seq_len=model_cfg.max_seq_len)
    else:
        tokenizer = train_wordpiece_tokenizer(documents, model_cfg.vocab_size, model_cfg.max_seq_len)
        model = build_encoder(model_cfg.preset, len(tokenizer), tokenizer.pad_token_id, "mlm",
                              dropout=model_cfg.dropout)
    if tokenizer.mask_token is None:
        raise ConfigError(f"model.base {model_cfg.base!r}: its tokenizer has no mask token for masked-LM pretraining")
    length = model_cfg.max_seq_len

    def encode(docs: list[str], packed: bool):
        # The collator draws the masks and their labels: drop the causal labels.
        return pack_documents(docs, tokenizer, length).remove_columns("labels") if packed \
            else document_dataset(docs, tokenizer, length, with_labels=False)

    train_ds, val_ds = encode(documents, train_cfg.pack_train), encode(val_docs, train_cfg.pack_eval)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=train_cfg.mlm_probability,
                                               pad_to_multiple_of=8)
    trainer, result = fit_stage(model, tokenizer, train_ds, val_ds, output_dir / "checkpoints",
                                StageOptim.from_train(train_cfg), train_cfg, device, "pretrain-mlm",
                                report_to_mlflow, data_collator=collator)
    on_main_process(trainer, lambda: (model.save_pretrained(output_dir), tokenizer.save_pretrained(output_dir)))
    if not model_cfg.base and result.steps < MIN_USEFUL_MLM_STEPS:
        # Measured on 77 CLINC150 intents (7,500 short queries): 1 epoch = 40 steps of masked-LM pretraining
        # (loss 6.5, token frequencies only) left the encoder at 8.7 % validation accuracy after a fine-tuning
        # epoch, where the same preset from random weights reached 64 %.
        logger.warning("masked-LM pretraining ran only %d optimizer steps from scratch: an encoder this briefly "
                       "pretrained fine-tunes worse than a random one; use a pretrained model.base (e.g. "
                       "bundled:all-minilm-l6-v2) or classifier.mlm_pretrain=false", result.steps)
    return summarize(trainer, result, output_dir, train_ds, model)


def focal_loss(logits, labels, gamma: float):
    """Mean focal loss ``-(1 - p_t)^gamma * log p_t`` over the batch; ``gamma=0`` is cross-entropy.

    Focal loss of Lin et al. 2017, "Focal Loss for Dense Object Detection" (https://arxiv.org/abs/1708.02002),
    without its class-balancing ``alpha`` term; ``p_t`` is the softmax probability of the true class.

    Args:
        logits: (batch, classes), any float dtype (computed in fp32).
        labels: (batch,) class ids (int64).
        gamma: focusing parameter >= 0 (``classifier.focal_gamma``; the paper's default is 2).

    Returns:
        A scalar tensor, in nats.
    """
    import torch.nn.functional as F

    log_pt = F.log_softmax(logits.float(), dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
    return (-((1.0 - log_pt.exp()) ** gamma) * log_pt).mean()


def _classifier_trainer_class(cls_cfg: ClassifierConfig, distill_cfg: DistillConfig):
    """None (the model's own cross-entropy) unless the loss is focal or a teacher's logits are mixed in."""
    from functools import partial

    from transformers import Trainer

    if cls_cfg.loss != "focal" and not distill_cfg.teacher:
        return None
    hard = partial(focal_loss, gamma=cls_cfg.focal_gamma) if cls_cfg.loss == "focal" else None

    class ClassifierTrainer(Trainer):
        """A Trainer whose loss is the focal loss, and/or mixes in the teacher's logits (train batches)."""

        loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides it for gradient accumulation

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch.nn.functional as F

            labels = inputs.pop("labels")
            teacher = inputs.pop(TEACHER_LOGITS, None)  # validation rows have none: scored on the hard loss
            outputs = model(**inputs)
            if teacher is not None:
                loss = classifier_distillation_loss(outputs.logits, teacher, labels, distill_cfg.alpha,
                                                    distill_cfg.temperature, hard_loss=hard)
            else:
                loss = hard(outputs.logits, labels) if hard else F.cross_entropy(outputs.logits.float(), labels)
            return (loss, outputs) if return_outputs else loss

    return ClassifierTrainer


def label_maps(train: pd.DataFrame, val: pd.DataFrame) -> dict[int, str]:
    """``id2label`` over the train labels (sorted); a validation label train never shows is a data error.

    Args:
        train, val: rows with a ``label`` column (compared as strings).

    Returns:
        Class id -> label string, ids 0..n-1 in sorted label order.

    Raises:
        DataError: a validation label absent from train, or fewer than 2 labels in train.
    """
    labels = sorted(train[LABEL].astype(str).unique())
    unseen = sorted(set(val[LABEL].astype(str)) - set(labels))
    if unseen:
        raise DataError(f"validation label(s) {unseen[:5]} never occur in the train split")
    if len(labels) < 2:
        raise DataError(f"classification needs at least 2 labels in the train split, got {labels}")
    return dict(enumerate(labels))


def _set_abstention(model, tokenizer, val: pd.DataFrame, id2label: dict[int, str], oos_label: str,
                    max_length: int, max_accuracy_loss: float) -> None:
    """Choose the abstention threshold on the whole validation split and record it in the model's config."""
    classes = [id2label[i] for i in range(len(id2label))]
    scores = class_probabilities(model, tokenizer, [str(t) for t in val[TEXT]], max_length=max_length)
    threshold = choose_threshold(scores, classes, [str(y) for y in val[LABEL]], oos_label, max_accuracy_loss)
    model.config.oos_label = oos_label
    model.config.oos_threshold = threshold  # None (no out-of-scope validation row): never abstains


def _classification_dataset(frame: pd.DataFrame, tokenizer, max_length: int, label2id: dict[str, int],
                            teacher=None):
    from datasets import Dataset

    encoded = tokenizer([str(t) for t in frame[TEXT]], truncation=True, max_length=max_length, verbose=False)
    extra = {} if teacher is None else {TEACHER_LOGITS: teacher.tolist()}
    return Dataset.from_dict({**encoded, "labels": [label2id[str(v)] for v in frame[LABEL]], **extra})


def _carrying_teacher_logits(collator):
    """``collator`` for rows that may hold ``teacher_logits``, stacked apart from the padding.

    The tokenizer's ``pad`` would carry them too, but converts a list of floats per row about 7x slower
    than ``torch.tensor`` (16 ms against 2 ms a batch of 32 rows x 150 classes).
    """

    def collate(features: list[dict]):
        import torch

        if not features or TEACHER_LOGITS not in features[0]:
            return collator(features)
        batch = collator([{k: v for k, v in f.items() if k != TEACHER_LOGITS} for f in features])
        batch[TEACHER_LOGITS] = torch.tensor([f[TEACHER_LOGITS] for f in features])  # (batch, classes)
        return batch

    return collate


def _accuracy_and_f1(id2label: dict[int, str]):

    def compute(prediction) -> dict[str, float]:
        predicted = [id2label[int(i)] for i in prediction.predictions.argmax(-1)]
        truth = [id2label[int(i)] for i in prediction.label_ids]
        return {"accuracy": accuracy(predicted, truth), "macro_f1": macro_f1(predicted, truth)}

    return compute


def finetune_classifier(train: pd.DataFrame, val: pd.DataFrame, output_dir: str | Path, model_cfg: ModelConfig,
                        cls_cfg: ClassifierConfig, finetune_cfg: FinetuneConfig | None = None,
                        train_cfg: TrainConfig | None = None, base_dir: str | Path | None = None,
                        report_to_mlflow: bool = True, distill_cfg: DistillConfig | None = None) -> TrainSummary:
    """Train a sequence classifier on ``text``/``label`` rows; ``output_dir/merged`` is the model to ship.

    Args:
        train, val: rows with ``text`` and ``label`` (any label strings).
        output_dir: receives ``merged/`` (model with id2label, tokenizer), ``adapter/`` with LoRA,
            and ``checkpoints/``.
        model_cfg: the encoder preset when there is no base; ``max_seq_len`` truncates texts.
        cls_cfg: cross-entropy or focal loss.
        finetune_cfg: fine-tuning mode and optimisation (None: full fine-tuning with the ``finetune``
            section's defaults).
        train_cfg: the shared machinery (None: defaults).
        base_dir: an MLM-pretrained encoder (``pretrain_encoder_mlm``) or any HF encoder; None:
            ``model.base``, else the preset from scratch.
        report_to_mlflow: log step metrics (with eval accuracy and macro-F1) to the active MLflow run.
        distill_cfg: with ``teacher`` set (``baseline`` or a sequence classifier), the train loss is
            ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard loss`` over the teacher's logits
            of the (in-scope) train rows; the hard loss is the cross-entropy or the focal loss. Validation
            is scored on the hard loss alone. None: no teacher.

    Returns:
        The stage's summary (``teacher`` set when distilled); ``output_dir`` in it is ``output_dir/merged``.

    Raises:
        ConfigError: LoRA on a randomly initialised preset, an unusable device or precision, any
            base/target/length problem, or a teacher that cannot be read or lacks one of the labels.
        DataError: fewer than 2 labels, or a validation label missing from train.
    """
    from transformers import DataCollatorWithPadding

    finetune_cfg = finetune_cfg or FinetuneConfig(mode="full")
    cfg = train_cfg or TrainConfig()
    distill_cfg = distill_cfg or DistillConfig()
    output_dir = Path(output_dir)
    all_val = val
    if cls_cfg.oos_label is not None:  # out-of-scope rows are not a class: only the abstention threshold uses them
        train, val = (frame[frame[LABEL].astype(str) != cls_cfg.oos_label] for frame in (train, val))
    optim = StageOptim.from_finetune(finetune_cfg, cfg, n_rows=len(train))
    device = start_stage(cfg, optim.seed)
    id2label = label_maps(train, val)
    label2id = {v: k for k, v in id2label.items()}
    base = base_dir or model_cfg.base
    if base is None and finetune_cfg.mode == "lora":
        raise ConfigError("finetune.mode must be full to train a classifier from a randomly initialised preset "
                          "(or set classifier.mlm_pretrain=true or model.base)")
    compacted = model_cfg.prune_vocab or model_cfg.keep_layers
    if compacted and finetune_cfg.mode != "full":
        raise ConfigError("finetune.mode must be full to compact the base (model.prune_vocab, model.keep_layers): "
                          "a LoRA adapter is merged into the original base")
    # Before the student is built: a teacher without the student's labels fails first.
    teacher = teacher_logits(distill_cfg.teacher, train, val, [id2label[i] for i in range(len(id2label))],
                             device, optim.seed) if distill_cfg.teacher else None
    if base is not None:
        model, tokenizer = load_for_finetuning(base, "classifier", finetune_cfg, device, model_cfg.max_seq_len,
                                               cfg.gradient_checkpointing, id2label=id2label)
        model, tokenizer = compact_encoder(model, tokenizer, _texts(train), model_cfg.prune_vocab,
                                           model_cfg.keep_layers, model_cfg.max_seq_len)
    else:
        tokenizer = train_wordpiece_tokenizer(_texts(train), model_cfg.vocab_size, model_cfg.max_seq_len)
        model = build_encoder(model_cfg.preset, len(tokenizer), tokenizer.pad_token_id, "classification",
                              id2label=id2label, dropout=model_cfg.dropout)
    train_ds = _classification_dataset(train, tokenizer, model_cfg.max_seq_len, label2id, teacher)
    val_ds = _classification_dataset(val, tokenizer, model_cfg.max_seq_len, label2id)
    collator = _carrying_teacher_logits(DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8))
    trainer, result = fit_stage(
        model, tokenizer, train_ds, val_ds, output_dir / "checkpoints", optim, cfg, device, "finetune-classifier",
        report_to_mlflow, data_collator=collator,
        trainer_class=_classifier_trainer_class(cls_cfg, distill_cfg),
        remove_unused_columns=teacher is None,  # the Trainer drops columns the model's forward does not take
        gradient_checkpointing=False if finetune_cfg.quantize_4bit else None,
        compute_metrics=_accuracy_and_f1(id2label))
    summary = summarize(trainer, result, output_dir / "merged", train_ds, model, teacher=distill_cfg.teacher)
    if cls_cfg.oos_label is not None:
        _set_abstention(model, tokenizer, all_val, id2label, cls_cfg.oos_label, model_cfg.max_seq_len,
                        cls_cfg.oos_max_accuracy_loss)
    save_finetuned(trainer, model, tokenizer, base, "classifier", finetune_cfg, output_dir, id2label=id2label)
    return summary
