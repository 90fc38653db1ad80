"""Which training stages each task shape runs, decided by configuration alone.

=================  ======================================================================================
instruction, chat  base (``model.base``, else distilled from ``distill.teacher``, else a pretrained decoder
                   preset) -> causal fine-tuning on prompt/completion (LoRA, QLoRA or full: ``lora.mode``)
summarization      a seq2seq ``model.base`` (T5...) -> seq2seq fine-tuning; otherwise the instruction path
                   with the summarization prompt (long documents are cut, the summary is kept)
classification     ``model.base``, else (``classifier.mlm_pretrain``) an MLM-pretrained encoder preset,
                   else the preset from scratch -> sequence classifier (cross-entropy or focal)
pretraining        a decoder preset (causal LM) or an encoder preset (masked LM)
=================  ======================================================================================

``run_stages`` is what ``compactlm.training.launch`` (torchrun, sweep trials) runs; flows call the
stage functions through their own tasks.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from compactlm.config import PipelineConfig
from compactlm.models.presets import get_preset
from compactlm.training.trainer import TrainSummary

STAGES = ("pretrain", "pretrain-mlm", "distill", "finetune", "finetune-seq2seq", "finetune-classifier")
BASE_STAGES = ("pretrain", "pretrain-mlm", "distill")


def base_kind(config: PipelineConfig) -> str:
    """``causal``, ``seq2seq`` or ``encoder``: the configured base's kind, else the preset's."""
    if config.model.base:
        from compactlm.models.loading import detect_kind, load_model_config

        return detect_kind(load_model_config(config.model.base))
    return "causal" if get_preset(config.model.preset).kind == "decoder" else "encoder"


def plan_stages(config: PipelineConfig, base_dir: str | None = None) -> list[str]:
    """The stages the config's task shape runs, in order (``base_dir``: a base already trained)."""
    task = config.data.task
    kind = "causal" if base_dir else base_kind(config)
    if task == "pretraining":
        return ["pretrain-mlm" if kind == "encoder" else "pretrain"]
    if task == "classification":
        pretrain = not (base_dir or config.model.base) and config.classifier.mlm_pretrain
        return [*(["pretrain-mlm"] if pretrain else []), "finetune-classifier"]
    if task == "summarization" and kind == "seq2seq":
        return ["finetune-seq2seq"]
    base_stage = [] if (base_dir or config.model.base) else ["distill" if config.distill.teacher else "pretrain"]
    return [*base_stage, *(["finetune"] if config.lora.enabled else [])]


def run_stages(config: PipelineConfig, train: pd.DataFrame, val: pd.DataFrame, work_dir: str | Path,
               base_dir: str | None = None, report_to_mlflow: bool = True, base_only: bool = False
               ) -> dict[str, TrainSummary]:
    """Run every stage of the task shape; each stage's output feeds the next.

    Args:
        config: the pipeline config (``data.task`` picks the stages).
        train, val: the splits, canonical columns of the task shape.
        work_dir: stage outputs go to ``work_dir/base``, ``work_dir/finetuned``.
        base_dir: a base model already trained (e.g. shared by sweep trials): skips the base stage.
        report_to_mlflow: log step metrics to the active MLflow run.
        base_only: run the base stage alone (none for a task without one).

    Returns:
        ``{stage: TrainSummary}`` in the order run; the last one is the model to evaluate.
    """
    from compactlm.training.distill import distill
    from compactlm.training.encoder import finetune_classifier, pretrain_encoder_mlm
    from compactlm.training.seq2seq import finetune_seq2seq
    from compactlm.training.trainer import finetune_causal, pretrain_decoder

    work_dir = Path(work_dir)
    model, train_cfg, lora = config.model, config.train, config.lora
    base = base_dir or model.base
    summaries: dict[str, TrainSummary] = {}
    for stage in plan_stages(config, base_dir):
        if base_only and stage not in BASE_STAGES:
            continue
        if stage == "pretrain":
            summary = pretrain_decoder(train, val, work_dir / "base", model, train_cfg, report_to_mlflow)
        elif stage == "pretrain-mlm":
            summary = pretrain_encoder_mlm(train, val, work_dir / "base", model, train_cfg, report_to_mlflow)
        elif stage == "distill":
            summary = distill(train, val, work_dir / "base", model, train_cfg, config.distill,
                              report_to_mlflow=report_to_mlflow)
        elif stage == "finetune":
            summary = finetune_causal(base, train, val, work_dir / "finetuned", model, lora, train_cfg,
                                      keep_completion=config.data.task == "summarization",
                                      report_to_mlflow=report_to_mlflow)
        elif stage == "finetune-seq2seq":
            summary = finetune_seq2seq(base, train, val, work_dir / "finetuned", model, lora, train_cfg,
                                       report_to_mlflow=report_to_mlflow)
        else:
            summary = finetune_classifier(train, val, work_dir / "finetuned", model, config.classifier, lora,
                                          train_cfg, base_dir=base, report_to_mlflow=report_to_mlflow)
        summaries[stage] = summary
        if stage in BASE_STAGES:
            base = summary.output_dir
    return summaries
