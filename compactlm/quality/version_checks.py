"""The quality checks of one dataset version: its GE suite run, its quality report and its bias audit.

Each reads the version's splits from its DVC folder (``compactlm.data.layout``) and the version index
(for the label-distribution reference: the previous version, or a file the config names), so the
ingest and retrain flows run the same checks on the same inputs.
"""

from __future__ import annotations

import hashlib
from typing import Any

from compactlm.config import BiasConfig, DataConfig
from compactlm.data.layout import DataLayout
from compactlm.data.splits import SPLITS, combined_splits
from compactlm.data.versioning import DatasetVersion, read_split, version_records
from compactlm.quality.bias import BiasReport, audit_dataset_bias
from compactlm.quality.expectations import ValidationReport, suite_path, validate_frame
from compactlm.quality.report import QualityReport, write_quality_report
from compactlm.quality.suites import reference_counts, suite_parameters

# Customer attributes the quality report always plots when present (the bias audit's come on top).
REPORTED_ATTRIBUTES = ("age_band", "region", "customer_tier")


def suite_digest(name: str) -> str:
    """SHA-256 (16 hex digits) of the suite file ``expectations/<name>.json``: a suite edit re-validates."""
    return hashlib.sha256(suite_path(name).read_bytes()).hexdigest()[:16]


def distribution_reference(version: DatasetVersion, config: DataConfig) -> tuple[dict[str, float] | None, str]:
    """The label counts this version's distribution is checked against, and the reference's name.

    See ``compactlm.quality.suites.reference_counts`` (``data.distribution_reference``).

    Raises:
        ConfigError: a reference file that is missing or not a JSON object of numbers.
    """
    records = version_records(DataLayout.of_version(version.path).repo, version.name)
    return reference_counts(config, records, version.md5)


def validate_version(version: DatasetVersion, config: DataConfig, reference: dict[str, float] | None = None,
                     docs_dir: str | None = None) -> ValidationReport:
    """Run the shape's GE suite over every split of the version (one frame, ``split`` column) and build Data Docs.

    Args:
        version: the dataset version.
        config: the data section (suite name and its parameters: allowed labels, lengths, tolerances).
        reference: label counts for the distribution check (``distribution_reference``); None: not checked.
        docs_dir: where to render the Data Docs site; None: none.

    Returns:
        The validation report (``success`` False when a critical expectation failed).

    Raises:
        DataError: a split file of the version is missing.
        ConfigError: the suite file is missing or malformed.
    """
    frame = combined_splits({name: read_split(version.path, name) for name in SPLITS})
    return validate_frame(frame, config.expectation_suite, suite_parameters(config, frame, reference),
                          docs_dir=docs_dir)


def data_docs_dir(version: DatasetVersion) -> str:
    """The folder of the version's Data Docs site (``<home>/data-docs/<name>/<md5[:12]>``)."""
    return str(DataLayout.of_version(version.path).data_docs_dir(version.name, version.md5))


def write_version_report(version: DatasetVersion, config: DataConfig, bias: BiasConfig) -> QualityReport:
    """Write the version's quality report (markdown + PNG plots) to ``<home>/reports/<name>/<md5[:12]>``.

    Counts come from the version index, quarantine reasons from ``quarantine.parquet`` (when any row
    was quarantined), the distribution comparison from ``distribution_reference``.

    Raises:
        DataError: a split file of the version is missing.
        ConfigError: an unreadable ``data.distribution_reference`` file.
    """
    layout = DataLayout.of_version(version.path)
    splits = {name: read_split(version.path, name) for name in SPLITS}
    has_quarantine = layout.split_file(version.name, "quarantine").is_file()
    quarantine = read_split(version.path, "quarantine") if has_quarantine else splits["train"].head(0)
    records = version_records(layout.repo, version.name)
    record: dict[str, Any] = next((r for r in records if r["md5"] == version.md5), {})
    reference, reference_name = reference_counts(config, records, version.md5)
    attributes = list(dict.fromkeys([*REPORTED_ATTRIBUTES, *bias.attributes()]))
    return write_quality_report(splits, quarantine, config.task, layout.report_dir(version.name, version.md5),
                                counts=record.get("counts"), attributes=attributes, reference=reference,
                                reference_name=reference_name, title=f"{version.name} {version.md5[:12]}")


def audit_version_bias(version: DatasetVersion, config: BiasConfig) -> BiasReport:
    """AIF360 disparate impact / statistical parity of the version's training split (see ``audit_dataset_bias``).

    Raises:
        DataError: the train split is missing, or as ``audit_dataset_bias``.
    """
    return audit_dataset_bias(read_split(version.path, "train"), config)
