"""Plain-text corpora for pretraining: clean documents, chunk them into sequences, hold out the tail.

Documents (a ``text`` column, or one ``.txt`` file each) are cleaned like any text, deduplicated
(exact and near), then cut into chunks of ``chunk_words`` words that keep the original whitespace
(newlines included). Chunks repeated across documents (boilerplate) are quarantined as near duplicates,
so no text can sit on both sides of a split. The split is contiguous: the corpus order is kept and the
tail is held out (validation, then test), cut at document boundaries when there are enough documents.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from compactlm.data.cleaning import (
    CleanedRows,
    CleanOptions,
    Quarantine,
    clean_text_columns,
    is_blank,
    reject_invisible,
    reject_near_duplicates,
)
from compactlm.data.splits import SPLITS
from compactlm.data.text import near_duplicate_keys
from compactlm.errors import DataError

_WORD_WITH_SPACE = re.compile(r"\S+\s*")


def chunk_text(text: str, chunk_words: int) -> list[str]:
    """``text`` cut into pieces of ``chunk_words`` words, whitespace (newlines too) kept, ends stripped.

    Args:
        text: one document.
        chunk_words: words per piece (``data.chunk_words``); the last piece may be shorter.
    """
    words = _WORD_WITH_SPACE.findall(text)
    return ["".join(words[i:i + chunk_words]).strip() for i in range(0, len(words), chunk_words)]


def _dedup(rows: pd.DataFrame, column: str, quarantine: Quarantine, what: str, near: bool) -> pd.DataFrame:
    rows = quarantine.reject(rows, rows[column].duplicated(), f"exact duplicate of an earlier {what}")
    if near and len(rows):
        rows = reject_near_duplicates(rows, near_duplicate_keys(rows[column]), quarantine, what)
    return rows


def prepare_corpus(rows: pd.DataFrame, options: CleanOptions, chunk_words: int) -> CleanedRows:
    """Clean and deduplicate documents, then chunk them; every rejected document or chunk is quarantined.

    Args:
        rows: canonical pretraining rows (``id``, ``title``, ``text``: one document each).
        options: the cleaning switches (``max_document_chars`` does not apply: documents are chunked).
        chunk_words: words per chunk (``data.chunk_words``).

    Returns:
        One row per chunk (``doc_id``, ``chunk``, ``n_words``...), the quarantine and the counts.
    """
    quarantine = Quarantine()
    counts: dict[str, int] = {"rows_in": len(rows)}
    cleaning: dict[str, int] = {}
    rows = quarantine.reject(rows, is_blank(rows["text"]), "blank or null text")
    rows = clean_text_columns(rows, ["text"], options, cleaning)
    rows = reject_invisible(rows, ["text"], quarantine)
    rows = quarantine.reject(rows, rows["text"].str.len() < options.min_chars,
                             f"text shorter than {options.min_chars} characters")
    rows = quarantine.reject(rows, rows["id"].duplicated(), "id already used by an earlier document")
    rows = _dedup(rows, "text", quarantine, "document", options.near_duplicates)
    records = []
    for doc_id, title, text in zip(rows["id"], rows["title"].fillna(""), rows["text"]):
        for k, chunk in enumerate(chunk_text(text, chunk_words)):
            records.append({"id": f"{doc_id}-c{k:04d}", "doc_id": doc_id, "chunk": k, "title": title, "text": chunk,
                            "n_words": len(chunk.split())})
    chunks = pd.DataFrame.from_records(records, columns=["id", "doc_id", "chunk", "title", "text", "n_words"])
    chunks = chunks.astype({"id": "string", "doc_id": "string", "title": "string", "text": "string"})
    # A short tail chunk of a document is still useful text; one below min_chars is not.
    chunks = quarantine.reject(chunks, chunks["text"].str.len() < options.min_chars,
                               f"chunk shorter than {options.min_chars} characters")
    chunks = _dedup(chunks, "text", quarantine, "chunk", options.near_duplicates)
    quarantined = quarantine.frame(chunks)
    counts.update({"documents_kept": int(chunks["doc_id"].nunique()) if len(chunks) else 0,
                   "rows_kept": len(chunks), "rows_quarantined": len(quarantined), **quarantine.counts()})
    return CleanedRows(rows=chunks.reset_index(drop=True), quarantine=quarantined, counts=counts, cleaning=cleaning)


def split_corpus(chunks: pd.DataFrame, val_fraction: float, test_fraction: float) -> dict[str, pd.DataFrame]:
    """Contiguous split: the first chunks train, then validation, then the test tail.

    With at least 3 documents the cuts move to document boundaries (each document is in one split);
    with fewer, the cuts fall between chunks.

    Args:
        chunks: the chunks of ``prepare_corpus``, in corpus order.
        val_fraction: share of the chunks held out for validation (at least one chunk).
        test_fraction: share held out for test (at least one chunk), taken from the tail.

    Raises:
        DataError: fewer than 3 chunks, or the cuts leave train empty.
    """
    n = len(chunks)
    if n < 3:
        raise DataError(f"the corpus gives {n} chunk(s), too few to split (need at least 3; lower data.chunk_words?)")
    doc_codes = pd.factorize(chunks["doc_id"])[0]
    n_docs = int(doc_codes.max()) + 1
    cut_test = n - max(1, int(round(n * test_fraction)))
    cut_val = cut_test - max(1, int(round(n * val_fraction)))
    if n_docs >= 3:
        # First row of each document, and the document boundary nearest to each cut (never the very start).
        starts = np.flatnonzero(np.r_[True, doc_codes[1:] != doc_codes[:-1]])[1:]
        cut_test = int(starts[np.abs(starts - cut_test).argmin()])
        earlier = starts[starts < cut_test]
        cut_val = int(earlier[np.abs(earlier - cut_val).argmin()]) if len(earlier) else cut_test
    bounds = {"train": (0, cut_val), "val": (cut_val, cut_test), "test": (cut_test, n)}
    out = {name: chunks.iloc[slice(*bounds[name])].reset_index(drop=True) for name in SPLITS}
    if out["train"].empty:
        raise DataError(f"the train split is empty: {n} chunks in {n_docs} document(s) are too few to split")
    return out
