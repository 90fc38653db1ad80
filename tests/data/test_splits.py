"""compactlm.data.splits: the seeded, stratified, leak-free split."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
from helpers import one_line_error

from compactlm.data.cleaning import clean_rows, to_canonical
from compactlm.data.sources.generator import generate_support_dataset
from compactlm.data.splits import SPLITS, split_rows
from compactlm.errors import DataError


@pytest.fixture(scope="module")
def cleaned_5000():
    """5000 generated rows, canonical and cleaned."""
    return clean_rows(to_canonical(generate_support_dataset(n_rows=5000, seed=1), "generator"), 2, 2000).rows


def groups_per_intent(rows: pd.DataFrame) -> pd.Series:
    """Distinct lower-cased instructions per intent (a group belongs to the intent it first appears with)."""
    groups = pd.DataFrame({"key": rows["instruction"].str.lower(), "intent": rows["intent"]})
    return groups.drop_duplicates("key")["intent"].value_counts()


def make_rows(spec: dict[str, int]) -> pd.DataFrame:
    """Canonical-enough rows: ``spec`` maps intent -> number of distinct instructions."""
    records = [{"id": f"{intent}-{i}", "instruction": f"message {i} about {intent}",
                "response": f"reply {i} for {intent}", "intent": intent}
               for intent, n in spec.items() for i in range(n)]
    return pd.DataFrame.from_records(records).astype("string")


def test_split_is_deterministic_for_a_seed(cleaned_5000):
    first = split_rows(cleaned_5000, 0.15, 0.15, seed=7)
    second = split_rows(cleaned_5000, 0.15, 0.15, seed=7)
    for name in SPLITS:
        pd.testing.assert_frame_equal(first[name], second[name])
    other = split_rows(cleaned_5000, 0.15, 0.15, seed=8)
    assert set(other["test"]["id"]) != set(first["test"]["id"])


def test_split_fractions_are_approximately_right(cleaned_5000):
    splits = split_rows(cleaned_5000, val_fraction=0.1, test_fraction=0.2, seed=0)
    n = len(cleaned_5000)
    assert sum(len(f) for f in splits.values()) == n
    assert len(splits["test"]) / n == pytest.approx(0.2, abs=0.02)
    assert len(splits["val"]) / n == pytest.approx(0.1, abs=0.02)
    assert len(splits["train"]) / n == pytest.approx(0.7, abs=0.02)
    assert sorted(pd.concat(splits.values())["id"]) == sorted(cleaned_5000["id"])


def test_split_is_stratified_by_intent(cleaned_5000):
    splits = split_rows(cleaned_5000, 0.15, 0.15, seed=0)
    eligible = set(groups_per_intent(cleaned_5000).loc[lambda s: s >= 3].index)
    assert len(eligible) == 33
    for name in SPLITS:
        assert eligible <= set(splits[name]["intent"]), name
    # Each intent's share of the test split is close to its share overall.
    overall = cleaned_5000["intent"].value_counts(normalize=True)
    in_test = splits["test"]["intent"].value_counts(normalize=True)
    assert (in_test - overall).abs().max() < 0.02


def test_no_instruction_appears_in_two_splits(cleaned_5000):
    rows = cleaned_5000.copy()
    # Case variants of the same customer message, with different answers and even different intents.
    extra = rows.head(60).copy()
    extra["instruction"] = extra["instruction"].str.upper()
    extra["response"] = extra["response"] + " (second answer)"
    extra["id"] = extra["id"] + "-upper"
    extra.loc[extra.index[:10], "intent"] = "complaint"
    rows = pd.concat([rows, extra], ignore_index=True)
    splits = split_rows(rows, 0.15, 0.15, seed=3)
    keys = {name: set(frame["instruction"].str.lower()) for name, frame in splits.items()}
    for a, b in itertools.combinations(SPLITS, 2):
        assert not keys[a] & keys[b], f"{a} and {b} share instructions"
    assert sum(len(f) for f in splits.values()) == len(rows)


@pytest.mark.parametrize("n_groups", [4, 5, 7, 10])
def test_every_intent_with_at_least_three_groups_reaches_test(n_groups):
    rows = make_rows({"big": 40, "small": n_groups, "tiny": 2})
    splits = split_rows(rows, 0.15, 0.15, seed=0)
    assert "small" in set(splits["test"]["intent"])
    assert "tiny" not in set(splits["test"]["intent"]) | set(splits["val"]["intent"])  # < 3 groups: train only


def test_an_intent_with_exactly_three_groups_reaches_test():
    rows = make_rows({"big": 40, "small": 3})
    splits = split_rows(rows, 0.15, 0.15, seed=0)
    assert "small" in set(splits["test"]["intent"])


@pytest.mark.parametrize("n_rows", [0, 1, 2])
def test_too_few_rows_raise_data_error(n_rows):
    rows = make_rows({"only": n_rows}) if n_rows else make_rows({"only": 1}).head(0)
    with pytest.raises(DataError) as excinfo:
        split_rows(rows, 0.15, 0.15, seed=0)
    message = one_line_error(excinfo)
    assert "too few" in message or "no usable rows" in message


def test_a_users_own_split_column_is_kept_and_a_bad_value_names_its_row(tmp_path):
    from compactlm.config import DataConfig
    from compactlm.data.prepare import prepare_dataset

    intents = ["refund", "order", "cancel"]
    rows = [f"{word} question number {i} about my {word},{word},{split}"
            for i in range(12) for word, split in zip(intents, ["train", "Validation", "TEST"][i % 3:] * 3)]
    path = tmp_path / "split.csv"
    path.write_text("text,label,split\n" + "\n".join(rows) + "\n", encoding="utf-8")
    config = DataConfig(task="classification", source=str(path), split_column="split", min_rows=5)
    result = prepare_dataset(config)
    sizes = {name: len(frame) for name, frame in result.splits.items()}
    assert sum(sizes.values()) == len(rows) and all(sizes.values())
    assert "split" not in result.splits["train"].columns
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label,split\nwhere is my refund,refund,train\nwhere is my order,order,holdout\n")
    with pytest.raises(DataError) as excinfo:
        prepare_dataset(DataConfig(task="classification", source=str(bad), split_column="split", min_rows=1))
    one_line_error(excinfo, "column 'split', row 1: 'holdout' is not a split (train, val or test)")
