"""Canonical rows and their cleaning, with every rejected row quarantined with its reason.

Rows that cannot be used are never dropped silently: each one goes to the quarantine frame with the
reason, and the counts go into the ingest report. Cleaning order matters: HTML is stripped before
whitespace is normalised (tags leave spaces behind), PII is scrubbed after (a no-break space inside a
phone number must not hide it), and duplicates are found last, on the cleaned text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from compactlm.data.schemas import SCHEMAS, TaskSchema, fold_columns, map_columns, to_schema
from compactlm.data.text import (
    classic_clean_series,
    invisible_series,
    near_duplicate_keys,
    normalize_series,
    scrub_pii_series,
    strip_html_series,
)


@dataclass
class CleanOptions:
    """How text is cleaned and which rows are rejected (built from ``DataConfig`` by ``from_config``)."""

    min_chars: int = 2
    max_chars: int = 2_000
    max_document_chars: int = 50_000
    unicode_form: str = "NFC"
    strip_html: bool = True
    scrub_pii: bool = True
    near_duplicates: bool = True
    classic_cleaning: bool = False

    @classmethod
    def from_config(cls, config: Any) -> CleanOptions:
        """The options of a ``DataConfig`` (any object with the same field names)."""
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


@dataclass
class CleanedRows:
    """The canonical rows, the quarantined rows (with a ``reason`` column) and the counts."""

    rows: pd.DataFrame
    quarantine: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    cleaning: dict[str, int] = field(default_factory=dict)  # HTML-stripped rows, PII replaced per kind


class Quarantine:
    """Collects rejected rows with their reason; counts them per kind of reason for the report."""

    def __init__(self) -> None:
        self._bins: list[pd.DataFrame] = []
        self.kinds: dict[str, int] = {}

    def reject(self, rows: pd.DataFrame, mask: pd.Series, kind: str, reasons: pd.Series | None = None) -> pd.DataFrame:
        """Move ``rows[mask]`` to quarantine (reason ``kind``, or per-row ``reasons``); return the rest.

        Args:
            rows: the rows still in play.
            mask: True for the rows to reject (aligned with ``rows``; nulls count as False).
            kind: the reason, and the name the rows are counted under in the report.
            reasons: a more precise reason per row (aligned with ``rows``), e.g. naming the duplicated row.
        """
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            rejected = rows[mask].copy()
            rejected["reason"] = kind if reasons is None else reasons[mask].astype(str).to_numpy()
            self._bins.append(rejected)
            self.kinds[kind] = self.kinds.get(kind, 0) + int(mask.sum())
        return rows[~mask]

    def frame(self, like: pd.DataFrame) -> pd.DataFrame:
        """All rejected rows, or an empty frame with ``like``'s columns plus ``reason``."""
        if self._bins:
            return pd.concat(self._bins, ignore_index=True)
        return like.head(0).assign(reason=pd.Series(dtype="string"))

    def __len__(self) -> int:
        return sum(self.kinds.values())

    def counts(self) -> dict[str, int]:
        """Rejected rows per reason, keyed ``"quarantined: <kind>"`` as the ingest report shows them."""
        return {f"quarantined: {kind}": n for kind, n in self.kinds.items()}


def _uniform(series: pd.Series) -> pd.Series:
    """One type per column (files of a folder may disagree: "1" in a CSV, 1 in a JSONL): numeric when every
    value is a number, else text. Parquet cannot store a column mixing both.
    """
    if series.dtype != object and not pd.api.types.is_string_dtype(series):
        return series
    numeric = pd.to_numeric(series, errors="coerce")
    if numeric.notna().sum() == series.notna().sum():
        return numeric.astype("Int64") if (numeric.dropna() % 1 == 0).all() else numeric
    return series.astype("string")


def content_ids(rows: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> list[str]:
    """Stable ids from the content of ``columns`` (the same text always gets the same id).

    Args:
        rows: the rows to name.
        columns: the text columns whose values (joined by NUL) are hashed.

    Returns:
        ``"row-"`` plus the first 12 hex digits of the SHA-1 of the joined text, one per row.
    """
    parts = [rows[c].astype("string").fillna("") for c in columns]
    joined = parts[0] if len(parts) == 1 else parts[0].str.cat(parts[1:], sep="\x00")
    return ["row-" + hashlib.sha1(text.encode()).hexdigest()[:12] for text in joined]


def to_canonical(frame: pd.DataFrame, source: str, task: str = "instruction", columns: dict[str, str] | None = None,
                 keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """Map a raw frame onto the canonical schema of ``task`` (column names matched regardless of case and
    surrounding spaces when unambiguous, see ``fold_columns``).

    Args:
        frame: the rows as read from the source.
        source: where they came from (named in errors).
        task: the task shape (a key of ``SCHEMAS``).
        columns: ``data.columns``: canonical name -> the source's column.
        keep: extra source columns to carry through unchanged (e.g. bias attributes).

    Raises:
        DataError: a required or mapped column is missing (the message lists what was found).
    """
    schema = SCHEMAS[task]
    frame, _ = fold_columns(frame, schema, columns, keep)
    out = to_schema(map_columns(frame, columns or {}, source), schema, source, keep)
    for column in out.columns:
        if column == "messages":
            continue
        out[column] = _uniform(out[column]) if column == "resolved" or column not in schema.input_columns \
            else out[column].astype("string")
    if out["id"].isna().all():
        out["id"] = content_ids(out, [c for c in schema.text_columns if c in out.columns] or list(schema.required))
    out["id"] = out["id"].astype("string")
    ordered = [c for c in schema.output_columns if c in out.columns]
    return out[ordered + [c for c in out.columns if c not in ordered]]


def clean_text_columns(rows: pd.DataFrame, columns: list[str], options: CleanOptions,
                       counts: dict[str, int]) -> pd.DataFrame:
    """Strip HTML, normalise Unicode and whitespace, and scrub PII in ``columns`` (counts go to ``counts``).

    HTML goes first (tags leave spaces behind), PII last (a no-break space inside a phone number must
    not hide it).

    Args:
        rows: the rows to clean (not modified: a cleaned copy is returned).
        columns: the text columns to clean.
        options: which steps run, and the Unicode form.
        counts: added to: ``rows with HTML stripped`` and ``pii replaced: <kind>``.
    """
    rows = rows.copy()
    pii = {"email": 0, "phone": 0, "card": 0}
    for column in columns:
        if options.strip_html:
            rows[column], n_html = strip_html_series(rows[column])
            counts["rows with HTML stripped"] = counts.get("rows with HTML stripped", 0) + n_html
        rows[column] = normalize_series(rows[column], options.unicode_form)
        if options.scrub_pii:
            rows[column] = scrub_pii_series(rows[column], pii)
    if options.scrub_pii:
        for kind, n in pii.items():
            counts[f"pii replaced: {kind}"] = counts.get(f"pii replaced: {kind}", 0) + n
    return rows


def is_blank(series: pd.Series) -> pd.Series:
    """True where a value is null, empty or only whitespace."""
    return series.isna() | (series.astype("string").fillna("").str.strip() == "")


def reject_invisible(rows: pd.DataFrame, columns: list[str], quarantine: Quarantine) -> pd.DataFrame:
    """Quarantine rows whose cleaned text in one of ``columns`` shows nothing ("<column> empty after cleaning").

    Text made only of format characters (bidi controls, zero-width joiners: Unicode category Cf),
    controls and spaces is not text, however long it is.
    """
    for column in columns:
        rows = quarantine.reject(rows, invisible_series(rows[column]), f"{column} empty after cleaning")
    return rows


def reject_near_duplicates(rows: pd.DataFrame, keys: pd.Series, quarantine: Quarantine, what: str) -> pd.DataFrame:
    """Quarantine every row whose near-duplicate key (aligned with ``rows``) an earlier row has, naming that row.

    Args:
        rows: rows with an ``id`` column.
        keys: their near-duplicate keys (``text.near_duplicate_keys``), aligned with ``rows``.
        quarantine: where the rejected rows go.
        what: what a row is, for the reason (``"row"``, ``"conversation"``, ``"document"``...).
    """
    first = pd.Series(rows["id"].groupby(keys.to_numpy(), sort=False).transform("first").to_numpy(), index=keys.index)
    return quarantine.reject(rows, keys.duplicated(keep="first"), f"near duplicate of an earlier {what}",
                             "near duplicate of " + first.astype(str))


def _label_conflicts(rows: pd.DataFrame, schema: TaskSchema, quarantine: Quarantine) -> pd.DataFrame:
    """Keep one label per near-identical text (the most frequent; ties: the first seen); quarantine the rest."""
    label = schema.label
    if label is None or schema.name == "chat":  # a chat's intent belongs to the conversation, not one message
        return rows
    keys = near_duplicate_keys(rows[schema.key_column]).to_numpy()
    labels = rows[label].astype("string").fillna("")
    n_labels = labels.groupby(keys, sort=False).transform("nunique")
    if not (n_labels > 1).any():
        return rows
    tally = pd.DataFrame({"key": keys, "label": labels.to_numpy(), "order": np.arange(len(rows))})
    stats = tally.groupby(["key", "label"], sort=False).agg(n=("order", "size"), first=("order", "min")).reset_index()
    stats = stats.sort_values(["key", "n", "first"], ascending=[True, False, True]).drop_duplicates("key")
    kept_label = pd.Series(stats["label"].to_numpy(), index=stats["key"].to_numpy())
    kept_row = pd.Series(rows["id"].to_numpy()[stats["first"].to_numpy()], index=stats["key"].to_numpy())
    winner = kept_label.reindex(keys).to_numpy()
    conflict = pd.Series(labels.to_numpy() != winner, index=rows.index)
    reasons = pd.Series([f"conflicting label: the same {schema.key_column} is labelled {w!r} in row {r}"
                         for w, r in zip(winner, kept_row.reindex(keys).to_numpy())], index=rows.index)
    return quarantine.reject(rows, conflict, f"conflicting {label}: the same {schema.key_column} has another label",
                             reasons)


def clean_rows(rows: pd.DataFrame, min_chars: int, max_chars: int, options: CleanOptions | None = None,
               task: str = "instruction") -> CleanedRows:
    """Clean canonical rows and quarantine unusable ones, each with its reason.

    Rejects blank or null required values, texts out of length bounds, exact and near duplicates (the
    later copy goes; near duplicates name the row they duplicate), texts carrying two labels, and
    repeated ids.

    Args:
        rows: canonical rows (see ``to_canonical``).
        min_chars: shortest allowed text, in characters.
        max_chars: longest allowed short text (documents use ``options.max_document_chars``).
        options: the rest of the cleaning switches (defaults: everything on, no classic cleaning).
        task: the task shape of ``rows``.
    """
    options = options or CleanOptions()
    schema = SCHEMAS[task]
    quarantine = Quarantine()
    counts: dict[str, int] = {"rows_in": len(rows)}
    cleaning: dict[str, int] = {}
    for column in schema.required:
        rows = quarantine.reject(rows, is_blank(rows[column]), f"blank or null {column}")
    text_columns = list(schema.text_columns)
    rows = clean_text_columns(rows, text_columns, options, cleaning)
    rows = reject_invisible(rows, text_columns, quarantine)
    if options.classic_cleaning:
        rows = rows.assign(text=classic_clean_series(rows["text"]))
        rows = quarantine.reject(rows, is_blank(rows["text"]), "blank after classic cleaning")
    for column, bound in schema.text_columns.items():
        upper = {"short": max_chars, "document": options.max_document_chars}.get(bound)
        rows = quarantine.reject(rows, rows[column].str.len() < min_chars,
                                 f"{column} shorter than {min_chars} characters")
        if upper is not None:
            rows = quarantine.reject(rows, rows[column].str.len() > upper, f"{column} longer than {upper} characters")
    if schema.label is not None:
        rows = rows.assign(**{schema.label: rows[schema.label].astype("string").str.strip()})
    if "category" in rows.columns:
        rows = rows.assign(category=rows["category"].fillna("general").str.strip())
    missing = rows["id"].isna()
    if missing.any():
        rows = rows.copy()
        rows.loc[missing, "id"] = content_ids(rows[missing], text_columns)
    dedup = text_columns + ([schema.label] if schema.name == "classification" else [])
    rows = quarantine.reject(rows, rows.duplicated(subset=dedup, keep="first"), "exact duplicate of an earlier row")
    if options.near_duplicates and len(rows):
        keys = near_duplicate_keys(rows[dedup[0]])
        for column in dedup[1:]:
            keys = keys.str.cat(near_duplicate_keys(rows[column]), sep="\x00")
        rows = reject_near_duplicates(rows, keys, quarantine, "row")
    rows = _label_conflicts(rows, schema, quarantine)
    rows = quarantine.reject(rows, rows["id"].duplicated(keep="first"), "id already used by an earlier row")
    quarantined = quarantine.frame(rows)
    counts.update({"rows_kept": len(rows), "rows_quarantined": len(quarantined), **quarantine.counts()})
    return CleanedRows(rows=rows.reset_index(drop=True), quarantine=quarantined, counts=counts, cleaning=cleaning)
