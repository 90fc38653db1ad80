"""Text cleaning primitives: Unicode/whitespace, HTML, PII placeholders, near-duplicate keys, classic cleaning."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compactlm.data.text import (
    CARD_PLACEHOLDER,
    EMAIL_PLACEHOLDER,
    PHONE_PLACEHOLDER,
    classic_clean,
    count_card_numbers,
    luhn_valid,
    near_duplicate_key,
    near_duplicate_keys,
    normalize_text,
    scrub_pii,
    scrub_pii_series,
    strip_html,
    strip_html_series,
)


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


@pytest.mark.parametrize(("raw", "expected"), [
    ("no\u00a0break\u202fspaces\u3000here", "no break spaces here"),  # NBSP, narrow NBSP, ideographic space
    ("zero\u200bwidth\ufeff and soft\u00adhyphen", "zerowidth and softhyphen"),
    ("line\u2028separator\u2029paragraph", "line\nseparator\nparagraph"),
    ("bell\x07 and null\x00 and del\x7f", "bell and null and del"),
    ("\u00a0\u00a0 padded \u00a0", "padded"),
    ("tab\tstays a space", "tab stays a space"),
])
def test_normalize_text_treats_unicode_spaces_and_invisible_characters(raw, expected):
    assert normalize_text(raw) == expected


def test_nfkc_folds_compatibility_characters_and_nfc_keeps_them():
    assert normalize_text("\uff21\uff22\uff23 \ufb01le", "NFKC") == "ABC file"  # full-width letters, "fi" ligature
    assert normalize_text("\uff21\uff22\uff23 \ufb01le") == "\uff21\uff22\uff23 \ufb01le"


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40), st.sampled_from(["NFC", "NFKC"]))
def test_normalize_text_is_idempotent_in_both_forms(text, form):
    once = normalize_text(text, form)
    assert normalize_text(once, form) == once
    assert "\u00a0" not in once and "\u200b" not in once and "  " not in once


@pytest.mark.parametrize(("raw", "expected"), [
    ("<p>Where is <b>my</b> order?</p><p>Thanks</p>", "Where is my order?\nThanks"),
    ("<td>cell</td><td>next</td>", "cell next"),  # tags leave a space: words never glue together
    ("Line one<br/>line two", "Line one\nline two"),
    ("a &amp; b &lt;3 &#8364;5 &nbsp;x", "a & b <3 €5 x"),
    ("<script>alert(1)</script>safe<style>p{}</style>", "safe"),
    ("<!-- hidden -->visible", "visible"),
    ("a < b and c > d", "a < b and c > d"),  # not tags: kept
    ("{{Order Number}} is late", "{{Order Number}} is late"),  # placeholders untouched
])
def test_strip_html_then_normalize(raw, expected):
    assert normalize_text(strip_html(raw)) == expected


def test_strip_html_series_touches_and_counts_only_html_rows():
    series = pd.Series(["plain text", "<i>styled</i> text", None, "AT&T is fine"], dtype="string")
    out, changed = strip_html_series(series)
    assert out.tolist()[:2] == ["plain text", " styled  text"]
    assert out.isna().tolist() == [False, False, True, False]
    assert out.iloc[3] == "AT&T is fine"
    assert changed == 1


@pytest.mark.parametrize("number", ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111",
                                    "378282246310005", "6011000990139424"])
def test_luhn_valid_card_numbers_become_placeholders(number):
    counts = {"email": 0, "phone": 0, "card": 0}
    assert scrub_pii(f"my card {number} was charged twice", counts) == f"my card {CARD_PLACEHOLDER} was charged twice"
    assert counts == {"email": 0, "phone": 0, "card": 1}


@pytest.mark.parametrize("text", ["order 4111111111111112 is late",  # 16 digits, fails Luhn
                                  "tracking 1234567890123", "invoice 2024-01-15 and 15.01.2024",
                                  "call me in 10 minutes", "{{Order Number}}"])
def test_non_pii_numbers_are_kept(text):
    counts = {"email": 0, "phone": 0, "card": 0}
    assert scrub_pii(text, counts) == text
    assert counts == {"email": 0, "phone": 0, "card": 0}


@pytest.mark.parametrize(("text", "expected"), [
    ("write to jane.doe+shop@mail.example.co.uk now", f"write to {EMAIL_PLACEHOLDER} now"),
    ("call +44 20 7946 0958 today", f"call {PHONE_PLACEHOLDER} today"),
    ("call (555) 123-4567 today", f"call {PHONE_PLACEHOLDER} today"),
    ("call 555-123-4567 or 555.123.4567", f"call {PHONE_PLACEHOLDER} or {PHONE_PLACEHOLDER}"),
    ("ring +33612345678", f"ring {PHONE_PLACEHOLDER}"),
])
def test_emails_and_phone_numbers_become_placeholders(text, expected):
    assert scrub_pii(text) == expected


def test_scrub_pii_series_counts_per_kind():
    counts = {"email": 0, "phone": 0, "card": 0}
    series = pd.Series(["a@b.io and c@d.io", "card 4111 1111 1111 1111", "call 555-123-4567", "nothing", None])
    out = scrub_pii_series(series, counts)
    assert counts == {"email": 2, "phone": 1, "card": 1}
    assert out.tolist()[:4] == [f"{EMAIL_PLACEHOLDER} and {EMAIL_PLACEHOLDER}", f"card {CARD_PLACEHOLDER}",
                                f"call {PHONE_PLACEHOLDER}", "nothing"]
    assert pd.isna(out.iloc[4])


def test_luhn_and_card_counting():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert count_card_numbers("4111 1111 1111 1111 and 5500-0000-0000-0004, not 4111111111111112") == 2


def test_near_duplicate_key_ignores_case_punctuation_spacing_and_accents_but_not_digits():
    assert near_duplicate_key("Where is my ORDER #123?!") == near_duplicate_key("where is my order 123") \
        == "whereismyorder123"
    assert near_duplicate_key("Café  crème") == near_duplicate_key("cafe creme")
    assert near_duplicate_key("2 items") != near_duplicate_key("3 items")
    series = pd.Series(["Where is my ORDER #123?!", "Café  crème", None], dtype="string")
    keys = near_duplicate_keys(series)
    assert keys.tolist()[:2] == [near_duplicate_key(series[0]), near_duplicate_key(series[1])]
    assert pd.isna(keys.iloc[2])


def test_classic_clean_lowercases_keeps_letters_and_drops_stopwords():
    assert classic_clean("I LOVE this product!!! 10/10, would buy it again :)") == "love product buy"
    assert classic_clean("The and of") == ""
