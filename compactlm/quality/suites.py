"""Run-time inputs of the quality suites: parameters from the data config, and the reference label distribution.

The distribution check compares the version's label proportions with a reference: the previous version
in the dataset's index (``data.distribution_reference: previous``, the default), a JSON file mapping
each label to its proportion or count, or nothing (``none``). With no reference (a first version) the
check is skipped, and the report says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from compactlm.config import DataConfig
from compactlm.data.prepare import allowed_intents
from compactlm.errors import ConfigError


def partition_object(counts: dict[str, float]) -> dict[str, list] | None:
    """GE's categorical partition object (values and weights summing to 1) for label counts.

    The reference distribution of ``expect_column_kl_divergence_to_be_less_than`` (Great Expectations;
    the divergence is in nats, scipy's ``entropy``).

    Args:
        counts: label -> count or proportion (labels with a value <= 0 are left out).

    Returns:
        ``{"values": sorted labels, "weights": fractions}``, or None when nothing is positive.
    """
    total = float(sum(v for v in counts.values() if v > 0))
    if total <= 0:
        return None
    values = sorted(k for k, v in counts.items() if v > 0)
    return {"values": values, "weights": [counts[k] / total for k in values]}


def reference_counts(config: DataConfig, records: list[dict[str, Any]],
                     md5: str) -> tuple[dict[str, float] | None, str]:
    """The reference label counts for version ``md5`` and a description of where they come from.

    Args:
        config: the data section (``distribution_reference``).
        records: the dataset's version index, oldest first (``versioning.version_records``).
        md5: the version being validated.

    Raises:
        ConfigError: a reference file that is missing or not a JSON object of numbers.
    """
    choice = config.distribution_reference
    if choice == "none":
        return None, "no reference (data.distribution_reference is none)"
    if choice == "previous":
        position = next((i for i, r in enumerate(records) if r["md5"] == md5), len(records))
        earlier = [r for r in records[:position] if r.get("labels")]
        if not earlier:
            return None, "no previous version to compare with"
        return dict(earlier[-1]["labels"]), f"previous version {earlier[-1]['md5'][:12]}"
    path = Path(choice)
    if not path.is_file():
        raise ConfigError(f"data.distribution_reference: file {path} does not exist (or use previous or none)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"data.distribution_reference: {path} line {exc.lineno}: "
                          f"not valid JSON ({exc.msg})") from None
    if not isinstance(payload, dict) or not all(isinstance(v, int | float) and v >= 0 for v in payload.values()):
        raise ConfigError(f"data.distribution_reference: {path} must map each label to a proportion or count >= 0")
    return {str(k): float(v) for k, v in payload.items()}, f"reference file {path}"


def suite_parameters(config: DataConfig, frame: pd.DataFrame, reference: dict[str, float] | None) -> dict[str, Any]:
    """Values for every ``$PARAMETER`` the shipped suites use (None skips the expectation).

    Lengths are in characters (``min_chars``, ``max_chars``, ``max_document_chars``) or words
    (``chunk_words``); ``distribution_tolerance`` is the largest KL divergence, in nats, of the label
    proportions from ``reference`` (GE's ``expect_column_kl_divergence_to_be_less_than``).

    Args:
        config: the data section.
        frame: the version's rows (the allowed labels may be read from them).
        reference: label counts for the distribution check; None skips it.

    Returns:
        Parameter name -> value.
    """
    labels = allowed_intents(config, frame)
    return {
        "min_rows": config.min_rows, "min_chars": config.min_chars, "max_chars": config.max_chars,
        "max_document_chars": config.max_document_chars, "chunk_words": config.chunk_words,
        "allowed_intents": labels, "allowed_labels": labels,
        "reference_distribution": partition_object(reference) if reference else None,
        "distribution_tolerance": config.distribution_tolerance,
    }
