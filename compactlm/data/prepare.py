"""Canonical instruction schema, row cleaning with quarantine, and the leak-free stratified split.

Rows that cannot be used are never dropped silently: each one goes to the quarantine frame with the
reason, and the counts go into the ingest report.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from compactlm.errors import DataError

REQUIRED_COLUMNS = ("instruction", "response", "intent")
OPTIONAL_COLUMNS = {
    "id": None,  # derived from the content when absent
    "category": "general",
    "age_band": "unknown",
    "region": "unknown",
    "customer_tier": "unknown",
    "resolved": None,  # the outcome label for the bias audit; absent means "not audited"
}
CANONICAL_COLUMNS = ("id", "instruction", "response", "category", "intent", "age_band", "region",
                     "customer_tier", "resolved")
SPLITS = ("train", "val", "test")

_WHITESPACE = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass
class PreparedData:
    """The canonical rows, the quarantined rows (with a ``reason`` column) and the counts."""

    rows: pd.DataFrame
    quarantine: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def normalize_text(value: str) -> str:
    """NFC-normalise, collapse runs of spaces, keep single newlines, strip the ends."""
    text = unicodedata.normalize("NFC", value)
    text = _WHITESPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def to_canonical(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Map a raw frame onto the canonical instruction schema.

    Raises:
        DataError: a required column is missing (the message lists what was found).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:12]))
        hint = ""
        if len(frame.columns) == 1 and any(sep in str(frame.columns[0]) for sep in ";|\t"):
            hint = " - wrong delimiter? CompactLM reads CSV with ',' and .tsv with tabs"
        raise DataError(f"{source}: missing required column(s) {', '.join(repr(c) for c in missing)} "
                        f"(found: {found}){hint}")
    out = pd.DataFrame(index=frame.index)
    for column in CANONICAL_COLUMNS:
        if column in frame.columns:
            out[column] = frame[column]
        elif OPTIONAL_COLUMNS.get(column) is not None:
            out[column] = OPTIONAL_COLUMNS[column]
        else:
            out[column] = pd.NA
    for column in ("instruction", "response", "category", "intent", "age_band", "region", "customer_tier"):
        out[column] = out[column].astype("string")
    if out["id"].isna().all():
        out["id"] = [_content_id(i, r) for i, r in zip(out["instruction"].fillna(""), out["response"].fillna(""))]
    out["id"] = out["id"].astype("string")
    return out.reset_index(drop=True)


def _content_id(instruction: str, response: str) -> str:
    return "row-" + hashlib.sha1(f"{instruction}\x00{response}".encode()).hexdigest()[:12]


def _quarantine(rows: pd.DataFrame, mask: pd.Series, reason: str, bins: list[pd.DataFrame]) -> pd.DataFrame:
    if mask.any():
        rejected = rows[mask].copy()
        rejected["reason"] = reason
        bins.append(rejected)
    return rows[~mask]


def clean_rows(rows: pd.DataFrame, min_chars: int, max_chars: int) -> PreparedData:
    """Normalise text and quarantine unusable rows: blank text, out-of-bounds length, duplicates.

    Args:
        rows: canonical rows (see ``to_canonical``).
        min_chars: shortest allowed instruction/response, in characters.
        max_chars: longest allowed instruction/response, in characters.
    """
    bins: list[pd.DataFrame] = []
    n_in = len(rows)
    for column in ("instruction", "response", "intent"):
        blank = rows[column].isna() | (rows[column].fillna("").str.strip() == "")
        rows = _quarantine(rows, blank, f"blank or null {column}", bins)
    rows = rows.copy()
    for column in ("instruction", "response"):
        rows[column] = rows[column].map(normalize_text).astype("string")
        lengths = rows[column].str.len()
        rows = _quarantine(rows, lengths < min_chars, f"{column} shorter than {min_chars} characters", bins)
        lengths = rows[column].str.len()
        rows = _quarantine(rows, lengths > max_chars, f"{column} longer than {max_chars} characters", bins)
    rows = rows.assign(intent=rows["intent"].str.strip(), category=rows["category"].fillna("general").str.strip())
    duplicated = rows.duplicated(subset=["instruction", "response"], keep="first")
    rows = _quarantine(rows, duplicated, "exact duplicate of an earlier row", bins)
    if rows["id"].isna().any():
        rows = rows.copy()
        missing = rows["id"].isna()
        rows.loc[missing, "id"] = [_content_id(i, r) for i, r in
                                   zip(rows.loc[missing, "instruction"], rows.loc[missing, "response"])]
    quarantine = pd.concat(bins, ignore_index=True) if bins else rows.head(0).assign(reason=pd.Series(dtype="string"))
    counts = {"rows_in": n_in, "rows_kept": len(rows), "rows_quarantined": len(quarantine)}
    for reason, count in quarantine["reason"].value_counts().items():
        counts[f"quarantined: {reason}"] = int(count)
    return PreparedData(rows=rows.reset_index(drop=True), quarantine=quarantine, counts=counts)


def split_rows(rows: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> dict[str, pd.DataFrame]:
    """Seeded split stratified by intent, with no instruction shared across splits.

    Rows are grouped by their lower-cased instruction and whole groups are assigned, so the same
    customer message can never appear in both train and test. Within each intent, groups are
    shuffled and cut at the requested fractions; intents with fewer than 3 groups go to train.
    """
    if rows.empty:
        raise DataError("no usable rows left after cleaning (see the quarantine file for the reasons)")
    key = rows["instruction"].str.lower()
    groups = pd.DataFrame({"key": key, "intent": rows["intent"]}).drop_duplicates("key")
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for _, members in groups.groupby("intent", sort=True):
        keys = members["key"].to_numpy()
        keys = keys[rng.permutation(len(keys))]
        n = len(keys)
        # From 3 groups on, every intent gets at least one test and one validation group.
        n_test = max(1, int(round(n * test_fraction))) if n >= 3 else 0
        n_val = max(1, int(round(n * val_fraction))) if n >= 3 else 0
        for i, k in enumerate(keys):
            assignment[k] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    split_of = key.map(assignment)
    out = {name: rows[split_of == name].reset_index(drop=True) for name in SPLITS}
    for name in ("train", "test"):
        if out[name].empty:
            raise DataError(f"the {name} split is empty: {len(rows)} usable rows are too few to split")
    return out
