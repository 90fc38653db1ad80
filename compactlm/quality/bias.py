"""AIF360 dataset bias audit: a protected customer attribute against a binary outcome label."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from compactlm.config import BiasConfig
from compactlm.errors import DataError


@dataclass
class BiasReport:
    """Disparate impact and statistical parity difference, with the verdict against thresholds."""

    attribute: str
    unprivileged_values: list[str]
    label: str
    n_rows: int
    audited: bool
    disparate_impact: float | None = None
    statistical_parity_difference: float | None = None
    favorable_rate_privileged: float | None = None
    favorable_rate_unprivileged: float | None = None
    passed: bool = True
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        head = f"# Bias audit: `{self.attribute}` vs `{self.label}`\n\n"
        if not self.audited:
            return head + f"**NOT AUDITED** — {'; '.join(self.reasons)}"
        return head + "\n".join([
            f"**{'PASSED' if self.passed else 'FAILED'}** on {self.n_rows} rows "
            f"(unprivileged: {', '.join(self.unprivileged_values)}).", "",
            "| metric | value |", "|---|---|",
            f"| disparate impact | {self.disparate_impact:.4f} |",
            f"| statistical parity difference | {self.statistical_parity_difference:.4f} |",
            f"| favorable rate, privileged | {self.favorable_rate_privileged:.4f} |",
            f"| favorable rate, unprivileged | {self.favorable_rate_unprivileged:.4f} |",
            "", *[f"- {r}" for r in self.reasons],
        ])


def _import_aif360_metrics():
    # aif360 logs warnings about optional extras on import and installs a root handler; keep it quiet.
    logging.disable(logging.WARNING)
    try:
        from aif360.datasets import BinaryLabelDataset
        from aif360.metrics import BinaryLabelDatasetMetric
    finally:
        logging.disable(logging.NOTSET)
    return BinaryLabelDataset, BinaryLabelDatasetMetric


def audit_dataset_bias(frame: pd.DataFrame, config: BiasConfig) -> BiasReport:
    """Compute AIF360 dataset metrics of ``config.protected_attribute`` against ``config.label_column``.

    A missing attribute or label column, or a label that is entirely null, is reported as "not
    audited" (explicitly, never silently passed as fair). Groups absent from the data are an error.
    """
    attribute, label = config.protected_attribute, config.label_column
    report = BiasReport(attribute=attribute, unprivileged_values=list(config.unprivileged_values),
                        label=label, n_rows=len(frame), audited=False)
    for column in (attribute, label):
        if column not in frame.columns or frame[column].isna().all():
            report.reasons.append(f"column {column!r} is absent or empty in the data")
            return report
    data = frame[[attribute, label]].dropna()
    try:
        numeric_label = pd.to_numeric(data[label])
    except (TypeError, ValueError):
        numeric_label = None
    if numeric_label is None or not numeric_label.isin([0, 1]).all():
        bad = data[label][~pd.to_numeric(data[label], errors="coerce").isin([0, 1])].iloc[0]
        raise DataError(f"bias.label_column {label!r} must hold 0/1 values, found {bad!r}")
    outcome = numeric_label.astype(int)
    unprivileged = data[attribute].astype(str).isin(config.unprivileged_values)
    if not unprivileged.any() or unprivileged.all():
        raise DataError(f"bias.unprivileged_values {config.unprivileged_values} must match some but not all "
                        f"values of column {attribute!r} (found {sorted(data[attribute].astype(str).unique())})")
    BinaryLabelDataset, BinaryLabelDatasetMetric = _import_aif360_metrics()
    numeric = pd.DataFrame({attribute: (~unprivileged).astype(float).to_numpy(),
                            label: (outcome == config.favorable_label).astype(float).to_numpy()})
    dataset = BinaryLabelDataset(df=numeric, label_names=[label], protected_attribute_names=[attribute],
                                 favorable_label=1.0, unfavorable_label=0.0)
    metric = BinaryLabelDatasetMetric(dataset, unprivileged_groups=[{attribute: 0.0}],
                                      privileged_groups=[{attribute: 1.0}])
    report.audited = True
    report.n_rows = len(numeric)
    report.disparate_impact = float(metric.disparate_impact())
    report.statistical_parity_difference = float(metric.statistical_parity_difference())
    report.favorable_rate_privileged = float(metric.base_rate(privileged=True))
    report.favorable_rate_unprivileged = float(metric.base_rate(privileged=False))
    if report.disparate_impact < config.min_disparate_impact:
        report.reasons.append(f"disparate impact {report.disparate_impact:.3f} < {config.min_disparate_impact}")
    if report.disparate_impact > config.max_disparate_impact:
        report.reasons.append(f"disparate impact {report.disparate_impact:.3f} > {config.max_disparate_impact}")
    if abs(report.statistical_parity_difference) > config.max_abs_statistical_parity:
        report.reasons.append(f"|statistical parity difference| {abs(report.statistical_parity_difference):.3f}"
                              f" > {config.max_abs_statistical_parity}")
    report.passed = not report.reasons
    if report.passed:
        report.reasons.append("within thresholds "
                              f"(DI in [{config.min_disparate_impact}, {config.max_disparate_impact}], "
                              f"|SPD| <= {config.max_abs_statistical_parity})")
    return report
