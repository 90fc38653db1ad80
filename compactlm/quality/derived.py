"""Derived columns that let plain GE expectations check what GE has no expectation for.

A suite declares them in ``meta.derived``::

    {"key": "instruction", "exact_key": false, "label": "intent", "pii_columns": ["instruction", "response"]}

and gets, per row:

* ``dq_key``: the near-duplicate key of ``key`` (lower-cased, NFKD-normalised, every non-alphanumeric
  character dropped: ``compactlm.data.text.near_duplicate_keys``; its exact value with ``exact_key``),
  the unit the split keeps together;
* ``dq_splits_per_key``: in how many splits that key occurs (split leakage: must be 1);
* ``dq_labels_per_key``: how many distinct labels that key carries (label consistency: at most 1);
* ``dq_card_numbers``: Luhn-valid 13-19 digit card numbers left in the ``pii_columns`` (PII: must be 0);
  the Luhn checksum is the one of ISO/IEC 7812-1 that payment cards carry.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from compactlm.data.text import count_card_numbers, near_duplicate_keys

_LONG_DIGIT_RUN = r"\d(?:[ -]?\d){12}"


def add_quality_columns(frame: pd.DataFrame, spec: dict[str, Any] | None) -> pd.DataFrame:
    """``frame`` with the derived columns of ``spec`` (unchanged when ``spec`` is empty).

    Args:
        frame: all splits in one frame (a ``split`` column enables ``dq_splits_per_key``).
        spec: the suite's ``meta.derived`` (see the module docstring); columns it names that the frame
            lacks are skipped.

    Returns:
        A copy of ``frame`` with the ``dq_*`` columns added (nullable ``Int64`` counts).
    """
    if not spec:
        return frame
    out = frame.copy()
    key_column = spec.get("key")
    if key_column and key_column in out.columns:
        key = out[key_column].astype("string") if spec.get("exact_key") else near_duplicate_keys(out[key_column])
        out["dq_key"] = key
        if "split" in out.columns:
            out["dq_splits_per_key"] = out["split"].groupby(key.to_numpy()).transform("nunique").astype("Int64")
        label = spec.get("label")
        if label and label in out.columns:
            out["dq_labels_per_key"] = out[label].groupby(key.to_numpy()).transform("nunique").astype("Int64")
    pii_columns = [c for c in spec.get("pii_columns", []) if c in out.columns]
    if pii_columns:
        cards = pd.Series(0, index=out.index, dtype="Int64")
        for column in pii_columns:
            text = out[column].astype("string")
            candidates = text.str.contains(_LONG_DIGIT_RUN, regex=True, na=False)
            if candidates.any():
                cards[candidates] += text[candidates].map(count_card_numbers).astype("Int64")
        out["dq_card_numbers"] = cards
    return out
