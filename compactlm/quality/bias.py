"""AIF360 dataset bias audit (protected attributes against a binary outcome) and Reweighing mitigation.

For each protected attribute the audit computes AIF360's disparate impact and statistical parity
difference between the unprivileged values and everyone else (Bellamy et al. 2018,
https://aif360.readthedocs.io), and checks them against the thresholds in ``BiasConfig`` (by default
the four-fifths rule of 29 CFR 1607.4(D): disparate impact in [0.8, 1.25]). With ``bias.reweighing``
the train split carries AIF360 Reweighing ``sample_weight``s (fine-tuning weights each example's loss by
them); the audit then reports every metric before (plain counts) and after (weighted), and the verdict
follows the weighted metrics, which are what training sees.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from compactlm.config import BiasConfig
from compactlm.errors import DataError

WEIGHT_COLUMN = "sample_weight"


@dataclass
class Metrics:
    """AIF360 metrics of one attribute, with the verdict against the thresholds.

    Attributes:
        disparate_impact: ``P(favorable | unprivileged) / P(favorable | privileged)``; 1 is parity.
        statistical_parity_difference: ``P(favorable | unprivileged) - P(favorable | privileged)``, in [-1, 1].
        favorable_rate_privileged: ``P(favorable | privileged)``, a fraction (weighted after reweighing).
        favorable_rate_unprivileged: ``P(favorable | unprivileged)``, a fraction.
        passed: every threshold of ``BiasConfig`` held.
        reasons: one line per violated threshold.
    """

    disparate_impact: float
    statistical_parity_difference: float
    favorable_rate_privileged: float
    favorable_rate_unprivileged: float
    passed: bool = True
    reasons: list[str] = field(default_factory=list)


@dataclass
class AttributeAudit:
    """One protected attribute: metrics before mitigation and, when the data is reweighed, after."""

    attribute: str
    unprivileged_values: list[str]
    n_rows: int
    audited: bool
    before: Metrics | None = None
    after: Metrics | None = None
    reasons: list[str] = field(default_factory=list)  # why it was not audited

    @property
    def effective(self) -> Metrics | None:
        """The metrics training sees: weighted when the data is reweighed."""
        return self.after or self.before


@dataclass
class BiasReport:
    """Every attribute's audit; the top-level fields describe the first attribute (its effective metrics)."""

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
    attributes: list[AttributeAudit] = field(default_factory=list)
    reweighed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The report as a plain dict."""
        return asdict(self)

    def to_markdown(self) -> str:
        """The verdict and, per attribute, each metric before and after reweighing (4 decimals)."""
        head = f"# Bias audit: {', '.join(f'`{a.attribute}`' for a in self.attributes)} vs `{self.label}`\n\n"
        if not self.audited:
            return head + f"**NOT AUDITED** — {'; '.join(self.reasons)}"
        lines = [f"**{'PASSED' if self.passed else 'FAILED'}** on {self.n_rows} rows"
                 + (" (reweighed: the verdict follows the weighted metrics)." if self.reweighed else "."), "",
                 "| attribute | unprivileged | metric | before | after reweighing |", "|---|---|---|---|---|"]
        for audit in self.attributes:
            if not audit.audited:
                lines.append(f"| {audit.attribute} | {', '.join(audit.unprivileged_values)} | not audited | "
                             f"{'; '.join(audit.reasons)} | |")
                continue
            for name in ("disparate_impact", "statistical_parity_difference", "favorable_rate_privileged",
                         "favorable_rate_unprivileged"):
                before = getattr(audit.before, name)
                after = f"{getattr(audit.after, name):.4f}" if audit.after else "—"
                lines.append(f"| {audit.attribute} | {', '.join(audit.unprivileged_values)} | "
                             f"{name.replace('_', ' ')} | {before:.4f} | {after} |")
        return head + "\n".join([*lines, "", *[f"- {r}" for r in self.reasons]])


def _import_aif360():
    # aif360 logs warnings about optional extras on import and installs a root handler; keep it quiet.
    logging.disable(logging.WARNING)
    try:
        from aif360.algorithms.preprocessing import Reweighing
        from aif360.datasets import BinaryLabelDataset
        from aif360.metrics import BinaryLabelDatasetMetric
    finally:
        logging.disable(logging.NOTSET)
    return BinaryLabelDataset, BinaryLabelDatasetMetric, Reweighing


def favorable_outcome(labels: pd.Series, config: BiasConfig) -> pd.Series:
    """1.0 where the label is favorable, 0.0 elsewhere (nulls must be dropped before).

    Args:
        labels: the label column.
        config: ``favorable_values`` (label strings) when set, else ``favorable_label`` (0 or 1).

    Returns:
        A float series aligned with ``labels``.

    Raises:
        DataError: without ``favorable_values``, a label that is not 0/1.
    """
    if config.favorable_values:
        return labels.astype(str).isin(config.favorable_values).astype(float)
    numeric = pd.to_numeric(labels, errors="coerce")
    bad = ~numeric.isin([0, 1])
    if bad.any():
        raise DataError(f"bias.label_column {config.label_column!r} must hold 0/1 values, found "
                        f"{labels[bad].iloc[0]!r} (or set bias.favorable_values)")
    return (numeric.astype(int) == config.favorable_label).astype(float)


def _privileged(values: pd.Series, attribute: str, unprivileged: list[str]) -> pd.Series:
    mask = values.astype(str).isin(unprivileged)
    if not mask.any() or mask.all():
        raise DataError(f"bias.unprivileged_values {unprivileged} must match some but not all values of column "
                        f"{attribute!r} (found {sorted(values.astype(str).unique())})")
    return (~mask).astype(float)


def _metrics(dataset, attribute: str, config: BiasConfig) -> Metrics:
    _, BinaryLabelDatasetMetric, _ = _import_aif360()
    metric = BinaryLabelDatasetMetric(dataset, unprivileged_groups=[{attribute: 0.0}],
                                      privileged_groups=[{attribute: 1.0}])
    result = Metrics(float(metric.disparate_impact()), float(metric.statistical_parity_difference()),
                     float(metric.base_rate(privileged=True)), float(metric.base_rate(privileged=False)))
    if result.disparate_impact < config.min_disparate_impact:
        result.reasons.append(f"{attribute}: disparate impact {result.disparate_impact:.3f} < "
                              f"{config.min_disparate_impact}")
    if result.disparate_impact > config.max_disparate_impact:
        result.reasons.append(f"{attribute}: disparate impact {result.disparate_impact:.3f} > "
                              f"{config.max_disparate_impact}")
    if abs(result.statistical_parity_difference) > config.max_abs_statistical_parity:
        result.reasons.append(f"{attribute}: |statistical parity difference| "
                              f"{abs(result.statistical_parity_difference):.3f} > {config.max_abs_statistical_parity}")
    result.passed = not result.reasons
    return result


def _dataset(frame: pd.DataFrame, attribute: str, unprivileged: list[str], config: BiasConfig, weights=None):
    BinaryLabelDataset, _, _ = _import_aif360()
    numeric = pd.DataFrame({attribute: _privileged(frame[attribute], attribute, unprivileged).to_numpy(),
                            "label": favorable_outcome(frame[config.label_column], config).to_numpy()})
    if weights is not None:
        numeric["weight"] = np.asarray(weights, dtype=float)
    return BinaryLabelDataset(df=numeric, label_names=["label"], protected_attribute_names=[attribute],
                              instance_weights_name="weight" if weights is not None else None,
                              favorable_label=1.0, unfavorable_label=0.0)


def audit_dataset_bias(frame: pd.DataFrame, config: BiasConfig) -> BiasReport:
    """Audit every protected attribute of ``frame`` against ``config.label_column``.

    A missing attribute or label column, or one that is entirely null, is reported as "not audited"
    (explicitly, never silently passed as fair). Groups absent from the data are an error. When
    ``frame`` has a ``sample_weight`` column the weighted (after reweighing) metrics are added.

    Args:
        frame: the rows to audit (the train split), with the attribute and label columns.
        config: the attributes with their unprivileged values, the label and the thresholds.

    Returns:
        The report; its top-level figures are those of the first audited attribute.

    Raises:
        DataError: unprivileged values that match none or all of an attribute's values, or (without
            ``favorable_values``) a label that is not 0/1.
    """
    label = config.label_column
    attributes = config.attributes()
    first, first_values = next(iter(attributes.items()))
    report = BiasReport(attribute=first, unprivileged_values=list(first_values), label=label, n_rows=len(frame),
                        audited=False, reweighed=WEIGHT_COLUMN in frame.columns)
    for attribute, unprivileged in attributes.items():
        audit = AttributeAudit(attribute, list(unprivileged), len(frame), audited=False)
        report.attributes.append(audit)
        missing = [c for c in (attribute, label) if c not in frame.columns or frame[c].isna().all()]
        if missing:
            audit.reasons.append(f"column {missing[0]!r} is absent or empty in the data")
            continue
        data = frame.dropna(subset=[attribute, label])
        audit.n_rows, audit.audited = len(data), True
        audit.before = _metrics(_dataset(data, attribute, unprivileged, config), attribute, config)
        if report.reweighed:
            weights = data[WEIGHT_COLUMN].fillna(1.0)
            audit.after = _metrics(_dataset(data, attribute, unprivileged, config, weights), attribute, config)
    audited = [a for a in report.attributes if a.audited]
    if not audited:
        report.reasons = [r for a in report.attributes for r in a.reasons]
        return report
    lead = report.attributes[0] if report.attributes[0].audited else audited[0]
    effective = lead.effective
    report.audited, report.n_rows = True, lead.n_rows
    report.attribute, report.unprivileged_values = lead.attribute, lead.unprivileged_values
    report.disparate_impact = effective.disparate_impact
    report.statistical_parity_difference = effective.statistical_parity_difference
    report.favorable_rate_privileged = effective.favorable_rate_privileged
    report.favorable_rate_unprivileged = effective.favorable_rate_unprivileged
    report.passed = all(a.effective.passed for a in audited)
    report.reasons = [r for a in audited for r in a.effective.reasons]
    report.reasons += [f"{a.attribute}: not audited ({'; '.join(a.reasons)})" for a in report.attributes
                       if not a.audited]
    if report.reweighed:
        mitigated = [r for a in audited if a.after and a.after.passed for r in a.before.reasons]
        report.reasons += [f"mitigated by reweighing: {r}" for r in mitigated]
    if report.passed:
        report.reasons.append("within thresholds "
                              f"(DI in [{config.min_disparate_impact}, {config.max_disparate_impact}], "
                              f"|SPD| <= {config.max_abs_statistical_parity})")
    return report


def reweighing_weights(frame: pd.DataFrame, config: BiasConfig, max_rounds: int = 50) -> tuple[pd.Series, str]:
    """AIF360 Reweighing weights that make the outcome independent of every protected attribute.

    With one attribute a single Reweighing pass is exact. With several, Reweighing is applied to each
    attribute in turn, on the already-weighted data, until every weighted statistical parity
    difference is below 1e-6 (iterative proportional fitting, Deming & Stephan 1940). Weights are scaled
    to mean 1; rows with a null attribute or label keep weight 1. Reweighing gives each (group, label)
    cell the weight ``P(group) * P(label) / P(group, label)`` (Kamiran & Calders 2012, "Data
    preprocessing techniques for classification without discrimination").

    Args:
        frame: the train split.
        config: the attributes, unprivileged values and label.
        max_rounds: most passes over the attributes (several attributes only).

    Returns:
        (weights aligned with ``frame``, a one-line note for the report). All weights are 1 when there
        is no label or attribute column, or when some group has only one outcome value.

    Raises:
        DataError: as ``audit_dataset_bias`` (unprivileged values matching none or all; labels not 0/1).
    """
    label = config.label_column
    attributes = {a: v for a, v in config.attributes().items() if a in frame.columns and frame[a].notna().any()}
    weights = pd.Series(1.0, index=frame.index, name=WEIGHT_COLUMN)
    if label not in frame.columns or frame[label].isna().all() or not attributes:
        return weights, f"not reweighed: no {label!r} label or no protected attribute in the train split"
    data = frame.dropna(subset=[label, *attributes])
    BinaryLabelDataset, _, Reweighing = _import_aif360()
    numeric = pd.DataFrame({a: _privileged(data[a], a, v).to_numpy() for a, v in attributes.items()})
    numeric["label"] = favorable_outcome(data[label], config).to_numpy()
    dataset = BinaryLabelDataset(df=numeric, label_names=["label"], protected_attribute_names=list(attributes),
                                 favorable_label=1.0, unfavorable_label=0.0)
    for attribute in attributes:
        if numeric.groupby([attribute, "label"]).ngroups < 4:
            return weights, f"not reweighed: some group of {attribute!r} has only one outcome value"
    for _ in range(max_rounds):
        for attribute in attributes:
            dataset = Reweighing(unprivileged_groups=[{attribute: 0.0}],
                                 privileged_groups=[{attribute: 1.0}]).fit_transform(dataset)
        w = dataset.instance_weights
        favorable = numeric["label"].to_numpy() == 1.0
        gaps = [abs(np.average(favorable[numeric[a] == 0], weights=w[numeric[a] == 0])
                    - np.average(favorable[numeric[a] == 1], weights=w[numeric[a] == 1])) for a in attributes]
        if max(gaps) < 1e-6:
            break
    scaled = dataset.instance_weights / dataset.instance_weights.mean()
    weights.loc[data.index] = scaled
    return weights, (f"reweighed {len(data)} train rows over {', '.join(attributes)} with AIF360 Reweighing "
                     f"(weights {scaled.min():.3f} to {scaled.max():.3f}, mean 1)")
