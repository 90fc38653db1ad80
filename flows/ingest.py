"""The ingest flow: read the source, version it with DVC, validate it and audit it; no training.

Scheduled daily in prefect.yaml; ``compactlm data ingest --source PATH`` runs it from the shell.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from compactlm.state import configure_environment
from flows.retrain import resolve_config
from tasks.data import audit_bias, enforce_quality, ingest_dataset, validate_dataset


@flow(name="ingest")
def ingest(config_path: str | None = None, overrides: list[str] | None = None,
           source: str | None = None) -> dict[str, Any]:
    """Ingest ``source`` (or the configured source), version it, validate it and audit its bias.

    Fails on a critical expectation; the dataset version stays recorded in DVC so the offending
    rows can be inspected.
    """
    config = resolve_config(config_path, overrides, source)
    paths = configure_environment(config.home)
    version = ingest_dataset(config.data, str(paths.home))
    quality = validate_dataset(version, config.data)
    enforce_quality(quality)
    bias = audit_bias(version, config.bias)
    logger = get_run_logger()
    logger.info("Dataset %s version %s in %s (remote %s).", version.name, version.md5, version.path, version.remote)
    logger.info(quality.summary())
    return {"dataset": version.to_dict(), "validation": quality.summary(), "validation_passed": quality.success,
            "bias": bias.to_dict()}
