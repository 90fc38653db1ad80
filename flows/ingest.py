"""The ingest flow: read the source incrementally, version it with DVC, validate it, report on it, audit it.

Scheduled daily in prefect.yaml; ``compactlm data ingest --source PATH`` runs it from the shell. Every
run is an MLflow run in the ``compactlm-data`` experiment holding the dataset lineage (DVC hash), the
GE Data Docs and the quality report. When no source file changed, the previous version is reused.
"""

from typing import Any

from prefect import flow, get_run_logger

from compactlm.config import PipelineConfig, load_run_config
from compactlm.data.versioning import DatasetVersion
from compactlm.quality.bias import BiasReport
from compactlm.quality.expectations import ValidationReport
from compactlm.state import configure_environment
from tasks.common import publish
from tasks.data import (
    audit_bias,
    enforce_quality,
    ingest_dataset,
    publish_data_docs,
    publish_quality_report,
    validate_dataset,
)
from tasks.tracking import log_dataset, tracked_flow_run

DATA_EXPERIMENT = "compactlm-data"


def check_dataset(version: DatasetVersion, config: PipelineConfig, run_id: str | None) -> tuple[ValidationReport,
                                                                                              BiasReport]:
    """The data checks both flows run: validate (report, Data Docs, quality report), enforce, audit bias.

    Raises:
        ValidationFailed: a critical expectation failed (after every report was published).
    """
    quality = validate_dataset(version, config.data)
    publish(run_id, "data-validation", quality.to_markdown(), quality.to_dict(), quality.summary())
    publish_data_docs(quality, run_id)
    publish_quality_report(version, config.data, config.bias, run_id)
    enforce_quality(quality)
    bias = audit_bias(version.cache_key(), config.bias)
    publish(run_id, "bias-audit", bias.to_markdown(), bias.to_dict(), "AIF360 dataset bias audit")
    return quality, bias


@flow(name="ingest")
def ingest(config_path: str | None = None, overrides: list[str] | None = None,
           source: str | None = None, trigger: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ingest ``source`` (or the configured source), version it, validate it and audit its bias.

    Args:
        config_path: a YAML config (see configs/); the embedded defaults when empty.
        overrides: ``section.field=value`` strings, e.g. ``["data.task=classification"]``.
        source: a file, folder, ``s3://bucket/prefix`` or ``hf:NAME_OR_PATH`` instead of the configured one.
        trigger: what started the run, filled by a deployment trigger from its event (the watcher's
            ``compactlm.data.arrived``: new, changed and removed files); recorded on the MLflow run.

    Fails on a critical expectation; the dataset version stays recorded in DVC so the offending
    rows can be inspected.
    """
    logger = get_run_logger()
    config = load_run_config(config_path, overrides, source)
    paths = configure_environment(config.home)
    if trigger:
        logger.info("Triggered by %s (event %s)", trigger.get("event"), trigger.get("event_id"))
    with tracked_flow_run(config, "ingest", experiment=DATA_EXPERIMENT, trigger=trigger) as run_id:
        version = ingest_dataset(config.data, str(paths.home), run_id, bias=config.bias)
        log_dataset(version, run_id)
        quality, bias = check_dataset(version, config, run_id)
    if version.reused:
        logger.info("No source file changed: reusing dataset %s version %s (no new DVC version).",
                    version.name, version.md5)
    else:
        logger.info("Dataset %s version %s in %s (remote %s).", version.name, version.md5, version.path,
                    version.remote)
    logger.info(quality.summary())
    return {"dataset": version.to_dict(), "changed": not version.reused, "validation": quality.summary(),
            "validation_passed": quality.success, "data_docs": quality.docs_path, "bias": bias.to_dict(),
            "mlflow_run_id": run_id}
