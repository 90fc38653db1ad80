"""The ingest flow: read the source incrementally, version it with DVC, validate it, report on it, audit it.

Scheduled daily in prefect.yaml; ``compactlm data ingest --source PATH`` runs it from the shell. Every
run is an MLflow run in the ``compactlm-data`` experiment holding the dataset lineage (DVC hash), the
GE Data Docs and the quality report. When no source file changed, the previous version is reused.
"""

import dataclasses
from typing import Any

from prefect import flow, get_run_logger

from compactlm.state import configure_environment
from flows.retrain import resolve_config
from tasks.data import check_dataset, ingest_dataset
from tasks.tracking import log_dataset, tracked_flow_run

DATA_EXPERIMENT = "compactlm-data"


@flow(name="ingest")
def ingest(config_path: str | None = None, overrides: list[str] | None = None,
           source: str | None = None) -> dict[str, Any]:
    """Ingest ``source`` (or the configured source), version it, validate it and audit its bias.

    Args:
        config_path: a YAML config (see configs/); the embedded defaults when empty.
        overrides: ``section.field=value`` strings, e.g. ``["data.task=classification"]``.
        source: a file, folder, ``s3://bucket/prefix`` or ``hf:NAME_OR_PATH`` instead of the configured one.

    Fails on a critical expectation; the dataset version stays recorded in DVC so the offending
    rows can be inspected.
    """
    logger = get_run_logger()
    config = resolve_config(config_path, overrides, source)
    paths = configure_environment(config.home)
    tracking = dataclasses.replace(config, registry=dataclasses.replace(config.registry, experiment=DATA_EXPERIMENT))
    with tracked_flow_run(tracking, "ingest") as run_id:
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
