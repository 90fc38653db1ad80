"""Tests for the bundled synthetic customer-support dataset generator."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from compactlm.data.sources.generator import (
    ATTRIBUTES,
    CATEGORIES,
    INTENTS,
    STYLES,
    generate_support_dataset,
)
from compactlm.errors import DataError

COLUMNS = ["id", "instruction", "response", "category", "intent", "age_band", "region", "customer_tier",
           "resolved", "style"]
STRING_COLUMNS = [c for c in COLUMNS if c != "resolved"]
TEXT_COLUMNS = ["instruction", "response"]
PLACEHOLDER = re.compile(r"\{\{[A-Z][A-Za-z ]*\}\}")
PII_PATTERNS = {
    "email": re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),
    "phone": re.compile(r"\+?\d[\d ().-]{7,}\d"),
    "card": re.compile(r"\b(?:\d[ -]?){13,19}\b"),
    "url": re.compile(r"https?://|www\."),
}


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return generate_support_dataset(10_000, seed=0)


def _resolved_ratio(frame: pd.DataFrame, attribute: str, group: str) -> float:
    in_group = frame[attribute] == group
    return frame.loc[in_group, "resolved"].mean() / frame.loc[~in_group, "resolved"].mean()


def test_public_tables() -> None:
    assert len(INTENTS) >= 30
    assert len(CATEGORIES) >= 10
    assert set(INTENTS.values()) == set(CATEGORIES)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", intent) for intent in INTENTS)
    assert ATTRIBUTES == {
        "age_band": ("18-29", "30-44", "45-64", "65+"),
        "region": ("north", "south", "east", "west"),
        "customer_tier": ("standard", "premium"),
    }
    assert set(STYLES) == {"plain", "polite", "colloquial", "terse", "long", "question", "typo"}


def test_columns_dtypes_and_no_nulls(df: pd.DataFrame) -> None:
    assert list(df.columns) == COLUMNS
    assert len(df) == 10_000
    assert not df.isna().any().any()
    for column in STRING_COLUMNS:
        assert pd.api.types.is_string_dtype(df[column]), column
        assert df[column].map(type).eq(str).all(), column
    assert pd.api.types.is_integer_dtype(df["resolved"])
    assert set(df["resolved"].unique()) == {0, 1}


def test_ids_are_unique_and_padded(df: pd.DataFrame) -> None:
    assert df["id"].is_unique
    assert df["id"].iloc[0] == "gen-000001"
    assert df["id"].iloc[-1] == "gen-010000"
    assert df["id"].str.fullmatch(r"gen-\d{6}").all()


def test_single_row() -> None:
    one = generate_support_dataset(1, seed=3)
    assert list(one.columns) == COLUMNS
    assert len(one) == 1
    assert one["id"].tolist() == ["gen-000001"]


def test_deterministic_for_same_arguments(df: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(df, generate_support_dataset(10_000, seed=0))
    pd.testing.assert_frame_equal(generate_support_dataset(500, seed=7, bias=0.4),
                                  generate_support_dataset(500, seed=7, bias=0.4))


def test_different_seeds_differ(df: pd.DataFrame) -> None:
    other = generate_support_dataset(10_000, seed=1)
    assert (df["instruction"] != other["instruction"]).mean() > 0.9
    assert not df["intent"].equals(other["intent"])


def test_bias_changes_only_the_outcome(df: pd.DataFrame) -> None:
    biased = generate_support_dataset(10_000, seed=0, bias=0.5)
    pd.testing.assert_frame_equal(df.drop(columns="resolved"), biased.drop(columns="resolved"))
    # Scaling a probability down can only turn resolved rows into unresolved ones.
    assert (biased["resolved"] <= df["resolved"]).all()
    untouched = df["age_band"] != "65+"
    assert biased.loc[untouched, "resolved"].equals(df.loc[untouched, "resolved"])


def test_intents_and_categories_coverage() -> None:
    frame = generate_support_dataset(5_000, seed=2)
    assert frame["intent"].nunique() >= 30
    assert frame["category"].nunique() >= 10
    assert set(frame["intent"]) == set(INTENTS)
    assert (frame["category"] == frame["intent"].map(INTENTS)).all()


def test_intents_roughly_balanced(df: pd.DataFrame) -> None:
    shares = df["intent"].value_counts(normalize=True)
    assert set(shares.index) == set(INTENTS)
    assert shares.min() >= 1 / (2 * len(INTENTS))
    assert shares.max() <= 3 / len(INTENTS)


def test_attributes_and_styles_take_declared_values(df: pd.DataFrame) -> None:
    for attribute, values in ATTRIBUTES.items():
        assert set(df[attribute]) == set(values), attribute
    assert set(df["style"]) == set(STYLES)
    assert df["style"].value_counts(normalize=True).min() > 0.05


def test_no_pii_like_strings(df: pd.DataFrame) -> None:
    for column in TEXT_COLUMNS:
        text = "\n".join(df[column])
        for name, pattern in PII_PATTERNS.items():
            match = pattern.search(text)
            assert match is None, f"{column} holds a {name}-like string: {match.group(0)!r}"


def test_text_length_bounds(df: pd.DataFrame) -> None:
    for column, (low, high) in {"instruction": (3, 60), "response": (20, 90)}.items():
        texts = df[column]
        words = texts.str.split().str.len()
        assert words.between(low, high).all(), (column, words.min(), words.max())
        assert texts.str.len().max() <= 1000
        assert (texts == texts.str.strip()).all()
        assert (texts.str.len() > 0).all()
        assert not texts.str.contains("  ").any()


def test_responses_have_several_sentences(df: pd.DataFrame) -> None:
    sentences = df["response"].str.count(r"[.!?](?:\s|$)")
    assert sentences.between(2, 4).all()


def test_responses_are_consistent_per_intent(df: pd.DataFrame) -> None:
    # A tiny model can only learn the mapping if each intent has a few stable reply shapes (the
    # closing words carry no slot fills).
    shapes = df["response"].str.split().str[-5:].str.join(" ")
    assert shapes.groupby(df["intent"]).nunique().max() <= 3
    assert shapes.groupby(df["intent"]).nunique().min() >= 2


def test_placeholders_are_well_formed_and_slots_filled(df: pd.DataFrame) -> None:
    for column in TEXT_COLUMNS:
        texts = df[column]
        assert not texts.str.contains(r"[<>]").any(), column
        opened = texts.str.count(r"\{\{")
        assert (opened == texts.str.count(PLACEHOLDER.pattern)).all(), column
        assert (opened == texts.str.count(r"\}\}")).all(), column
    assert df["response"].str.contains(PLACEHOLDER.pattern).mean() > 0.9
    assert df["instruction"].str.contains(PLACEHOLDER.pattern).any()
    # Styles (typos above all) never alter a placeholder: all of them also appear untouched in plain rows.
    known = set(PLACEHOLDER.findall(" ".join(df.loc[df["style"].isin(["plain", "question"]), "instruction"])))
    assert set(PLACEHOLDER.findall(" ".join(df["instruction"]))) <= known


def test_styles_shape_the_instruction(df: pd.DataFrame) -> None:
    by_style = {style: df.loc[df["style"] == style, "instruction"] for style in STYLES}
    assert by_style["question"].str.endswith("?").all()
    assert not by_style["plain"].str.endswith("?").any()
    outside = {s: t.str.replace(PLACEHOLDER.pattern, "", regex=True) for s, t in by_style.items()}
    assert not outside["terse"].str.contains(r"[.,?!]").any()
    assert by_style["terse"].str.split().str.len().max() <= 12
    assert (outside["colloquial"] == outside["colloquial"].str.lower()).all()
    slang = r"\b(?:hey|hi|yo|wanna|pls|u|ur|thx|asap|lol|im)\b"
    assert outside["colloquial"].str.contains(slang).mean() > 0.5
    assert by_style["polite"].str.contains(r"(?i)thank|appreciate").all()
    long_words = by_style["long"].str.split().str.len()
    assert long_words.mean() > 1.5 * by_style["plain"].str.split().str.len().mean()


def test_typo_rows_contain_misspellings(df: pd.DataFrame) -> None:
    clean = df.loc[~df["style"].isin(["typo", "terse"]), "instruction"]
    vocabulary = set(re.findall(r"[a-z']+", " ".join(clean).lower()))
    typo_rows = df.loc[df["style"] == "typo", "instruction"]
    has_unknown = typo_rows.map(lambda t: any(w not in vocabulary for w in re.findall(r"[a-z']+", t.lower())))
    assert has_unknown.mean() > 0.9


def test_no_bias_keeps_outcome_independent_of_attributes(df: pd.DataFrame) -> None:
    assert 0.6 <= df["resolved"].mean() <= 0.9
    assert 0.85 <= _resolved_ratio(df, "age_band", "65+") <= 1.15
    for attribute, values in ATTRIBUTES.items():
        for group in values:
            assert 0.9 <= _resolved_ratio(df, attribute, group) <= 1.1, (attribute, group)


def test_bias_lowers_the_target_groups_outcome() -> None:
    biased = generate_support_dataset(10_000, seed=0, bias=0.5)
    assert _resolved_ratio(biased, "age_band", "65+") < 0.7
    assert 0.9 <= _resolved_ratio(biased, "region", "north") <= 1.1


def test_bias_can_target_another_attribute() -> None:
    biased = generate_support_dataset(10_000, seed=4, bias=0.5, bias_attribute="customer_tier",
                                      bias_group="premium")
    assert _resolved_ratio(biased, "customer_tier", "premium") < 0.7
    assert 0.85 <= _resolved_ratio(biased, "age_band", "65+") <= 1.15


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n_rows": 0}, "n_rows"),
        ({"n_rows": -5}, "n_rows"),
        ({"n_rows": 2.5}, "n_rows"),
        ({"bias": 1.0}, "bias"),
        ({"bias": -0.1}, "bias"),
        ({"bias": float("nan")}, "bias"),
        ({"bias_attribute": "gender"}, "bias_attribute"),
        ({"bias_group": "70+"}, "bias_group"),
        ({"bias_attribute": "region", "bias_group": "65+"}, "bias_group"),
    ],
)
def test_invalid_arguments_raise_data_error(kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(DataError) as excinfo:
        generate_support_dataset(**kwargs)  # type: ignore[arg-type]
    message = str(excinfo.value)
    assert message.startswith(f"{argument} ")
    assert "\n" not in message
    assert repr(kwargs[argument]) in message


def test_exact_duplicate_instructions_are_rare(df: pd.DataFrame) -> None:
    assert df["instruction"].duplicated().mean() < 0.05
    assert df.duplicated(["instruction", "response"]).mean() < 0.05
