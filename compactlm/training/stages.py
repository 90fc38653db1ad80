"""The training stages, as one table (stage name -> recipe), and the loop that chains them.

Which stages a config runs is decided by its task shape (``compactlm.shapes``: ``Shape.plan``) and the
base it starts from; this module maps each stage name to the recipe that trains it:

====================  ===============================================================  ===============
stage                 recipe                                                           output folder
====================  ===============================================================  ===============
pretrain              decoder preset + BPE tokenizer, causal LM (``causal``)           ``base``
pretrain-mlm          encoder preset + WordPiece tokenizer, masked LM (``encoder``)    ``base``
distill               decoder student from ``distill.teacher`` (``distill``)           ``base``
finetune              causal fine-tuning: LoRA, QLoRA or full (``causal``)             ``finetuned``
finetune-seq2seq      seq2seq fine-tuning of a T5-style base (``seq2seq``)             ``finetuned``
finetune-classifier   sequence classifier, optionally distilled (``encoder``)          ``finetuned``
====================  ===============================================================  ===============

A base stage's output is the next stage's base. ``run_stages`` is what ``compactlm.training.launch``
(torchrun, sweep trials) runs; the retrain flow runs the same table one stage per Prefect task
(``run_stage``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from compactlm.config import PipelineConfig
from compactlm.errors import ConfigError
from compactlm.models.presets import get_preset
from compactlm.shapes import BaseKind, get_shape
from compactlm.training.runner import TrainSummary

# recipe(config, train, val, output_dir, base, report_to_mlflow) -> TrainSummary
Recipe = Callable[[PipelineConfig, pd.DataFrame, pd.DataFrame, Path, "str | None", bool], TrainSummary]


# The recipes import transformers/torch/peft when called, not when this table is imported, so that
# planning (flows, the CLI, config checks) stays light.
def _pretrain(config, train, val, output_dir, base, report_to_mlflow):
    from compactlm.training.causal import pretrain_decoder

    return pretrain_decoder(train, val, output_dir, config.model, config.train, report_to_mlflow)


def _pretrain_mlm(config, train, val, output_dir, base, report_to_mlflow):
    from compactlm.training.encoder import pretrain_encoder_mlm

    return pretrain_encoder_mlm(train, val, output_dir, config.model, config.train, report_to_mlflow)


def _distill(config, train, val, output_dir, base, report_to_mlflow):
    from compactlm.training.distill import distill

    return distill(train, val, output_dir, config.model, config.train, config.distill,
                   report_to_mlflow=report_to_mlflow)


def _finetune(config, train, val, output_dir, base, report_to_mlflow):
    from compactlm.training.causal import finetune_causal

    return finetune_causal(base, train, val, output_dir, config.model, config.finetune, config.train,
                           keep_completion=get_shape(config.data.task).keep_completion,
                           report_to_mlflow=report_to_mlflow)


def _finetune_seq2seq(config, train, val, output_dir, base, report_to_mlflow):
    from compactlm.training.seq2seq import finetune_seq2seq

    return finetune_seq2seq(base, train, val, output_dir, config.model, config.finetune, config.train,
                            report_to_mlflow=report_to_mlflow)


def _finetune_classifier(config, train, val, output_dir, base, report_to_mlflow):
    from compactlm.training.encoder import finetune_classifier

    return finetune_classifier(train, val, output_dir, config.model, config.classifier, config.finetune, config.train,
                               base_dir=base, report_to_mlflow=report_to_mlflow, distill_cfg=config.distill)


@dataclass(frozen=True)
class Stage:
    """One training stage.

    Attributes:
        name: the stage name (the MLflow child run and the Prefect task are named ``run_name``).
        recipe: ``recipe(config, train, val, output_dir, base, report_to_mlflow) -> TrainSummary``.
        produces_base: its output is the base of the next stage.
        sections: the config sections that decide it (logged as the stage run's parameters).
        run_name: the name of its MLflow child run and Prefect task.
        report: the name of its report (Prefect artifact, ``reports/<report>.md`` in MLflow).
        description: what it trains, in words (the model card's).
    """

    name: str
    recipe: Recipe
    produces_base: bool
    sections: tuple[str, ...]
    run_name: str
    report: str
    description: str

    @property
    def output_folder(self) -> str:
        """The folder under the run's work directory that receives the stage's model."""
        return "base" if self.produces_base else "finetuned"


def _stage(name: str, recipe: Recipe, produces_base: bool, sections: tuple[str, ...], description: str,
           run_name: str | None = None, report: str | None = None) -> Stage:
    return Stage(name, recipe, produces_base, sections, run_name or name, report or name, description)


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    _stage("pretrain", _pretrain, True, ("model", "train"),
           "a CompactLM decoder preset pretrained here (causal LM)"),
    _stage("pretrain-mlm", _pretrain_mlm, True, ("model", "train"),
           "a CompactLM encoder preset pretrained here (masked LM)"),
    _stage("distill", _distill, True, ("model", "train", "distill"),
           "a CompactLM decoder preset distilled here from the teacher"),
    # The run name predates full fine-tuning; dashboards and tests know the stage run by it.
    _stage("finetune", _finetune, False, ("model", "finetune", "train"),
           "causal fine-tuning on prompt/completion pairs", run_name="finetune-lora"),
    _stage("finetune-seq2seq", _finetune_seq2seq, False, ("model", "finetune", "train"),
           "seq2seq fine-tuning on document/summary pairs"),
    _stage("finetune-classifier", _finetune_classifier, False, ("model", "classifier", "finetune", "train", "distill"),
           "sequence-classifier fine-tuning on text/label rows (distilled when distill.teacher is set)"),
)}


def base_kind(config: PipelineConfig) -> BaseKind:
    """``causal``, ``seq2seq`` or ``encoder``: the configured base's kind, else the preset's.

    Raises:
        ConfigError: ``model.base`` cannot be read (unknown folder or hub id offline).
    """
    if config.model.base:
        # transformers is imported only when a base has to be inspected.
        from compactlm.models.loading import detect_kind, load_model_config

        return detect_kind(load_model_config(config.model.base))
    return "causal" if get_preset(config.model.preset).kind == "decoder" else "encoder"


def plan_stages(config: PipelineConfig, base_dir: str | None = None) -> list[str]:
    """The stages the config runs, in order (``base_dir``: a causal base already trained, e.g. by a sweep).

    Raises:
        ConfigError: an unknown task shape or an unreadable ``model.base``.
    """
    kind: BaseKind = "causal" if base_dir else base_kind(config)
    return get_shape(config.data.task).plan(config, kind, bool(base_dir or config.model.base))


def plan_retrain(config: PipelineConfig) -> list[str]:
    """The stages the retrain flow runs for the config: ``plan_stages``, when the flow can evaluate the result.

    The flow scores a pretrained base in bits per character, which needs a causal LM: an encoder preset's
    masked-LM pretraining is trained by ``python -m compactlm.training.launch`` instead.

    Raises:
        ConfigError: a pretraining config whose plan ends in masked-LM pretraining, or as ``plan_stages``.
    """
    stages = plan_stages(config)
    if get_shape(config.data.task).evaluation == "language-model" and stages[-1] == "pretrain-mlm":
        raise ConfigError(f"model.preset {config.model.preset!r}: the retrain flow pretrains decoder presets "
                          "(scored in bits per character); masked-LM pretraining of an encoder runs with "
                          "python -m compactlm.training.launch")
    return stages


def compares_with_base(config: PipelineConfig) -> bool:
    """Whether the flow scores ``model.base`` zero-shot for the gate: a pretrained base fine-tuned for a
    generative shape (chat, instruction, summarization) with some ``gate.checks.<metric>.beat_base``.
    """
    generative = get_shape(config.data.task).evaluation in ("conversation", "generation")
    return bool(config.model.base) and generative and any(c.beat_base for c in config.gate.checks.values())


def run_stage(name: str, config: PipelineConfig, train: pd.DataFrame, val: pd.DataFrame, work_dir: str | Path,
              base: str | None = None, report_to_mlflow: bool = True) -> TrainSummary:
    """Run one stage of the table into ``work_dir/<output folder>``.

    Args:
        name: a key of ``STAGES``.
        config: the pipeline config.
        train, val: the splits, with the canonical columns of the task shape.
        work_dir: the run's work directory (``base/`` and ``finetuned/`` go below it).
        base: the model the stage starts from (a previous stage's output, ``model.base`` or None).
        report_to_mlflow: log step metrics to the active MLflow run.

    Raises:
        KeyError: an unknown stage name.
        ConfigError, DataError: see the recipe (``compactlm.training.causal``, ``encoder``, ...).
    """
    stage = STAGES[name]
    return stage.recipe(config, train, val, Path(work_dir) / stage.output_folder, base, report_to_mlflow)


def chain_stages(names: list[str], base: str | None,
                 run_one: Callable[[str, str | None], TrainSummary]) -> dict[str, TrainSummary]:
    """Run stages in order, each base stage's output becoming the next stage's base.

    Args:
        names: the stages to run (keys of ``STAGES``), in order.
        base: what the first stage starts from (``model.base``, a shared base, or None).
        run_one: ``run_one(stage, base) -> TrainSummary`` (``run_stage`` here; one Prefect task per
            stage in the retrain flow).

    Returns:
        ``{stage: TrainSummary}`` in the order run; the last one is the model to evaluate.
    """
    summaries: dict[str, TrainSummary] = {}
    for name in names:
        summaries[name] = run_one(name, base)
        if STAGES[name].produces_base:
            base = summaries[name].output_dir
    return summaries


def run_stages(config: PipelineConfig, train: pd.DataFrame, val: pd.DataFrame, work_dir: str | Path,
               base_dir: str | None = None, report_to_mlflow: bool = True, base_only: bool = False
               ) -> dict[str, TrainSummary]:
    """Run every stage the config plans, in this process (``compactlm.training.launch``).

    Args:
        config: the pipeline config (``data.task`` picks the stages).
        train, val: the splits, canonical columns of the task shape.
        work_dir: stage outputs go to ``work_dir/base``, ``work_dir/finetuned``.
        base_dir: a base model already trained (e.g. shared by sweep trials): skips the base stage.
        report_to_mlflow: log step metrics to the active MLflow run.
        base_only: run the base stages alone (none for a plan without one).

    Returns:
        ``{stage: TrainSummary}`` in the order run; the last one is the model to evaluate.
    """
    names = [name for name in plan_stages(config, base_dir) if STAGES[name].produces_base or not base_only]
    return chain_stages(names, base_dir or config.model.base,
                        lambda name, base: run_stage(name, config, train, val, work_dir, base, report_to_mlflow))
