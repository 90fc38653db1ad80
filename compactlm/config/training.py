"""The training sections: ``train`` (pretraining + shared machinery), ``finetune``, ``classifier``, ``distill``."""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from pydantic.dataclasses import dataclass

from compactlm.config.validation import SECTION, CommaList, check

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
LR_SCHEDULERS = ("cosine", "linear", "constant")  # transformers scheduler names
BEST_METRICS = ("loss", "accuracy", "macro_f1")  # loss for every stage; the others from classifier stages
FINETUNE_MODES = ("lora", "full")
CLASSIFIER_LOSSES = ("cross_entropy", "focal")


@dataclass(config=SECTION)
class TrainConfig:
    """Pretraining optimisation, plus the training machinery every stage shares.

    The machinery fields (precision, gradient checkpointing, evaluation, checkpoints, early stopping,
    resume, tracking) apply to every stage: pretraining, distillation and fine-tuning. ``batch_size``
    is per process: the global batch is ``batch_size x processes x grad_accum``.

    Raises:
        ConfigError: a value out of range, an unknown scheduler, device or precision, or (when the best
            checkpoint is kept) ``save_steps`` not a multiple of ``eval_steps``.
    """

    epochs: float = 2.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 32
    grad_accum: int = 1
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    logging_steps: int = 10
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    max_grad_norm: float = 1.0
    precision: str = "auto"  # auto: bf16 on a GPU that supports it, else fp32 | bf16 | fp16 | fp32
    gradient_checkpointing: bool = False
    pack_train: bool = True  # pretraining: concatenate documents into full blocks (no padding) ...
    pack_eval: bool = True  # ... or one (truncated) document per row; switchable separately
    eval_steps: int = 0  # evaluate every N steps; 0: once per epoch
    save_steps: int = 0  # checkpoint every N steps; 0: no periodic checkpoints
    save_total_limit: int = 2  # checkpoints kept (the best one is always kept)
    load_best_model_at_end: bool = False  # end with the checkpoint of the best validation metric
    early_stopping_patience: int = 0  # stop after N evaluations without improvement; 0: off (implies load_best)
    best_metric: str = "loss"  # what "best" means: validation loss, or (classifiers) accuracy or macro_f1
    resume_from_checkpoint: str | None = None  # "last" (latest complete checkpoint, if any) or a checkpoint folder
    mlm_probability: float = 0.15  # masked-LM pretraining: fraction of tokens masked
    log_checkpoints: bool = False  # log every checkpoint folder to the MLflow run (artifacts)
    system_metrics_interval: float = 10.0  # seconds between MLflow system-metric samples; 0: off
    dataloader_workers: int = 0

    def __post_init__(self) -> None:
        check(self.epochs > 0, "train.epochs", self.epochs, "> 0")
        check(self.batch_size >= 1, "train.batch_size", self.batch_size, ">= 1")
        check(self.grad_accum >= 1, "train.grad_accum", self.grad_accum, ">= 1")
        check(0.0 < self.learning_rate <= 1.0, "train.learning_rate", self.learning_rate, "in (0, 1]")
        check(0.0 <= self.warmup_ratio < 1.0, "train.warmup_ratio", self.warmup_ratio, "in [0, 1)")
        check(self.lr_scheduler in LR_SCHEDULERS, "train.lr_scheduler", self.lr_scheduler,
              "cosine, linear or constant")
        check(self.logging_steps >= 1, "train.logging_steps", self.logging_steps, ">= 1")
        check(self.device in ("auto", "cpu", "cuda"), "train.device", self.device, "auto, cpu or cuda")
        check(self.max_grad_norm > 0, "train.max_grad_norm", self.max_grad_norm, "> 0")
        check(self.precision in PRECISIONS, "train.precision", self.precision, ", ".join(PRECISIONS))
        check(self.eval_steps >= 0, "train.eval_steps", self.eval_steps, ">= 0 (0: once per epoch)")
        check(self.save_steps >= 0, "train.save_steps", self.save_steps, ">= 0 (0: no periodic checkpoints)")
        check(self.save_total_limit >= 1, "train.save_total_limit", self.save_total_limit, ">= 1")
        check(self.early_stopping_patience >= 0, "train.early_stopping_patience", self.early_stopping_patience,
              ">= 0 (0: off)")
        check(self.best_metric in BEST_METRICS, "train.best_metric", self.best_metric, ", ".join(BEST_METRICS))
        check(0.0 < self.mlm_probability < 1.0, "train.mlm_probability", self.mlm_probability, "in (0, 1)")
        check(self.system_metrics_interval >= 0, "train.system_metrics_interval", self.system_metrics_interval,
              ">= 0 (0: off)")
        check(self.dataloader_workers >= 0, "train.dataloader_workers", self.dataloader_workers, ">= 0")
        check(self.resume_from_checkpoint is None or bool(str(self.resume_from_checkpoint).strip()),
              "train.resume_from_checkpoint", self.resume_from_checkpoint, "'last', a checkpoint folder or null")
        # Keeping the best checkpoint means saving exactly where the model is evaluated.
        if self.keeps_best and self.save_steps and self.eval_steps:
            check(self.save_steps % self.eval_steps == 0, "train.save_steps", self.save_steps,
                  f"a multiple of train.eval_steps ({self.eval_steps}) to keep the best checkpoint")

    @property
    def keeps_best(self) -> bool:
        """Whether the run ends on its best checkpoint (asked for, or implied by early stopping)."""
        return self.load_best_model_at_end or self.early_stopping_patience > 0


@dataclass(config=SECTION)
class FinetuneConfig:
    """Fine-tuning (instruction, chat, summarization, classification): LoRA, QLoRA or every weight.

    ``mode: lora`` trains a PEFT adapter (``r``, ``alpha``, ``dropout``, ``target_modules``; the
    special values ``all-linear`` and ``auto`` let PEFT pick the modules); ``quantize_4bit`` loads the
    base in 4 bits through bitsandbytes (QLoRA, CUDA only). ``mode: full`` fine-tunes every weight.
    The shared machinery (precision, checkpoints, early stopping, resume) comes from ``train``.
    LoRA scales the adapter's update by ``alpha / r`` (Hu et al. 2021, https://arxiv.org/abs/2106.09685).

    Raises:
        ConfigError: a value out of range, an empty ``target_modules``, an unknown mode, or 4-bit
            weights with ``mode: full``.
    """

    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: CommaList[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    epochs: float | Literal["auto"] = 1.0  # auto: more passes over small data (see training.runner.auto_epochs)
    max_steps: int = -1
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 0.0  # AdamW decoupled weight decay (Loshchilov & Hutter 2019)
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"  # cosine | linear | constant (after the warm-up)
    mode: str = "lora"  # lora | full
    quantize_4bit: bool = False  # QLoRA: NF4 base through bitsandbytes (needs CUDA)
    grad_accum: int = 1
    pack_train: bool = False  # concatenate (prompt-masked) examples into full blocks instead of padding
    pack_eval: bool = False

    def __post_init__(self) -> None:
        check(self.r >= 1, "finetune.r", self.r, ">= 1")
        check(self.alpha >= 1, "finetune.alpha", self.alpha, ">= 1")
        check(0.0 <= self.dropout < 1.0, "finetune.dropout", self.dropout, "in [0, 1)")
        check(len(self.target_modules) > 0, "finetune.target_modules", self.target_modules, "a non-empty list")
        check(self.epochs == "auto" or self.epochs > 0, "finetune.epochs", self.epochs, "> 0 or auto")
        check(self.batch_size >= 1, "finetune.batch_size", self.batch_size, ">= 1")
        check(0.0 < self.learning_rate <= 1.0, "finetune.learning_rate", self.learning_rate, "in (0, 1]")
        check(0.0 <= self.warmup_ratio < 1.0, "finetune.warmup_ratio", self.warmup_ratio, "in [0, 1)")
        check(0.0 <= self.weight_decay < 1.0, "finetune.weight_decay", self.weight_decay, "in [0, 1)")
        check(self.lr_scheduler in LR_SCHEDULERS, "finetune.lr_scheduler", self.lr_scheduler,
              "cosine, linear or constant")
        check(self.mode in FINETUNE_MODES, "finetune.mode", self.mode, " or ".join(FINETUNE_MODES))
        check(not self.quantize_4bit or self.mode == "lora", "finetune.quantize_4bit", self.quantize_4bit,
              "false with finetune.mode=full (4-bit weights cannot be trained directly)")
        check(self.grad_accum >= 1, "finetune.grad_accum", self.grad_accum, ">= 1")


@dataclass(config=SECTION)
class ClassifierConfig:
    """Text classification (intent, sentiment) with an encoder: loss, and optional MLM pretraining first.

    Optimisation and LoRA/full fine-tuning come from ``finetune``; the machinery from ``train``. The focal
    loss is ``-(1 - p_t)^gamma * log(p_t)`` (Lin et al. 2017, https://arxiv.org/abs/1708.02002).

    Raises:
        ConfigError: an unknown loss, or ``focal_gamma`` outside [0, 10].
    """

    loss: str = "cross_entropy"  # cross_entropy | focal
    focal_gamma: float = 2.0  # focal loss: (1 - p_t)^gamma down-weights easy examples; 0 is cross-entropy
    mlm_pretrain: bool = False  # masked-LM pretraining of the encoder preset on the same corpus first
    # The label of out-of-scope rows (CLINC150: "oos"): not a class; the model abstains to it below a
    # confidence threshold chosen on the validation split (compactlm.models.classifier). None: off.
    oos_label: str | None = None
    # The in-scope accuracy (a fraction, absolute) the abstentions may cost on validation: the threshold
    # catches the most out-of-scope rows within it (compactlm.models.classifier.choose_threshold).
    oos_max_accuracy_loss: float = 0.01

    def __post_init__(self) -> None:
        check(self.oos_label is None or bool(str(self.oos_label).strip()), "classifier.oos_label", self.oos_label,
              "a label (or null)")
        check(0.0 <= self.oos_max_accuracy_loss <= 1.0, "classifier.oos_max_accuracy_loss",
              self.oos_max_accuracy_loss, "in [0, 1] (a fraction of in-scope accuracy)")
        check(self.loss in CLASSIFIER_LOSSES, "classifier.loss", self.loss, " or ".join(CLASSIFIER_LOSSES))
        check(0.0 <= self.focal_gamma <= 10.0, "classifier.focal_gamma", self.focal_gamma, "in [0, 10]")


@dataclass(config=SECTION)
class DistillConfig:
    """Knowledge distillation of the student (``model``) from a teacher.

    ``teacher``: a model folder (e.g. a larger preset trained here), a registry URI
    (``models:/name@alias`` or ``models:/name/3``) or a Hugging Face hub id; null: no distillation.
    The loss is ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard loss``
    (Hinton et al. 2015, https://arxiv.org/abs/1503.02531; ``T^2`` keeps the soft term's gradients
    on the scale of the hard one's).

    Generative shapes distil a causal-LM base (the ``distill`` stage; the hard loss is the next-token
    cross-entropy; teacher and student share a tokenizer). Classification distils the classifier itself
    (``finetune-classifier``; the hard loss is ``classifier.loss``, cross-entropy or focal): the teacher
    is a sequence classifier whose labels cover the student's, or ``baseline``, the run's TF-IDF +
    linear SVM with its margins temperature-scaled on the validation split into logits
    (``compactlm.training.classifier_teachers``).

    Raises:
        ConfigError: a blank teacher, ``alpha`` outside [0, 1] or ``temperature`` outside (0, 100].
    """

    teacher: str | None = None  # classification also takes "baseline"
    alpha: float = 0.5  # weight of the soft (KL) term
    temperature: float = 2.0

    def __post_init__(self) -> None:
        check(self.teacher is None or bool(str(self.teacher).strip()), "distill.teacher", self.teacher,
              "a model folder, models:/ URI, hub id, baseline (classification) or null")
        check(0.0 <= self.alpha <= 1.0, "distill.alpha", self.alpha, "in [0, 1]")
        check(0.0 < self.temperature <= 100.0, "distill.temperature", self.temperature, "in (0, 100]")
