"""Training tasks: pretraining the base decoder and LoRA instruction fine-tuning.

Each stage is a nested MLflow run under the flow's run (the HF Trainer logs its loss curves there);
never cached: training is re-run on purpose.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import task

from compactlm.config import LoraConfig, ModelConfig, TrainConfig
from compactlm.data.versioning import DatasetVersion, read_split
from compactlm.training.trainer import TrainSummary, finetune_lora, pretrain_decoder
from tasks.common import mlflow_run, publish_report


def _log_summary(summary: TrainSummary) -> None:
    """Final figures on the active (nested) run, beside the Trainer's step curves."""
    import mlflow

    mlflow.log_metrics({"final_train_loss": summary.train_loss, "train_seconds": summary.seconds,
                        "trainable_parameters": summary.trainable_parameters,
                        **({"final_eval_loss": summary.eval_loss} if summary.eval_loss is not None else {})})


def _publish(stage: str, summary: TrainSummary, run_id: str) -> None:
    rows = "\n".join(f"| {k} | {v} |" for k, v in summary.to_dict().items())
    publish_report(run_id, stage, f"# {stage}\n\n| field | value |\n|---|---|\n{rows}", summary.to_dict(),
                   f"{stage}: train loss {summary.train_loss:.4f} in {summary.seconds:.0f} s")


@task(name="pretrain")
def pretrain(version: DatasetVersion, model_cfg: ModelConfig, train_cfg: TrainConfig, work_dir: str,
             run_id: str) -> TrainSummary:
    """Train the tokenizer and pretrain the preset on the train split (causal LM)."""
    import mlflow

    with mlflow_run(run_id, child="pretrain"):
        mlflow.log_params({f"model.{k}": v for k, v in asdict(model_cfg).items()})
        summary = pretrain_decoder(read_split(version.path, "train"), read_split(version.path, "val"),
                                   Path(work_dir) / "base", model_cfg, train_cfg)
        _log_summary(summary)
    _publish("pretrain", summary, run_id)
    return summary


@task(name="finetune-lora")
def finetune(base: TrainSummary, version: DatasetVersion, model_cfg: ModelConfig, lora_cfg: LoraConfig,
             train_cfg: TrainConfig, work_dir: str, run_id: str) -> TrainSummary:
    """LoRA instruction fine-tuning of the pretrained base, merged into a plain transformers model."""
    import mlflow

    with mlflow_run(run_id, child="finetune-lora"):
        mlflow.log_params({f"lora.{k}": v for k, v in asdict(lora_cfg).items()})
        summary = finetune_lora(base.output_dir, read_split(version.path, "train"), read_split(version.path, "val"),
                                Path(work_dir) / "finetuned", model_cfg, lora_cfg, seed=train_cfg.seed,
                                device=train_cfg.device)
        _log_summary(summary)
    _publish("finetune", summary, run_id)
    return summary
