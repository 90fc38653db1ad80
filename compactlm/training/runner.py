"""The generic stage runner every training recipe shares: device, precision, Trainer arguments, callbacks,
resume, and the ``TrainSummary`` a stage returns.

A recipe (``causal``, ``encoder``, ``seq2seq``, ``distill``) builds its model and datasets, then calls
``fit_stage``; ``summarize`` turns the finished Trainer into a ``TrainSummary``. A ``StageOptim`` says
how a stage optimises (pretraining reads ``train.*``, fine-tuning ``finetune.*``); ``TrainConfig`` says
how every stage runs (precision, gradient checkpointing, evaluation and checkpoint cadence, early
stopping, resume, tracking). ``run_trainer`` returns the final losses computed so that a resumed run
reports exactly what an uninterrupted one does.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from compactlm.config import FinetuneConfig, TrainConfig
from compactlm.errors import ConfigError
from compactlm.training.callbacks import stage_callbacks, system_metrics
from compactlm.training.checkpoints import resolve_resume


def resolve_device(requested: str) -> str:
    """``auto`` -> cuda when available, else cpu; asking for cuda without one is a config error.

    Raises:
        ConfigError: ``train.device`` is ``cuda`` and torch sees no CUDA device.
    """
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available (use auto or cpu)")
    return requested


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> bf16 on a GPU that supports it, fp16 on an older GPU, fp32 on the CPU.

    Raises:
        ConfigError: fp16 without CUDA, or bf16 on a GPU without bf16 support.
    """
    import torch

    cuda = device == "cuda"
    if precision == "auto":
        if not cuda:
            return "fp32"  # CPU autocast to bf16 is slower than fp32 on most CPUs
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and not cuda:
        raise ConfigError("train.precision 'fp16' needs a CUDA device (use auto, bf16 or fp32)")
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.precision 'bf16' is not supported by this GPU (use auto or fp16)")
    return precision


def start_stage(cfg: TrainConfig, seed: int, device: str | None = None) -> str:
    """Begin a stage: resolve the device, check its precision before any compute, seed every RNG.

    Args:
        cfg: the shared machinery (``train.device``, ``train.precision``).
        seed: the stage's seed (``transformers.set_seed``: Python, NumPy and torch RNGs).
        device: overrides ``cfg.device``.

    Returns:
        ``cpu`` or ``cuda``.

    Raises:
        ConfigError: ``cuda`` asked for without one, or a precision the device cannot run.
    """
    from transformers import set_seed

    resolved = resolve_device(device or cfg.device)
    resolve_precision(cfg.precision, resolved)
    set_seed(seed)
    return resolved


AUTO_EPOCH_EXAMPLES = 60_000  # examples an ``epochs: auto`` run sees (4 passes over CLINC150's 15,000 rows)


def auto_epochs(n_rows: int) -> float:
    """Passes over ``n_rows`` train rows for ``finetune.epochs: auto``: about ``AUTO_EPOCH_EXAMPLES`` examples,
    between 3 and 20 passes (small data needs more passes; early stopping ends a run that stops improving)."""
    return float(min(20, max(3, math.ceil(AUTO_EPOCH_EXAMPLES / max(n_rows, 1)))))


@dataclass(frozen=True)
class StageOptim:
    """How one stage optimises: epochs or steps, batch, learning rate and schedule.

    ``max_steps`` > 0 overrides ``epochs``; ``batch_size`` is per process (the global batch is
    ``batch_size x processes x grad_accum``); ``learning_rate`` is the peak, reached after a linear
    warmup over ``warmup_ratio`` (a fraction) of the steps; ``scheduler`` is a transformers
    ``lr_scheduler_type`` (its ``constant`` has no warmup); ``weight_decay`` is AdamW's decoupled decay;
    ``logging_steps`` counts optimizer steps.
    """

    epochs: float
    max_steps: int
    batch_size: int
    grad_accum: int
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    scheduler: str
    logging_steps: int
    seed: int

    @classmethod
    def from_train(cls, cfg: TrainConfig) -> StageOptim:
        """Pretraining and distillation: everything from ``train``."""
        return cls(cfg.epochs, cfg.max_steps, cfg.batch_size, cfg.grad_accum, cfg.learning_rate, cfg.weight_decay,
                   cfg.warmup_ratio, cfg.lr_scheduler, cfg.logging_steps, cfg.seed)

    @classmethod
    def from_finetune(cls, finetune: FinetuneConfig, train: TrainConfig, seed: int | None = None,
                      n_rows: int | None = None) -> StageOptim:
        """Fine-tuning: optimisation from ``finetune``; logging cadence and seed from ``train``.

        ``n_rows`` (train rows) decides ``epochs: auto`` (``auto_epochs``).
        """
        epochs = auto_epochs(n_rows or 0) if finetune.epochs == "auto" else float(finetune.epochs)
        return cls(epochs, finetune.max_steps, finetune.batch_size, finetune.grad_accum,
                   finetune.learning_rate, finetune.weight_decay, finetune.warmup_ratio, finetune.lr_scheduler,
                   train.logging_steps, train.seed if seed is None else seed)


def _strategies(cfg: TrainConfig, has_eval: bool, best_metric: str = "loss") -> dict[str, Any]:
    """Evaluation and checkpoint cadence; keeping the best checkpoint saves exactly where it evaluates.

    ``best_metric`` is ``loss`` (lower is better) or a metric the stage's ``compute_metrics`` reports
    (``accuracy``, ``macro_f1``: higher is better).
    """
    eval_steps, save_steps = cfg.eval_steps, cfg.save_steps
    if not has_eval:
        return {"eval_strategy": "no", "save_strategy": "steps" if save_steps else "no",
                "save_steps": save_steps or 500, "load_best_model_at_end": False}
    if cfg.keeps_best and save_steps and not eval_steps:
        eval_steps = save_steps  # best-checkpoint retention needs an evaluation at every checkpoint
    out: dict[str, Any] = {"eval_strategy": "steps" if eval_steps else "epoch", "eval_steps": eval_steps or None}
    if cfg.keeps_best:
        out.update(save_strategy=out["eval_strategy"], save_steps=save_steps or eval_steps or 500,
                   load_best_model_at_end=True, metric_for_best_model=f"eval_{best_metric}",
                   greater_is_better=best_metric != "loss")
    else:
        out.update(save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
                   load_best_model_at_end=False)
    return out


def training_arguments(output_dir: str | Path, optim: StageOptim, cfg: TrainConfig, device: str, run_name: str,
                       report_to_mlflow: bool, remove_unused_columns: bool = True, has_eval: bool = True,
                       gradient_checkpointing: bool | None = None, best_metric: str = "loss"):
    """``TrainingArguments`` for one stage.

    Args:
        output_dir: where checkpoints go (``checkpoint-N`` folders).
        optim: the stage's optimisation.
        cfg: the shared machinery.
        device: ``cpu`` or ``cuda`` (already resolved).
        run_name: the name the MLflow callback gives a run it has to create itself.
        report_to_mlflow: log step metrics to the active MLflow run.
        remove_unused_columns: drop dataset columns the model's forward does not take.
        has_eval: whether the stage has a validation set.
        gradient_checkpointing: overrides ``cfg.gradient_checkpointing`` (QLoRA sets it up itself).
    """
    from transformers import TrainingArguments

    precision = resolve_precision(cfg.precision, device)
    checkpointing = cfg.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing
    return TrainingArguments(
        output_dir=str(output_dir),
        run_name=run_name,
        num_train_epochs=optim.epochs,
        max_steps=optim.max_steps,
        per_device_train_batch_size=optim.batch_size,
        per_device_eval_batch_size=optim.batch_size,
        gradient_accumulation_steps=optim.grad_accum,
        learning_rate=optim.learning_rate,
        weight_decay=optim.weight_decay,
        warmup_steps=optim.warmup_ratio,  # a float < 1 is a ratio of the total steps in transformers 5
        lr_scheduler_type=optim.scheduler,
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=optim.logging_steps,
        save_total_limit=cfg.save_total_limit,
        seed=optim.seed,
        data_seed=optim.seed,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=checkpointing,  # gradient checkpointing (the transformers 5 name)
        # Non-reentrant checkpointing works with frozen inputs (PEFT) and DDP.
        activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        report_to=["mlflow"] if report_to_mlflow else [],
        dataloader_num_workers=cfg.dataloader_workers,
        dataloader_pin_memory=device == "cuda",  # pinning only helps host-to-GPU copies
        # Every parameter that requires a gradient gets one in these models: skip DDP's per-step graph walk.
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
        remove_unused_columns=remove_unused_columns,
        **_strategies(cfg, has_eval, best_metric),
    )


@dataclass
class StageResult:
    """What ``run_trainer`` measured: mean losses in nats (per token for language models, per example for a
    classifier), ``seconds`` of wall time in ``train()`` (``eval_seconds`` of it spent on validation: the
    Trainer's ``eval_runtime``), ``steps`` the final global step (resumed ones included)."""

    train_loss: float
    eval_loss: float | None
    steps: int
    seconds: float
    resumed_from: str | None
    best_checkpoint: str | None
    eval_seconds: float = 0.0


def final_losses(log_history: list[dict[str, Any]], best_metric: float | None = None) -> tuple[float, float | None]:
    """The run's mean training loss and its final (or best) validation loss, from the log history.

    The mean is rebuilt from the logged windows (each ``loss`` is the mean over the steps since the
    previous log), so it covers the whole run even when the run was resumed from a checkpoint (the
    Trainer's own ``train_loss`` only covers the steps of its last ``train()`` call).

    Args:
        log_history: ``trainer.state.log_history``.
        best_metric: the best ``eval_loss`` when the best checkpoint was kept; it wins over the last one.

    Returns:
        ``(mean train loss or NaN when nothing was logged, eval loss or None)``.
    """
    total, steps, previous = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            window = entry["step"] - previous
            total, steps, previous = total + entry["loss"] * window, steps + window, entry["step"]
    fallback = [h["train_loss"] for h in log_history if "train_loss" in h]
    train = total / steps if steps else (float(fallback[-1]) if fallback else math.nan)
    evals = [h["eval_loss"] for h in log_history if "eval_loss" in h]
    final_eval = best_metric if best_metric is not None else (float(evals[-1]) if evals else None)
    return float(train), final_eval


def run_trainer(trainer, cfg: TrainConfig, report_to_mlflow: bool) -> StageResult:
    """Train (resuming when ``train.resume_from_checkpoint`` says so) and measure the result.

    Raises:
        ConfigError: a ``train.resume_from_checkpoint`` folder that is not a complete checkpoint.
    """
    resume = resolve_resume(cfg.resume_from_checkpoint, trainer.args.output_dir)
    interval = cfg.system_metrics_interval if report_to_mlflow and trainer.is_world_process_zero() else 0
    start = time.perf_counter()
    with system_metrics(interval):
        trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    state = trainer.state
    best = None
    if trainer.args.load_best_model_at_end and state.best_model_checkpoint:
        # The restored checkpoint's validation loss, whatever metric chose it.
        best_step = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1])
        best = next((float(h["eval_loss"]) for h in state.log_history
                     if h.get("step") == best_step and "eval_loss" in h), None)
    train_loss, eval_loss = final_losses(state.log_history, best)
    eval_seconds = sum(float(h.get("eval_runtime", 0.0)) for h in state.log_history)
    return StageResult(train_loss, eval_loss, state.global_step, seconds, resume, state.best_model_checkpoint,
                       eval_seconds)


def on_main_process(trainer, save) -> None:
    """Run ``save()`` on the main process only, then let every process continue together (DDP)."""
    if trainer.is_world_process_zero():
        save()
    trainer.accelerator.wait_for_everyone()


def count_parameters(model) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


@dataclass
class TrainSummary:
    """What a training stage did and where it saved the result.

    Losses as in ``StageResult``; ``seconds`` is the wall time of ``train()``, validation included
    (``eval_seconds`` of it); ``train_tokens`` counts the tokens of this run's steps over every process (see
    ``summarize``).
    """

    output_dir: str
    train_loss: float
    eval_loss: float | None
    steps: int
    seconds: float
    train_tokens: int
    parameters: int
    trainable_parameters: int
    device: str
    processes: int = 1  # data-parallel processes (torchrun)
    resumed_from: str | None = None  # the checkpoint this run continued from
    best_checkpoint: str | None = None  # with train.load_best_model_at_end / early stopping
    teacher: str | None = None  # the distillation teacher (distill.teacher), when the stage learned from one
    eval_seconds: float = 0.0  # of ``seconds``, the time spent on validation

    def to_dict(self) -> dict:
        """The summary as a plain dict."""
        return asdict(self)

    def to_markdown(self, title: str) -> str:
        """The summary as a two-column markdown table under ``# title`` (the stage's report)."""
        rows = "\n".join(f"| {k} | {v} |" for k, v in self.to_dict().items())
        return f"# {title}\n\n| field | value |\n|---|---|\n{rows}"

    @property
    def tokens_per_second(self) -> float:
        """Training throughput over every process: tokens per second of ``train()`` wall time, validation left out
        (0 when no time passed)."""
        seconds = self.seconds - self.eval_seconds
        return self.train_tokens / seconds if seconds > 0 else 0.0


def fit_stage(model, tokenizer, train_ds, val_ds, checkpoint_dir: Path, optim: StageOptim, cfg: TrainConfig,
              device: str, run_name: str, report_to_mlflow: bool, data_collator=None, trainer_class=None,
              remove_unused_columns: bool = True, gradient_checkpointing: bool | None = None,
              extra_callbacks: list | None = None, **trainer_kwargs: Any):
    """Build the Trainer for one stage and run it (resume, early stopping, tracking included).

    ``extra_callbacks`` run after the stage's own (benchmarks add a step timer).

    Returns:
        ``(trainer, StageResult)``; the caller saves what the stage produced.

    Raises:
        ConfigError: an unusable precision, or a resume folder that is not a complete checkpoint.
    """
    from transformers import Trainer

    # Accuracy and macro-F1 exist only where the stage computes them (classifiers); elsewhere "best" is the loss.
    best_metric = cfg.best_metric if trainer_kwargs.get("compute_metrics") else "loss"
    args = training_arguments(checkpoint_dir, optim, cfg, device, run_name, report_to_mlflow,
                              remove_unused_columns, has_eval=val_ds is not None,
                              gradient_checkpointing=gradient_checkpointing, best_metric=best_metric)
    trainer = (trainer_class or Trainer)(
        model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds, data_collator=data_collator,
        processing_class=tokenizer, callbacks=[*stage_callbacks(cfg, report_to_mlflow), *(extra_callbacks or [])],
        **trainer_kwargs)
    return trainer, run_trainer(trainer, cfg, report_to_mlflow)


def summarize(trainer, result: StageResult, output_dir: Path | str, train_ds, model,
              teacher: str | None = None) -> TrainSummary:
    """A ``TrainSummary`` of a finished stage; tokens are counted over every process (``teacher``: distilled from).

    Tokens per example are the mean over the first 1,000 rows (exact for packed blocks), times the
    examples of the optimizer steps this run made (those before a resumed checkpoint are not counted).
    """
    lengths = [len(ids) for ids in train_ds.select(range(min(len(train_ds), 1000)))["input_ids"]]
    mean_len = sum(lengths) / max(len(lengths), 1)
    args = trainer.args
    steps_run = result.steps - (int(Path(result.resumed_from).name.split("-")[-1]) if result.resumed_from else 0)
    tokens = int(steps_run * args.per_device_train_batch_size * args.gradient_accumulation_steps
                 * args.world_size * mean_len)
    total, trainable = count_parameters(model)
    return TrainSummary(str(output_dir), result.train_loss, result.eval_loss, result.steps, result.seconds, tokens,
                        total, trainable, args.device.type, args.world_size, result.resumed_from,
                        result.best_checkpoint, teacher, result.eval_seconds)
