"""The data quality report: markdown with PNG plots of the label, length and attribute distributions.

Written next to nothing else in its folder (``<home>/reports/<dataset>/<version>/``): ``report.md``,
``labels.png``, ``lengths.png``, ``attributes.png`` and ``quarantine.png``, so the whole folder can be
logged to MLflow as is. Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from compactlm.data.schemas import SCHEMAS
from compactlm.data.splits import combined_splits
from compactlm.fileio import atomic_write_text

ATTRIBUTE_CANDIDATES = ("age_band", "region", "customer_tier", "category")
MAX_LABELS = 40


@dataclass
class QualityReport:
    """Where the report was written, its markdown, and the plots."""

    folder: str
    markdown: str
    images: list[str] = field(default_factory=list)


def _table(frame: pd.DataFrame) -> list[str]:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return [head, "|" + "---|" * len(frame.columns), *rows]


def _plot_labels(splits: dict[str, pd.DataFrame], label: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    counts = pd.DataFrame({name: frame[label].astype(str).value_counts() for name, frame in splits.items()}).fillna(0)
    counts = counts.loc[counts.sum(axis=1).sort_values(ascending=False).index[:MAX_LABELS]].iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.22 * len(counts) + 1)))
    counts.plot.barh(stacked=True, ax=ax, width=0.8)
    ax.set_xlabel("rows")
    ax.set_title(f"{label} per split" + (f" (top {MAX_LABELS})" if len(counts) == MAX_LABELS else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_lengths(splits: dict[str, pd.DataFrame], columns: list[str], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 3.2), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for name, frame in splits.items():
            lengths = frame[column].dropna().astype(str).str.len()
            if len(lengths):
                ax.hist(lengths, bins=40, histtype="step", density=True, label=name)
        ax.set_title(f"{column} length (characters)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_attributes(all_rows: pd.DataFrame, attributes: list[str], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(attributes), figsize=(3.6 * len(attributes), 3.2), squeeze=False)
    for ax, attribute in zip(axes[0], attributes):
        shares = pd.crosstab(all_rows[attribute].astype(str), all_rows["split"], normalize="columns")
        shares.plot.bar(ax=ax, rot=45)
        ax.set_title(attribute)
        ax.set_ylabel("share of the split")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_quarantine(reasons: pd.Series, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.3 * len(reasons) + 1)))
    reasons.iloc[::-1].plot.barh(ax=ax)
    ax.set_xlabel("rows quarantined")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_quality_report(splits: dict[str, pd.DataFrame], quarantine: pd.DataFrame, task: str, folder: str | Path,
                         counts: dict[str, int] | None = None, attributes: list[str] | None = None,
                         reference: dict[str, float] | None = None, reference_name: str = "",
                         title: str = "") -> QualityReport:
    """Write the report and its plots into ``folder`` (replaced) and return its markdown.

    Args:
        splits: split name -> rows of the version.
        quarantine: the quarantined rows (with ``reason``).
        task: the task shape (decides the label and text columns).
        folder: where to write; emptied first.
        counts: the ingest counts (rows in/kept/quarantined, PII replaced...).
        attributes: customer attribute columns to plot (default: the usual ones that are present).
        reference: reference label counts for the label table; ``reference_name`` describes them.
        title: the report heading (e.g. the dataset and version).

    Text lengths are plotted and tabulated in characters; label shares are fractions of all split rows.

    Returns:
        The folder, the markdown (also written to ``report.md``) and the PNG file names written.
    """
    import matplotlib

    matplotlib.use("Agg")
    schema = SCHEMAS[task]
    out = Path(folder)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    all_rows = combined_splits(splits)
    lines = [f"# Data quality report{': ' + title if title else ''}", "",
             f"Task `{task}`; {len(all_rows)} rows in the splits, {len(quarantine)} quarantined.", ""]
    lines += ["## Splits", "", *_table(pd.DataFrame({"split": list(splits),
                                                      "rows": [len(f) for f in splits.values()]})), ""]
    if counts:
        table = pd.DataFrame({"count": list(counts), "value": list(counts.values())})
        lines += ["## Ingest counts", "", *_table(table), ""]
    images: list[str] = []
    if len(quarantine):
        kinds = quarantine["reason"].astype(str).str.replace(r" of \S+$", " of an earlier row", regex=True)
        reasons = kinds.value_counts()
        _plot_quarantine(reasons, out / "quarantine.png")
        images.append("quarantine.png")
        lines += ["## Quarantine", "", *_table(reasons.rename_axis("reason").reset_index(name="rows")), "",
                  "![quarantine reasons](quarantine.png)", ""]
    label = schema.label
    if label and label in all_rows.columns and all_rows[label].notna().any():
        _plot_labels(splits, label, out / "labels.png")
        images.append("labels.png")
        shares = all_rows[label].astype(str).value_counts(normalize=True).rename("share")
        table = shares.rename_axis(label).reset_index()
        if reference:
            total = sum(reference.values()) or 1.0
            table["reference"] = table[label].map(lambda v: reference.get(v, 0.0) / total)
            table["difference"] = table["share"] - table["reference"]
        lines += [f"## {label} distribution" + (f" (reference: {reference_name})" if reference else ""), "",
                  *_table(table.head(MAX_LABELS).round(4)), "", "![labels](labels.png)", ""]
    text_columns = [c for c in schema.text_columns if c in all_rows.columns]
    if text_columns:
        _plot_lengths(splits, text_columns, out / "lengths.png")
        images.append("lengths.png")
        stats = all_rows[text_columns].apply(lambda s: s.astype(str).str.len()).describe().round(1).T
        lines += ["## Text lengths (characters)", "", *_table(stats.rename_axis("column").reset_index()), "",
                  "![lengths](lengths.png)", ""]
    present = [a for a in (attributes or ATTRIBUTE_CANDIDATES) if a in all_rows.columns
               and all_rows[a].notna().any() and all_rows[a].nunique() > 1]
    if present:
        _plot_attributes(all_rows, present, out / "attributes.png")
        images.append("attributes.png")
        lines += ["## Attributes", ""]
        for attribute in present:
            lines += [*_table(pd.crosstab(all_rows[attribute].astype(str), all_rows["split"]).reset_index()), ""]
        lines += ["![attributes](attributes.png)", ""]
    markdown = "\n".join(lines)
    atomic_write_text(out / "report.md", markdown)
    return QualityReport(folder=str(out), markdown=markdown, images=images)
