"""The monitor report's figures: prompt-length histograms and intent shares, training vs served (matplotlib)."""

from __future__ import annotations

from typing import Any

from compactlm.monitoring.drift import DriftReport


def drift_figures(report: DriftReport) -> dict[str, Any]:
    """Matplotlib figures of the report's distributions, by file name (``length.png``, ``intent.png``).

    Returns:
        ``{file_name: Figure}``; empty when the text checks were not computed. Close them after saving
        (``matplotlib.pyplot.close(fig)``).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: figures are only saved
    import matplotlib.pyplot as plt
    import numpy as np

    figures: dict[str, Any] = {}
    length = report.distributions.get("length")
    if length:
        ref, cur = np.array(length["reference"], float), np.array(length["served"], float)
        labels = [str(b) for b in length["bins"]]
        x = np.arange(len(labels))
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.bar(x - 0.2, ref / max(ref.sum(), 1), 0.4, label="training")
        ax.bar(x + 0.2, cur / max(cur.sum(), 1), 0.4, label="served")
        ax.set_xticks(x, [f">={b}" for b in labels], rotation=45)
        ax.set_xlabel("prompt length (words)")
        ax.set_ylabel("share of prompts")
        check = next(c for c in report.checks if c.name == "length")
        ax.set_title(f"Prompt length: KS D = {check.statistic:.3f} (threshold {check.threshold:g})")
        ax.legend()
        fig.tight_layout()
        figures["length.png"] = fig
    intent = report.distributions.get("intent")
    if intent:
        names = intent["labels"]
        x = np.arange(len(names))
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 4))
        ax.bar(x - 0.2, intent["reference"], 0.4, label="training (held-out, predicted)")
        ax.bar(x + 0.2, intent["served"], 0.4, label="served (predicted)")
        ax.set_xticks(x, names, rotation=60, ha="right")
        ax.set_ylabel("share")
        check = next(c for c in report.checks if c.name == "intent")
        ax.set_title(f"Intent shares: JS distance = {check.statistic:.3f} (threshold {check.threshold:g})")
        ax.legend()
        fig.tight_layout()
        figures["intent.png"] = fig
    return figures
