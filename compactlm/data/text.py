"""Text cleaning: Unicode and whitespace normalisation, HTML stripping, PII scrubbing, near-duplicate keys.

Every function works on one string; the ``*_series`` helpers apply it to a pandas Series, touching only
the rows that can change (a cheap vectorised pre-filter), which keeps 100k-row datasets fast.

Near duplicates are found with a *normalised-text key*: lower-case, accents removed (NFKD), then every
character that is neither a letter nor a digit dropped (punctuation, whitespace, symbols, underscores).
Two texts are near duplicates when their keys are equal: "Where is my order #123?!" and "where is my
ORDER 123" share the key "whereismyorder123". Digits are kept: "2 items" and "3 items" are different
requests. The method is exact-match on the key, so it is deterministic, needs one pass (a hash join,
O(n)) and scales to millions of rows; it deliberately does not merge texts that differ by words (typos,
synonyms), which are real linguistic variation for a support model.
"""

from __future__ import annotations

import html
import re
import unicodedata

import pandas as pd

# Space-like characters (no-break, narrow, em/en, ideographic...) become a plain space; invisible
# characters that only break tokenisation and duplicate detection are removed; Unicode line separators
# become newlines. C0/C1 control characters (except tab and newline) are removed.
_TRANSLATE: dict[int, str | None] = {cp: " " for cp in (0x00A0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F,
                                                        0x3000)}
_TRANSLATE.update({cp: None for cp in (0x00AD, 0x200B, 0x2060, 0xFEFF)})
# Bidirectional marks, embeddings, overrides and isolates carry no text, and overrides can make text read
# otherwise than it displays (Trojan Source, CVE-2021-42574): removed. ZWJ and ZWNJ stay: they join emoji
# sequences and shape Persian and Indic text.
_TRANSLATE.update({cp: None for cp in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))})
_TRANSLATE.update({0x2028: "\n", 0x2029: "\n", 0x0085: "\n"})
_TRANSLATE.update({cp: None for cp in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0x85),
                                       *range(0x86, 0xA0))})
_NEEDS_TRANSLATE = re.compile("[" + "".join(re.escape(chr(cp)) for cp in _TRANSLATE) + "]")
_WHITESPACE = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")

_HTML_DROP = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_HTML_BREAK = re.compile(r"<\s*(?:br|/p|/div|/li|/tr|/h[1-6])\s*/?\s*>", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>")
_HTML_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_MAYBE_HTML = r"</?[A-Za-z!]|&#?\w+;"

EMAIL_PLACEHOLDER, PHONE_PLACEHOLDER, CARD_PLACEHOLDER = "{{Email}}", "{{Phone Number}}", "{{Card Number}}"
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# 13-19 digits, optionally grouped by single spaces or dashes (as printed on cards).
CARD_CANDIDATE = re.compile(r"(?<![\w])\d(?:[ -]?\d){12,18}(?![\w])")
# International (+CC ...) or grouped numbers: at least three groups, or a parenthesised area code. A
# bare run of digits is more often an order or account number, and a 2-2-4 group a date: neither matches.
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
                   r"|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}"
                   r"|\d{2,4}[ .-]\d{3,4}[ .-]\d{3,4}(?:[ .-]\d{2,4})?)(?![\w])")
_MAYBE_PII = r"@|\d[\d ().-]{5,}\d"

_NEAR_DUP_DROP = re.compile(r"[\W_]+")

# A compact English stopword list (the common function words), bundled so nothing is downloaded.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves
""".split())
_NON_LETTERS = re.compile(r"[^a-z]+")


def normalize_text(value: str, form: str = "NFC") -> str:
    """Normalise Unicode (``form``) and whitespace: one space between words, single newlines kept.

    Non-breaking and other Unicode spaces become plain spaces, zero-width characters and control
    characters are removed, and Unicode line separators become newlines. The result is idempotent.

    Args:
        value: the text.
        form: the Unicode normal form (``data.unicode_form``): NFC keeps compatibility characters, NFKC
            folds them (full-width letters, ligatures); see Unicode Standard Annex #15.
    """
    text = value.translate(_TRANSLATE) if _NEEDS_TRANSLATE.search(value) else value
    text = unicodedata.normalize(form, text)
    if form == "NFKC":  # compatibility folding can itself produce space-like characters
        text = text.translate(_TRANSLATE)
    text = _WHITESPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def normalize_characters(value: str) -> str:
    """The character step of ``normalize_text`` alone: Unicode spaces become spaces, invisible and control
    characters go (whitespace is not collapsed). ``normalize_text`` gives the same result with or without it."""
    return value.translate(_TRANSLATE) if _NEEDS_TRANSLATE.search(value) else value


def has_visible_text(value: str) -> bool:
    """True when ``value`` holds a character that shows: not only format characters (Unicode category Cf:
    zero-width joiners, bidi controls...), controls and spaces."""
    return any(unicodedata.category(ch) not in _INVISIBLE_CATEGORIES for ch in value)


def strip_html(value: str) -> str:
    """Remove HTML tags, comments, scripts and styles; unescape entities. Plain text is returned unchanged.

    Block-level closing tags and ``<br>`` become newlines so paragraphs stay apart. A ``<`` that does
    not open a tag (``a < b``) is kept.
    """
    text = _HTML_DROP.sub(" ", value)
    text = _HTML_BREAK.sub("\n", text)
    text = _HTML_TAG.sub(" ", text)
    return html.unescape(text) if _HTML_ENTITY.search(text) else text


def luhn_valid(digits: str) -> bool:
    """True when a string of digits passes the Luhn checksum used by payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_or_keep(match: re.Match[str], counts: dict[str, int]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        counts["card"] += 1
        return CARD_PLACEHOLDER
    return match.group(0)


def count_card_numbers(value: str) -> int:
    """How many Luhn-valid 13-19 digit card numbers ``value`` holds."""
    return sum(1 for m in CARD_CANDIDATE.finditer(value) if luhn_valid(re.sub(r"\D", "", m.group(0)))
               and 13 <= len(re.sub(r"\D", "", m.group(0))) <= 19)


def scrub_pii(value: str, counts: dict[str, int] | None = None) -> str:
    """Replace e-mail addresses, card numbers (Luhn-valid) and phone numbers with placeholders.

    Args:
        value: the text to scrub.
        counts: incremented per kind (``email``, ``card``, ``phone``) when given.
    """
    counts = counts if counts is not None else {"email": 0, "card": 0, "phone": 0}
    text, n = EMAIL.subn(EMAIL_PLACEHOLDER, value)
    counts["email"] += n
    text = CARD_CANDIDATE.sub(lambda m: _card_or_keep(m, counts), text)  # before phones: cards look like them
    text, n = PHONE.subn(PHONE_PLACEHOLDER, text)
    counts["phone"] += n
    return text


def near_duplicate_key(value: str) -> str:
    """The normalised-text key two near-duplicate texts share (see the module docstring)."""
    decomposed = unicodedata.normalize("NFKD", value.lower())
    return _NEAR_DUP_DROP.sub("", decomposed)


def classic_clean(value: str) -> str:
    """The classic bag-of-words cleaning: lower-case, letters only, stopwords removed.

    Only for classification features: it destroys the text a generative model must learn to write.
    """
    words = _NON_LETTERS.sub(" ", value.lower()).split()
    return " ".join(w for w in words if w not in STOPWORDS)


def _apply(series: pd.Series, pattern: str | None, fn) -> tuple[pd.Series, int]:
    """``fn`` applied to the non-null values that match ``pattern`` (all when None); also how many changed."""
    values = series.astype("string")
    candidates = values.notna() if pattern is None else values.str.contains(pattern, regex=True, na=False)
    if not candidates.any():
        return values, 0
    changed = values[candidates].map(fn).astype("string")
    n_changed = int((changed != values[candidates]).sum())
    out = values.copy()
    out[candidates] = changed
    return out, n_changed


def normalize_series(series: pd.Series, form: str = "NFC") -> pd.Series:
    """``normalize_text`` on every non-null value.

    Args:
        series: text values (nulls stay null).
        form: as in ``normalize_text``.
    """
    return _apply(series, None, lambda v: normalize_text(v, form))[0]


def strip_html_series(series: pd.Series) -> tuple[pd.Series, int]:
    """``strip_html`` on the values that look like HTML; returns the series and how many rows changed."""
    return _apply(series, _MAYBE_HTML, strip_html)


def scrub_pii_series(series: pd.Series, counts: dict[str, int]) -> pd.Series:
    """``scrub_pii`` on the values that may hold PII, adding to ``counts`` per kind.

    Args:
        series: text values (nulls stay null).
        counts: ``{"email", "phone", "card"}`` -> replacements so far; added to.
    """
    return _apply(series, _MAYBE_PII, lambda v: scrub_pii(v, counts))[0]


def invisible_series(series: pd.Series) -> pd.Series:
    """True where a value is null or has no visible character (see ``has_visible_text``)."""
    values = series.astype("string")
    # Any ASCII letter, digit or punctuation is visible: only the rest need a look at each character.
    unsure = values.notna() & ~values.str.contains(r"[!-~]", regex=True, na=False)
    out = values.isna()
    if unsure.any():
        out[unsure] = ~values[unsure].map(has_visible_text).astype(bool)
    return out.astype(bool)


def near_duplicate_keys(series: pd.Series) -> pd.Series:
    """``near_duplicate_key`` of every value, vectorised (nulls stay null)."""
    values = series.astype("string").str.lower().str.normalize("NFKD")
    return values.str.replace(_NEAR_DUP_DROP.pattern, "", regex=True)


def classic_clean_series(series: pd.Series) -> pd.Series:
    """``classic_clean`` on every non-null value."""
    return _apply(series, None, classic_clean)[0]
