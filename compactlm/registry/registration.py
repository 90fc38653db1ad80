"""Registering a gated candidate: the pyfunc model with its data lineage, lineage tags and a model card.

No alias moves here: ``challenger`` is set only after the smoke test passes, ``champion`` only after
an approved review (``compactlm.registry.review``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow

from compactlm.data.versioning import DatasetVersion, read_split
from compactlm.models.loading import gguf_provenance
from compactlm.registry.lineage import lineage_tags
from compactlm.registry.model_card import build_model_card
from compactlm.registry.pyfunc import log_chat_model, write_task_file
from compactlm.registry.store import register_version, tag_version
from compactlm.registry.tracking import log_splits, reopen_run
from compactlm.shapes import get_shape


@dataclass(frozen=True)
class Registration:
    """A registered version and its model card (markdown)."""

    version: str
    model_card: str


def gguf_tags(base: str | None) -> dict[str, str]:
    """Version tags naming the GGUF file a base was converted from (file, SHA-256, quantization); {} otherwise."""
    source = gguf_provenance(base)
    if source is None:
        return {}
    return {"base_gguf_file": str(source["file"]), "base_gguf_sha256": str(source["sha256"]),
            "base_gguf_quantization": str(source["quantization"])}


def register_candidate(*, model_dir: str, config: Any, version: DatasetVersion, quality: Any, bias: Any, gate: Any,
                       metrics: dict[str, float], training: dict[str, Any], run_id: str,
                       flow_run_id: str) -> Registration:
    """Log ``model_dir`` as a pyfunc model in run ``run_id`` and register it as a new version.

    Args:
        model_dir: the trained model's ``save_pretrained`` folder (the last stage's output).
        config: the run's ``PipelineConfig`` (registered model name, task shape, config hash).
        version: the dataset version it trained on (its splits become the logged model's inputs).
        quality, bias, gate: the run's validation, bias-audit and gate reports (summarized as tags).
        metrics: the candidate's evaluation metrics (tagged ``metric.<name>``).
        training: ``{stage: TrainSummary}`` of the stages that ran, in order.
        run_id: the flow's MLflow run; flow_run_id: the Prefect flow run (both become tags).

    Returns:
        The new version and its model card (logged as ``model_card.md`` and linked from the version's
        ``model_card`` tag).
    """
    model_name = config.registry.model_name
    tags = lineage_tags(data_version=version.md5, data_remote=version.remote, config_hash=config.config_hash(),
                        quality=quality, bias=bias, gate=gate, metrics=metrics,
                        extra={"prefect_flow_run_id": flow_run_id, "mlflow_run_id": run_id, "data_name": version.name,
                               **gguf_tags(config.model.base)})
    shape = get_shape(config.data.task)
    write_task_file(model_dir, shape.name, shape.schema.prompt if shape.serve_prompt else None)
    with reopen_run(run_id):
        info = log_chat_model(model_dir, example=shape.example_input)
        log_splits(version, info.model_id)
    registered = register_version(info.model_uri, model_name, tags, description=gate.to_markdown())
    card = build_model_card(
        model_name=model_name, version=registered, config=config, model_dir=model_dir, stages=list(training),
        data={"dataset": version.name, "DVC version": version.md5, "remote": version.remote,
              **{f"{split} rows": len(read_split(version.path, split)) for split in ("train", "val", "test")}},
        training={stage: summary.to_dict() for stage, summary in training.items()},
        metrics=metrics, dataset_bias=bias.to_dict(), gate_markdown=gate.to_markdown(), lineage=tags)
    with reopen_run(run_id):
        mlflow.log_text(card, "model_card.md")
    tag_version(model_name, registered, {"model_card": f"runs:/{run_id}/model_card.md"})
    return Registration(registered, card)
