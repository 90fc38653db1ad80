"""Data tasks: ingest and version, validate with Great Expectations (Data Docs), report, audit bias with AIF360."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from compactlm.config import BiasConfig, DataConfig, PipelineConfig
from compactlm.data.ingest import ingest_version
from compactlm.data.layout import DataLayout
from compactlm.data.splits import SPLITS, combined_splits
from compactlm.data.versioning import DatasetVersion, read_split, version_records
from compactlm.errors import ValidationFailed
from compactlm.quality.bias import BiasReport, audit_dataset_bias
from compactlm.quality.expectations import ValidationReport, suite_path, validate_frame
from compactlm.quality.report import write_quality_report
from compactlm.quality.suites import reference_counts, suite_parameters
from compactlm.registry.tracking import reopen_run
from compactlm.state import state_paths
from tasks.common import CODE_AWARE_CACHE, IO_RETRIES, publish, publish_report


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
    version = outcome.version
    verb = "reused (nothing changed)" if outcome.reused else f"pushed to `{version.remote}`"
    markdown = outcome.to_markdown() + f"\n\nDVC version `{version.md5}` {verb}."
    description = f"Dataset {version.name} version {version.md5[:12]}" + (" (unchanged)" if outcome.reused else "")
    payload = {"counts": outcome.result.counts if outcome.result else {}, "reused": outcome.reused, **version.to_dict()}
    if run_id is None:
        create_markdown_artifact(key="ingest-report", description=description, markdown=markdown)
    else:
        publish_report(run_id, "ingest-report", markdown, payload, description)
    return version


def _load_all(version: DatasetVersion) -> Any:
    return combined_splits({name: read_split(version.path, name) for name in SPLITS})


def _suite_hash(name: str) -> str:
    return hashlib.sha256(suite_path(name).read_bytes()).hexdigest()[:16]


def _reference(version: DatasetVersion, config: DataConfig) -> tuple[dict[str, float] | None, str]:
    return reference_counts(config, version_records(DataLayout.of_version(version.path).repo, version.name),
                            version.md5)


@task(name="validate", cache_policy=CODE_AWARE_CACHE, persist_result=True)
def run_quality_suite(version: DatasetVersion, config: DataConfig, suite_hash: str,
                      reference: dict[str, float] | None = None, docs_dir: str | None = None) -> ValidationReport:
    """Validate every split of a dataset version against its shape's suite and render Data Docs.

    Cached per data version + config + suite + reference + code version.
    """
    frame = _load_all(version)
    parameters = suite_parameters(config, frame, reference)
    return validate_frame(frame, config.expectation_suite, parameters, docs_dir=docs_dir)


def validate_dataset(version: DatasetVersion, config: DataConfig) -> ValidationReport:
    """Run the suite (cached when this data version, reference and suite were validated before)."""
    reference, _ = _reference(version, config)
    docs_dir = DataLayout.of_version(version.path).data_docs_dir(version.name, version.md5)
    # Whether the version was just written or reused does not change its validation.
    return run_quality_suite(dataclasses.replace(version, reused=False), config, _suite_hash(config.expectation_suite),
                             reference, str(docs_dir))


@task(name="publish-data-docs", retries=2, retry_delay_seconds=[2, 5])
def publish_data_docs(report: ValidationReport, run_id: str | None = None) -> str | None:
    """Link the GE Data Docs site from a Prefect artifact and log it to the MLflow run (``data-docs/``)."""
    if not report.docs_path or not Path(report.docs_path).is_file():
        return None
    index = Path(report.docs_path)
    create_link_artifact(key="data-docs", link=index.as_uri(), link_text="Great Expectations Data Docs",
                         description=report.summary())
    if run_id is not None:
        import mlflow

        with reopen_run(run_id):
            mlflow.log_artifacts(str(index.parent), "data-docs")
    return str(index)


@task(name="quality-report", retries=2, retry_delay_seconds=[2, 5])
def publish_quality_report(version: DatasetVersion, config: DataConfig, bias: BiasConfig,
                           run_id: str | None = None) -> str:
    """Write the data quality report (markdown + PNG plots), show it in Prefect, log it to MLflow."""
    splits = {name: read_split(version.path, name) for name in SPLITS}
    layout = DataLayout.of_version(version.path)
    quarantine_file = layout.split_file(version.name, "quarantine")
    quarantine = read_split(version.path, "quarantine") if quarantine_file.is_file() else splits["train"].head(0)
    records = version_records(layout.repo, version.name)
    record = next((r for r in records if r["md5"] == version.md5), {})
    reference, reference_name = reference_counts(config, records, version.md5)
    folder = layout.report_dir(version.name, version.md5)
    attributes = list(dict.fromkeys(["age_band", "region", "customer_tier", *bias.attributes()]))
    report = write_quality_report(splits, quarantine, config.task, folder, counts=record.get("counts"),
                                  attributes=attributes, reference=reference, reference_name=reference_name,
                                  title=f"{version.name} {version.md5[:12]}")
    create_markdown_artifact(key="data-quality-report", description=f"Data quality report, {version.md5[:12]}",
                             markdown=report.markdown + f"\n\nReport and plots: `{report.folder}`")
    if run_id is not None:
        import mlflow

        with reopen_run(run_id):
            mlflow.log_artifacts(report.folder, "reports/data-quality")
    return report.folder


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
    """AIF360 disparate impact / statistical parity of the training split (before/after reweighing)."""
    return audit_dataset_bias(read_split(version.path, "train"), config)


def check_dataset(version: DatasetVersion, config: PipelineConfig, run_id: str | None) -> tuple[ValidationReport,
                                                                                              BiasReport]:
    """The data checks both flows run: validate (report, Data Docs, quality report), enforce, audit bias.

    Raises:
        ValidationFailed: a critical expectation failed (after every report was published).
    """
    quality = validate_dataset(version, config.data)
    if run_id is not None:
        publish(run_id, "data-validation", quality.to_markdown(), quality.to_dict(), quality.summary())
    publish_data_docs(quality, run_id)
    publish_quality_report(version, config.data, config.bias, run_id)
    enforce_quality(quality)
    bias = audit_bias(dataclasses.replace(version, reused=False), config.bias)
    if run_id is not None:
        publish(run_id, "bias-audit", bias.to_markdown(), bias.to_dict(), "AIF360 dataset bias audit")
    else:
        create_markdown_artifact(key="bias-audit", markdown=bias.to_markdown(), description="AIF360 dataset bias audit")
    return quality, bias
