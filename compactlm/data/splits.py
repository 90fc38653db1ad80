"""The seeded, stratified, leak-free split of cleaned rows into train, validation and test.

Rows sharing a near-duplicate text (or an exact key such as a conversation id) form one group, and a
group is never cut: the same customer message cannot sit in both train and test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from compactlm.data.text import near_duplicate_keys
from compactlm.errors import DataError

SPLITS = ("train", "val", "test")


def connected_groups(keys: list[pd.Series]) -> np.ndarray:
    """Group ids such that rows sharing a value in any of ``keys`` are in the same group.

    Connected components by min-label propagation: each pass gives every row the smallest group id
    among the rows sharing one of its keys, until nothing changes (a few passes in practice).
    """
    n = len(keys[0])
    codes = []
    for key in keys:
        code = pd.factorize(key.to_numpy(), use_na_sentinel=True)[0]
        # A missing key links nothing: give each such row a code of its own.
        code = np.where(code < 0, np.arange(n) + code.max() + 1, code)
        codes.append(code)
    group = pd.Series(np.arange(n))
    while True:
        previous = group
        for code in codes:
            group = group.groupby(code).transform("min")
        if group.equals(previous):
            return group.to_numpy()


def split_rows(rows: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int,
               stratify: str | None = "intent", key_column: str = "instruction",
               exact_key: bool = False) -> dict[str, pd.DataFrame]:
    """Seeded split stratified by ``stratify``, with no near-duplicate text shared across splits.

    Rows are grouped by the near-duplicate key of ``key_column`` (or its exact value, for an id such
    as a conversation id) and whole groups are assigned, so the same customer message can never
    appear in both train and test. Within each stratum, groups are shuffled and cut at the requested
    fractions; strata with fewer than 3 groups go to train.

    Args:
        rows: cleaned rows.
        val_fraction: share of each stratum's groups for validation (at least one group from 3 groups on).
        test_fraction: share for test, likewise.
        seed: seeds the shuffle of the groups.
        stratify: the label column to stratify by; None (or a missing column) for one stratum.
        key_column: the text whose near-duplicate key groups rows.
        exact_key: group by the exact value of ``key_column`` instead (e.g. a conversation id).

    Returns:
        ``{"train", "val", "test"}`` -> rows, each with a fresh index.

    Raises:
        DataError: no rows, or too few to give train and test at least one row each.
    """
    if rows.empty:
        raise DataError("no usable rows left after cleaning (see the quarantine file for the reasons)")
    key = rows[key_column].astype("string") if exact_key else near_duplicate_keys(rows[key_column])
    group = connected_groups([key])
    strata = rows[stratify].astype("string").fillna("") if stratify and stratify in rows.columns else \
        pd.Series("", index=rows.index)
    groups = pd.DataFrame({"group": group, "stratum": strata.to_numpy()}).drop_duplicates("group")
    rng = np.random.default_rng(seed)
    assignment: dict[int, str] = {}
    for _, members in groups.groupby("stratum", sort=True):
        ids = members["group"].to_numpy()
        ids = ids[rng.permutation(len(ids))]
        n = len(ids)
        # From 3 groups on, every stratum gets at least one test and one validation group.
        n_test = max(1, int(round(n * test_fraction))) if n >= 3 else 0
        n_val = max(1, int(round(n * val_fraction))) if n >= 3 else 0
        for i, g in enumerate(ids.tolist()):
            assignment[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    split_of = pd.Series(group).map(assignment).to_numpy()
    out = {name: rows[split_of == name].reset_index(drop=True) for name in SPLITS}
    for name in ("train", "test"):
        if out[name].empty:
            raise DataError(f"the {name} split is empty: {len(rows)} usable rows are too few to split")
    return out


def combined_splits(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """All splits in one frame with a ``split`` column naming each row's split (what the quality suite validates).

    Args:
        splits: split name -> rows, e.g. ``PreparedDataset.splits`` or the splits read back from a version.
    """
    return pd.concat([frame.assign(split=name) for name, frame in splits.items()], ignore_index=True)


SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test"}


def given_splits(rows: pd.DataFrame, column: str) -> dict[str, pd.DataFrame]:
    """The user's own split: each row's ``column`` says train, val or test (``validation``/``dev`` are val).

    Args:
        rows: cleaned rows holding ``column`` (dropped from the splits).
        column: the source column (``data.split_column``).

    Returns:
        ``{"train", "val", "test"}`` -> rows, each with a fresh index, in source order.

    Raises:
        DataError: the column is missing, a value that is not a split name (naming its row), or an empty split.
    """
    if column not in rows.columns:
        raise DataError(f"data.split_column {column!r} is not a column of the data (found: "
                        f"{', '.join(map(str, rows.columns[:12]))})")
    names = rows[column].astype("string").str.strip().str.lower().map(SPLIT_ALIASES)
    unknown = names.isna()
    if unknown.any():
        first = rows.index[unknown.to_numpy()][0]
        raise DataError(f"column {column!r}, row {first}: {rows.loc[first, column]!r} is not a split "
                        "(train, val or test)")
    out = {name: rows[names == name].drop(columns=[column]).reset_index(drop=True) for name in SPLITS}
    empty = [name for name, frame in out.items() if frame.empty]
    if empty:
        raise DataError(f"data.split_column {column!r}: no {', '.join(empty)} rows left after cleaning")
    return out
