"""Training tasks: one per stage (pretrain, MLM pretrain, distil, fine-tune causal/seq2seq/classifier).

Each stage is a nested MLflow run under the flow's run: its config sections as params, the Trainer's
step curves, system metrics (``train.system_metrics_interval``), the dataset splits it read (with
the DVC digest) and, with ``train.log_checkpoints``, its checkpoints; a Prefect artifact summarizes
it. Never cached: training is re-run on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task

from compactlm.config import ClassifierConfig, DistillConfig, LoraConfig, ModelConfig, TrainConfig
from compactlm.data.versioning import DatasetVersion, read_split
from compactlm.training.trainer import TrainSummary, finetune_causal, pretrain_decoder
from tasks.common import mlflow_run, publish_report


def _log_summary(summary: TrainSummary) -> None:
    """Final figures on the active (nested) run, beside the Trainer's step curves."""
    import mlflow

    mlflow.log_metrics({"final_train_loss": summary.train_loss, "train_seconds": summary.seconds,
                        "trainable_parameters": summary.trainable_parameters,
                        "train_tokens_per_second": summary.tokens_per_second,
                        **({"final_eval_loss": summary.eval_loss} if summary.eval_loss is not None else {})})


def _publish(stage: str, summary: TrainSummary, run_id: str) -> None:
    rows = "\n".join(f"| {k} | {v} |" for k, v in summary.to_dict().items())
    publish_report(run_id, stage, f"# {stage}\n\n| field | value |\n|---|---|\n{rows}", summary.to_dict(),
                   f"{stage}: train loss {summary.train_loss:.4f} in {summary.seconds:.0f} s")


def _run_stage(stage: str, run_id: str, version: DatasetVersion, sections: dict[str, Any],
               train_fn: Callable[[Any, Any], TrainSummary], report: str | None = None) -> TrainSummary:
    """Run ``train_fn(train, val)`` in a nested MLflow run named ``stage`` with params, datasets and a
    summary artifact (``report``, default the stage name)."""
    import mlflow

    from tasks.registry import log_dataset

    with mlflow_run(run_id, child=stage) as nested:
        mlflow.log_params({f"{name}.{k}": str(v)[:500] for name, cfg in sections.items()
                           for k, v in asdict(cfg).items()})
        mlflow.set_tags({"stage": stage, "data_version": version.md5})
        summary = train_fn(read_split(version.path, "train"), read_split(version.path, "val"))
        _log_summary(summary)
    log_dataset.fn(version, nested.info.run_id)  # the splits this stage read, with their DVC digest
    _publish(report or stage, summary, run_id)
    return summary


@task(name="pretrain")
def pretrain(version: DatasetVersion, model_cfg: ModelConfig, train_cfg: TrainConfig, work_dir: str,
             run_id: str) -> TrainSummary:
    """Train the tokenizer and pretrain the decoder preset on the train split (causal LM)."""
    return _run_stage("pretrain", run_id, version, {"model": model_cfg, "train": train_cfg},
                      lambda train, val: pretrain_decoder(train, val, Path(work_dir) / "base", model_cfg, train_cfg))


@task(name="pretrain-mlm")
def pretrain_mlm(version: DatasetVersion, model_cfg: ModelConfig, train_cfg: TrainConfig, work_dir: str,
                 run_id: str) -> TrainSummary:
    """Train a WordPiece tokenizer and pretrain the encoder preset with masked-LM on the train split."""
    from compactlm.training.encoder import pretrain_encoder_mlm

    return _run_stage("pretrain-mlm", run_id, version, {"model": model_cfg, "train": train_cfg},
                      lambda train, val: pretrain_encoder_mlm(train, val, Path(work_dir) / "base", model_cfg,
                                                              train_cfg))


@task(name="distill")
def distill_student(version: DatasetVersion, model_cfg: ModelConfig, train_cfg: TrainConfig,
                    distill_cfg: DistillConfig, work_dir: str, run_id: str) -> TrainSummary:
    """Distil the student preset from ``distill.teacher`` on the train split."""
    from compactlm.training.distill import distill

    return _run_stage("distill", run_id, version, {"model": model_cfg, "train": train_cfg, "distill": distill_cfg},
                      lambda train, val: distill(train, val, Path(work_dir) / "base", model_cfg, train_cfg,
                                                 distill_cfg))


@task(name="finetune-lora")
def finetune(base: TrainSummary | str, version: DatasetVersion, model_cfg: ModelConfig, lora_cfg: LoraConfig,
             train_cfg: TrainConfig, work_dir: str, run_id: str, keep_completion: bool = False) -> TrainSummary:
    """Causal fine-tuning of the base (LoRA, QLoRA or full) on prompt/completion pairs, merged to a plain model.

    ``base`` is a stage summary or a model reference (``model.base``); ``keep_completion`` for
    summarization (long documents are cut, never the summary).
    """
    base_dir = base.output_dir if isinstance(base, TrainSummary) else base
    return _run_stage("finetune-lora", run_id, version, {"model": model_cfg, "lora": lora_cfg, "train": train_cfg},
                      lambda train, val: finetune_causal(base_dir, train, val, Path(work_dir) / "finetuned",
                                                         model_cfg, lora_cfg, train_cfg,
                                                         keep_completion=keep_completion), report="finetune")


@task(name="finetune-seq2seq")
def finetune_seq2seq_base(base: str, version: DatasetVersion, model_cfg: ModelConfig, lora_cfg: LoraConfig,
                          train_cfg: TrainConfig, work_dir: str, run_id: str) -> TrainSummary:
    """Seq2seq fine-tuning (a T5-style ``model.base``) on document -> summary rows."""
    from compactlm.training.seq2seq import finetune_seq2seq

    return _run_stage("finetune-seq2seq", run_id, version, {"model": model_cfg, "lora": lora_cfg, "train": train_cfg},
                      lambda train, val: finetune_seq2seq(base, train, val, Path(work_dir) / "finetuned",
                                                          model_cfg, lora_cfg, train_cfg))


@task(name="finetune-classifier")
def finetune_text_classifier(version: DatasetVersion, model_cfg: ModelConfig, cls_cfg: ClassifierConfig,
                             lora_cfg: LoraConfig, train_cfg: TrainConfig, work_dir: str, run_id: str,
                             base: TrainSummary | str | None = None) -> TrainSummary:
    """Sequence classifier on text/label rows: from ``base`` (an MLM stage or ``model.base``) or the preset."""
    from compactlm.training.encoder import finetune_classifier

    base_dir = base.output_dir if isinstance(base, TrainSummary) else base
    sections = {"model": model_cfg, "classifier": cls_cfg, "lora": lora_cfg, "train": train_cfg}
    return _run_stage("finetune-classifier", run_id, version, sections,
                      lambda train, val: finetune_classifier(train, val, Path(work_dir) / "finetuned", model_cfg,
                                                             cls_cfg, lora_cfg, train_cfg, base_dir=base_dir))
