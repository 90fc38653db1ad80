"""Text normalisation, cleaning with quarantine, and the seeded, stratified, leak-free split."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
from helpers import one_line_error
from hypothesis import given, settings
from hypothesis import strategies as st

from compactlm.data.generator import generate_support_dataset
from compactlm.data.prepare import SPLITS, clean_rows, normalize_text, split_rows, to_canonical
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


# ---------------------------------------------------------------------------------------------------
# normalize_text
# ---------------------------------------------------------------------------------------------------


def test_normalize_text_applies_nfc():
    decomposed = "cafe\u0301 na\u0131\u0308ve"
    assert normalize_text("cafe\u0301") == "caf\u00e9"
    assert len(normalize_text(decomposed)) < len(decomposed)


@pytest.mark.parametrize(("raw", "expected"), [
    ("  where   is\tmy \t parcel  ", "where is my parcel"),
    ("first line\nsecond line", "first line\nsecond line"),
    ("first line  \n   second line", "first line\nsecond line"),
    ("windows\r\nline endings", "windows\nline endings"),
    ("para one\n\n\n\n\npara two", "para one\n\npara two"),
    ("para one\n  \n \t \n\npara two", "para one\n\npara two"),
    ("\n\n  padded  \n\n", "padded"),
    ("   ", ""),
])
def test_normalize_text_collapses_whitespace_and_keeps_single_newlines(raw, expected):
    assert normalize_text(raw) == expected


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_normalize_text_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert "\n\n\n" not in once
    assert "  " not in once


# ---------------------------------------------------------------------------------------------------
# clean_rows
# ---------------------------------------------------------------------------------------------------


def test_clean_rows_counts_add_up_and_every_quarantined_row_has_a_reason(tiny_frame):
    raw = tiny_frame.copy()
    raw.loc[0, "instruction"] = None
    raw.loc[1, "response"] = "   "
    raw.loc[2, "intent"] = ""
    raw.loc[3, "instruction"] = "x"  # shorter than min_chars
    raw.loc[4, "response"] = "y" * 301  # longer than max_chars
    raw.loc[5, ["instruction", "response"]] = raw.loc[6, ["instruction", "response"]].to_numpy()  # duplicate
    raw.loc[7, "instruction"] = "  " + raw.loc[8, "instruction"].replace(" ", "   ") + " "  # dup after normalising
    raw.loc[7, "response"] = raw.loc[8, "response"]
    canonical = to_canonical(raw, "generator")
    result = clean_rows(canonical, min_chars=2, max_chars=300)

    counts = result.counts
    assert counts["rows_in"] == len(raw) == 600
    assert counts["rows_in"] == counts["rows_kept"] + counts["rows_quarantined"]
    assert counts["rows_kept"] == len(result.rows)
    assert counts["rows_quarantined"] == len(result.quarantine)
    per_reason = {k: v for k, v in counts.items() if k.startswith("quarantined: ")}
    assert sum(per_reason.values()) == counts["rows_quarantined"]
    assert result.quarantine["reason"].notna().all()
    assert (result.quarantine["reason"].str.len() > 0).all()

    reason_of = dict(zip(result.quarantine["id"], result.quarantine["reason"], strict=True))
    ids = canonical["id"]
    assert reason_of[ids[0]] == "blank or null instruction"
    assert reason_of[ids[1]] == "blank or null response"
    assert reason_of[ids[2]] == "blank or null intent"
    assert reason_of[ids[3]] == "instruction shorter than 2 characters"
    assert reason_of[ids[4]] == "response longer than 300 characters"
    # The later copy of a duplicate pair is the one quarantined; the first stays.
    assert reason_of[ids[6]] == "exact duplicate of an earlier row"
    assert reason_of[ids[8]] == "exact duplicate of an earlier row"
    assert ids[5] in set(result.rows["id"]) and ids[7] in set(result.rows["id"])
    # Nothing lost, nothing invented.
    assert sorted([*result.rows["id"], *result.quarantine["id"]]) == sorted(ids)
    assert not result.rows.duplicated(["instruction", "response"]).any()


def test_clean_rows_normalises_the_kept_text_and_fills_missing_ids():
    rows = to_canonical(pd.DataFrame({
        "id": ["a1", None],
        "instruction": ["  where   is my\tparcel ", "cafe\u0301 order"],
        "response": ["it ships\r\ntoday", "ok then"],
        "intent": [" track_order ", "place_order"],
        "category": [None, "ORDER"],
    }), "inline")
    result = clean_rows(rows, 2, 2000)
    assert result.quarantine.empty
    assert result.rows["instruction"].tolist() == ["where is my parcel", "caf\u00e9 order"]
    assert result.rows["response"].tolist() == ["it ships\ntoday", "ok then"]
    assert result.rows["intent"].tolist() == ["track_order", "place_order"]
    assert result.rows["category"].tolist() == ["general", "ORDER"]
    assert result.rows["id"].iloc[0] == "a1"
    assert result.rows["id"].iloc[1].startswith("row-")


def test_clean_rows_of_only_bad_rows_keeps_nothing_and_says_why():
    rows = to_canonical(pd.DataFrame({"instruction": [None, "a"], "response": ["fine", "fine"],
                                      "intent": ["x", "x"]}), "inline")
    result = clean_rows(rows, 2, 2000)
    assert result.rows.empty
    assert result.counts["rows_quarantined"] == 2
    with pytest.raises(DataError) as excinfo:
        split_rows(result.rows, 0.15, 0.15, 0)
    one_line_error(excinfo, "no usable rows", "quarantine")


# ---------------------------------------------------------------------------------------------------
# split_rows
# ---------------------------------------------------------------------------------------------------


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
