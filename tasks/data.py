"""Data tasks: ingest and version, validate with Great Expectations, audit bias with AIF360."""

from __future__ import annotations

import hashlib
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from compactlm.config import BiasConfig, DataConfig
from compactlm.data.ingest import allowed_intents, combined_splits, prepare_dataset
from compactlm.data.versioning import DatasetVersion, read_split, version_dataset
from compactlm.errors import ValidationFailed
from compactlm.quality.bias import BiasReport, audit_dataset_bias
from compactlm.quality.expectations import ValidationReport, suite_path, validate_frame
from compactlm.state import state_paths
from tasks.common import CODE_AWARE_CACHE, IO_RETRIES, publish_report


@task(name="ingest", **IO_RETRIES)
def ingest_dataset(config: DataConfig, home: str, run_id: str | None = None) -> DatasetVersion:
    """Read the source, clean, split, and version the result with DVC (pushed to the remote).

    The report (counts, quarantine reasons, split sizes) becomes a Prefect artifact, and is logged to
    the MLflow run ``run_id`` when one is given.
    """
    paths = state_paths(home)
    result = prepare_dataset(config)
    version = version_dataset(paths.data_repo, config.dataset_name, result.files(), paths.dvc_remote(config.dvc_remote))
    markdown = result.to_markdown() + f"\n\nDVC version `{version.md5}` pushed to `{version.remote}`."
    description = f"Dataset {version.name} version {version.md5[:12]}"
    if run_id is None:
        create_markdown_artifact(key="ingest-report", description=description, markdown=markdown)
    else:
        publish_report(run_id, "ingest-report", markdown, {"counts": result.counts, **version.to_dict()}, description)
    return version


def _load_all(version: DatasetVersion) -> Any:
    return combined_splits({name: read_split(version.path, name) for name in ("train", "val", "test")})


def _suite_hash(name: str) -> str:
    return hashlib.sha256(suite_path(name).read_bytes()).hexdigest()[:16]


@task(name="validate", cache_policy=CODE_AWARE_CACHE, persist_result=True)
def run_quality_suite(version: DatasetVersion, config: DataConfig, suite_hash: str) -> ValidationReport:
    """Validate every split of a dataset version against the stored suite (cached per version + suite)."""
    frame = _load_all(version)
    parameters = {"allowed_intents": allowed_intents(config, frame), "min_chars": config.min_chars,
                  "max_chars": config.max_chars, "min_rows": config.min_rows}
    return validate_frame(frame, config.expectation_suite, parameters)


def validate_dataset(version: DatasetVersion, config: DataConfig) -> ValidationReport:
    """Run the suite (cached when this data version and suite were validated before)."""
    return run_quality_suite(version, config, _suite_hash(config.expectation_suite))


@task(name="enforce-quality")
def enforce_quality(report: ValidationReport) -> None:
    """Fail the flow on a critical expectation failure, naming the expectation and offending rows."""
    create_table_artifact(
        key="data-quality", description=report.summary(),
        table=[{"expectation": c.expectation, "column": c.column or "", "severity": c.severity,
                "result": "pass" if c.success else "FAIL", "offending_rows": c.unexpected_count}
               for c in report.checks])
    if not report.success:
        first = report.critical_failures[0]
        more = len(report.critical_failures) - 1
        raise ValidationFailed(f"data validation failed: {first.describe()}"
                               + (f" (and {more} more critical failure(s))" if more else ""))


@task(name="bias-audit", cache_policy=CODE_AWARE_CACHE, persist_result=True)
def audit_bias(version: DatasetVersion, config: BiasConfig) -> BiasReport:
    """AIF360 disparate impact / statistical parity of the training split."""
    return audit_dataset_bias(read_split(version.path, "train"), config)
