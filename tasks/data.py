"""Data tasks: ingest and version, validate with Great Expectations (Data Docs), report, audit bias with AIF360."""

from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from compactlm.config import BiasConfig, DataConfig
from compactlm.data.ingest import ingest_version
from compactlm.data.versioning import DatasetVersion
from compactlm.errors import ValidationFailed
from compactlm.quality import version_checks
from compactlm.quality.bias import BiasReport
from compactlm.quality.expectations import ValidationReport
from compactlm.registry.tracking import reopen_run
from compactlm.state import state_paths
from tasks.common import CODE_AWARE_CACHE, IO_RETRIES, publish_report


@task(name="ingest", **IO_RETRIES)
def ingest_dataset(config: DataConfig, home: str, run_id: str | None = None,
                   bias: BiasConfig | None = None) -> DatasetVersion:
    """Read the source (only new or changed files), clean, split, and version the result with DVC.

    When no source file changed since the last run the previous version is reused (``reused=True``,
    no new DVC version). The report (counts, quarantine reasons, split sizes) becomes a Prefect
    artifact, and is logged to the MLflow run ``run_id`` when one is given.
    """
    paths = state_paths(home)
    outcome = ingest_version(config, paths.data_repo, paths.dvc_remote(config.dvc_remote), bias)
    publish_report(run_id, "ingest-report", outcome.to_markdown(), outcome.to_dict(), outcome.description)
    return outcome.version


@task(name="validate", cache_policy=CODE_AWARE_CACHE, persist_result=True)
def run_quality_suite(version: DatasetVersion, config: DataConfig, suite_hash: str,
                      reference: dict[str, float] | None = None, docs_dir: str | None = None) -> ValidationReport:
    """Validate every split of a dataset version against its shape's suite and render Data Docs.

    Cached per data version + config + suite + reference + code version.
    """
    return version_checks.validate_version(version, config, reference, docs_dir)


def validate_dataset(version: DatasetVersion, config: DataConfig) -> ValidationReport:
    """Run the suite (cached when this data version, reference and suite were validated before)."""
    reference, _ = version_checks.distribution_reference(version, config)
    return run_quality_suite(version.cache_key(), config, version_checks.suite_digest(config.expectation_suite),
                             reference, version_checks.data_docs_dir(version))


@task(name="publish-data-docs", retries=2, retry_delay_seconds=[2, 5])
def publish_data_docs(report: ValidationReport, run_id: str | None = None) -> str | None:
    """Link the GE Data Docs site from a Prefect artifact and log it to the MLflow run (``data-docs/``)."""
    if not report.docs_path or not Path(report.docs_path).is_file():
        return None
    index = Path(report.docs_path)
    create_link_artifact(key="data-docs", link=index.as_uri(), link_text="Great Expectations Data Docs",
                         description=report.summary())
    if run_id is not None:
        with reopen_run(run_id):
            mlflow.log_artifacts(str(index.parent), "data-docs")
    return str(index)


@task(name="quality-report", retries=2, retry_delay_seconds=[2, 5])
def publish_quality_report(version: DatasetVersion, config: DataConfig, bias: BiasConfig,
                           run_id: str | None = None) -> str:
    """Write the data quality report (markdown + PNG plots), show it in Prefect, log it to MLflow."""
    report = version_checks.write_version_report(version, config, bias)
    create_markdown_artifact(key="data-quality-report", description=f"Data quality report, {version.md5[:12]}",
                             markdown=report.markdown + f"\n\nReport and plots: `{report.folder}`")
    if run_id is not None:
        with reopen_run(run_id):
            mlflow.log_artifacts(report.folder, "reports/data-quality")
    return report.folder


@task(name="enforce-quality")
def enforce_quality(report: ValidationReport) -> None:
    """Fail the flow on a critical expectation failure, naming the expectation and offending rows."""
    create_table_artifact(key="data-quality", description=report.summary(), table=report.checks_table())
    if not report.success:
        raise ValidationFailed(report.failure_message())


@task(name="bias-audit", cache_policy=CODE_AWARE_CACHE, persist_result=True)
def audit_bias(version: DatasetVersion, config: BiasConfig) -> BiasReport:
    """AIF360 disparate impact / statistical parity of the training split (before/after reweighing)."""
    return version_checks.audit_version_bias(version, config)
