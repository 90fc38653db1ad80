"""What an ingest did, in a few numbers and lines: rows read, kept per split, quarantined per reason,
columns matched and warnings. Built from a version's recorded metadata, so a reused version reports the
same as when it was made (the CLI prints it; the JSON, the report and the MLflow run hold it).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from compactlm.data.splits import SPLITS

_READ_UNIT = {"chat": "conversations", "pretraining": "documents"}
_KEPT_UNIT = {"chat": "turns", "pretraining": "chunks"}
_QUARANTINED = "quarantined: "
_STRUCTURAL = {"rows_in", "rows_kept", "rows_quarantined", "augmented rows added"}


def ingest_summary(metadata: dict[str, Any]) -> dict[str, Any]:
    """The summary of one version from its metadata (``compactlm.data.ingest`` records it with the version).

    Args:
        metadata: a version record (``version_records``) or the metadata written with it: ``task``,
            ``counts`` (``rows_in``, ``split <name>``, ``quarantined: <reason>``...), ``warnings``,
            ``columns_mapped``.

    Returns:
        ``rows_read``, ``rows_kept`` per split (augmented rows not counted), ``augmented``, ``quarantined``
        per reason, ``cleaning`` (what cleaning changed: HTML stripped, PII replaced per kind, chat roles
        mapped...), ``columns_mapped`` and ``warnings``, JSON-ready.
    """
    counts = metadata.get("counts", {})
    return {"task": metadata.get("task", ""), "rows_read": int(counts.get("rows_in", 0)),
            "rows_kept": {name: int(counts.get(f"split {name}", 0)) for name in SPLITS},
            "augmented": int(counts.get("augmented rows added", 0)),
            "quarantined": {key.removeprefix(_QUARANTINED): int(n) for key, n in counts.items()
                            if key.startswith(_QUARANTINED)},
            "cleaning": {key: int(n) for key, n in counts.items() if key not in _STRUCTURAL
                         and not key.startswith((_QUARANTINED, "split "))},
            "columns_mapped": dict(metadata.get("columns_mapped", {})),
            "warnings": list(metadata.get("warnings", []))}


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as the lines the CLI prints: the counts, one line per quarantine reason, then the warnings."""
    task = summary.get("task", "")
    kept = summary["rows_kept"]
    quarantined = summary["quarantined"]
    splits = ", ".join(f"{name} {n}" for name, n in kept.items())
    lines = [f"Read {summary['rows_read']} {_READ_UNIT.get(task, 'rows')}; kept {sum(kept.values())} "
             f"{_KEPT_UNIT.get(task, 'rows')} ({splits}); quarantined {sum(quarantined.values())}"
             + (f"; {summary['augmented']} augmented rows added to train" if summary.get("augmented") else "")]
    lines += [f"  quarantined, {reason}: {n}" for reason, n in quarantined.items()]
    changed = {key: n for key, n in summary.get("cleaning", {}).items() if n}
    if changed:
        lines.append("Cleaned: " + ", ".join(f"{key} {n}" for key, n in changed.items()))
    if summary["columns_mapped"]:
        lines.append("Columns matched regardless of case and spaces: "
                     + ", ".join(f"{old!r} -> {new!r}" for old, new in summary["columns_mapped"].items()))
    lines += [f"warning: {warning}" for warning in summary["warnings"]]
    return lines


def class_coverage_warnings(splits: dict[str, pd.DataFrame], label: str | None) -> list[str]:
    """Warnings naming the classes that validation or test lack: the evaluation cannot measure them.

    The split keeps a class with fewer than 3 groups of rows in train only (it cannot be stratified);
    with the user's own split any class may miss a split. Augmented rows do not count.

    Args:
        splits: ``{"train", "val", "test"}`` -> rows.
        label: the label column (None: no warning).
    """
    if label is None or any(label not in frame.columns for frame in splits.values()):
        return []
    real = {name: frame[~frame["augmented"].astype(bool)] if "augmented" in frame.columns else frame
            for name, frame in splits.items()}
    values = {name: frame[label].dropna().astype(str) for name, frame in real.items()}
    totals = pd.concat(values.values()).value_counts()
    missing = {value: tuple(name for name in ("val", "test") if value not in set(values.get(name, ())))
               for value in sorted(totals.index)}
    warnings = []
    for splits_missing in (("val", "test"), ("val",), ("test",)):
        absent = [value for value, where in missing.items() if where == splits_missing]
        if not absent:
            continue
        named = ", ".join(f"{value!r} ({int(totals[value])} row(s))" for value in absent[:10])
        more = f" and {len(absent) - 10} more" if len(absent) > 10 else ""
        warnings.append(f"{len(absent)} {label} value(s) absent from {' and '.join(splits_missing)}, which cannot "
                        f"evaluate them: {named}{more} (a class needs rows in at least 3 groups to be stratified; "
                        "smaller ones are kept in train only)")
    return warnings
