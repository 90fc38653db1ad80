"""The training task: one stage of ``compactlm.training.stages.STAGES`` as a nested MLflow run.

Each stage run holds the config sections that decide it as params, the Trainer's step curves, system
metrics (``train.system_metrics_interval``), the dataset splits it read (with the DVC digest) and, with
``train.log_checkpoints``, its checkpoints; a Prefect artifact summarizes it. Never cached: training is
re-run on purpose.
"""

from __future__ import annotations

from prefect import task

from compactlm.config import PipelineConfig
from compactlm.data.versioning import DatasetVersion, read_split
from compactlm.registry.tracking import log_dataset, log_training_summary, stage_run
from compactlm.training.runner import TrainSummary
from compactlm.training.stages import STAGES, run_stage
from tasks.common import publish_report


@task(name="train-stage", task_run_name="{stage}")
def train_stage(stage: str, config: PipelineConfig, version: DatasetVersion, work_dir: str, run_id: str,
                base: str | None = None) -> TrainSummary:
    """Train one stage on the version's train/val splits, starting from ``base`` (a model folder or reference)."""
    spec = STAGES[stage]
    sections = {name: getattr(config, name) for name in spec.sections}
    with stage_run(run_id, spec.run_name, sections, version.md5) as nested:
        summary = run_stage(stage, config, read_split(version.path, "train"), read_split(version.path, "val"),
                            work_dir, base)
        log_training_summary(summary)
    log_dataset(version, nested.info.run_id)  # the splits this stage read, with their DVC digest
    publish_report(run_id, spec.report, summary.to_markdown(spec.report), summary.to_dict(),
                   f"{spec.report}: train loss {summary.train_loss:.4f} in {summary.seconds:.0f} s")
    return summary
