"""A seeded, bundled generator of a synthetic customer-support instruction dataset.

The rows imitate the Bitext customer-support dataset: a customer ``instruction``, an agent
``response``, an ``intent`` and its ``category``, with Bitext-style entity placeholders such as
``{{Order Number}}``. It exists so the pipeline runs offline and in CI, so responses are deliberately
formulaic per intent: a ~1M-parameter model trained for a few minutes on CPU can learn them, and its
ROUGE-L rises measurably with training.

Each row also carries customer attributes and a ``resolved`` outcome. With ``bias > 0`` one group's
resolution probability is scaled down, which lets the pipeline demonstrate that the fairness audit
catches an injected disparity; with ``bias = 0`` the outcome is independent of the attributes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd

from compactlm.errors import DataError

__all__ = ["ATTRIBUTES", "CATEGORIES", "INTENTS", "STYLES", "generate_support_dataset"]

# intent -> (category, first-contact resolution rate, relative frequency)
_INTENT_TABLE: dict[str, tuple[str, float, float]] = {
    "cancel_order": ("ORDER", 0.82, 1.3),
    "change_order": ("ORDER", 0.74, 1.0),
    "place_order": ("ORDER", 0.90, 1.1),
    "track_order": ("ORDER", 0.86, 1.3),
    "change_shipping_address": ("SHIPPING", 0.76, 0.9),
    "set_up_shipping_address": ("SHIPPING", 0.88, 0.8),
    "delivery_options": ("DELIVERY", 0.90, 0.8),
    "delivery_period": ("DELIVERY", 0.84, 1.0),
    "report_missing_package": ("DELIVERY", 0.62, 0.9),
    "check_refund_policy": ("REFUND", 0.90, 0.8),
    "get_refund": ("REFUND", 0.66, 1.2),
    "track_refund": ("REFUND", 0.72, 1.0),
    "create_account": ("ACCOUNT", 0.89, 0.9),
    "delete_account": ("ACCOUNT", 0.80, 0.8),
    "edit_account": ("ACCOUNT", 0.87, 0.8),
    "reset_password": ("ACCOUNT", 0.85, 1.2),
    "switch_account": ("ACCOUNT", 0.83, 0.7),
    "registration_problems": ("ACCOUNT", 0.70, 0.8),
    "check_payment_methods": ("PAYMENT", 0.90, 0.9),
    "payment_issue": ("PAYMENT", 0.60, 1.1),
    "update_payment_method": ("PAYMENT", 0.86, 0.8),
    "check_invoice": ("INVOICE", 0.87, 0.8),
    "get_invoice": ("INVOICE", 0.88, 0.9),
    "check_cancellation_fee": ("CANCEL", 0.85, 0.7),
    "contact_customer_service": ("CONTACT", 0.88, 1.0),
    "contact_human_agent": ("CONTACT", 0.78, 1.0),
    "complaint": ("FEEDBACK", 0.60, 1.0),
    "review": ("FEEDBACK", 0.90, 0.7),
    "return_item": ("RETURN", 0.76, 1.1),
    "exchange_item": ("RETURN", 0.72, 0.8),
    "newsletter_subscription": ("SUBSCRIPTION", 0.90, 0.7),
    "cancel_subscription": ("SUBSCRIPTION", 0.80, 1.0),
    "upgrade_plan": ("SUBSCRIPTION", 0.86, 0.8),
}

INTENTS: dict[str, str] = {intent: row[0] for intent, row in _INTENT_TABLE.items()}
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(INTENTS.values()))
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "age_band": ("18-29", "30-44", "45-64", "65+"),
    "region": ("north", "south", "east", "west"),
    "customer_tier": ("standard", "premium"),
}
STYLES: tuple[str, ...] = ("plain", "polite", "colloquial", "terse", "long", "question", "typo")

# Mildly uneven, like a real customer base; drawn independently of the intent so that, without
# injected bias, the outcome cannot correlate with any attribute.
_ATTRIBUTE_WEIGHTS: dict[str, tuple[float, ...]] = {
    "age_band": (0.28, 0.30, 0.27, 0.15),
    "region": (0.27, 0.23, 0.26, 0.24),
    "customer_tier": (0.75, 0.25),
}
_STYLE_WEIGHTS = (0.20, 0.14, 0.14, 0.10, 0.14, 0.16, 0.12)

# Concrete fills for <slot> markers; one value per slot is drawn per row and shared by the
# instruction and the response, so the response can echo what the customer said. Every product and
# colour takes the article "a"; half the product mentions carry a colour.
_PRODUCTS = (
    "coffee maker", "laptop stand", "yoga mat", "desk lamp", "backpack", "smart watch", "phone case",
    "blender", "winter jacket", "bluetooth speaker", "gaming mouse", "water bottle", "desk chair",
    "rice cooker", "standing desk", "toaster", "vacuum cleaner", "keyboard", "monitor", "kettle",
    "digital camera", "fitness tracker", "table fan", "pillow set", "router", "printer", "tent",
    "baby stroller",
)
_COLOURS = ("black", "white", "blue", "grey", "red", "green")
_SLOTS: dict[str, tuple[str, ...]] = {
    "product": _PRODUCTS * len(_COLOURS) + tuple(f"{c} {p}" for c in _COLOURS for p in _PRODUCTS),
    "payment": ("credit card", "debit card", "PayPal", "bank transfer", "Apple Pay", "Google Pay",
                "gift card", "store credit"),
    "carrier": ("UPS", "FedEx", "DHL", "USPS", "the postal service", "the local courier"),
    "when": ("yesterday", "last week", "two days ago", "on Monday", "this morning", "a few days ago",
             "last month", "over the weekend", "three days ago", "earlier today", "on Friday"),
    "plan": ("basic", "premium", "family", "business", "student", "pro", "plus", "gold", "starter", "team"),
    "speed": ("express", "standard", "next-day", "same-day", "economy", "overnight"),
    "device": ("phone", "laptop", "tablet", "desktop", "work computer", "new phone", "iPad", "iPhone",
               "Android phone", "home computer", "Chromebook"),
}

# Templates live in support_templates.txt. Per intent: a [header]; "= " cores, verb phrases that
# every statement and question frame below accepts (as Bitext composes its data, and it multiplies
# the distinct instructions); whole instruction templates (questions end in "?"); then responses,
# each opened by "> " and continued on indented lines. Every instruction template holds a concrete
# <slot>, or it would repeat verbatim. A response only uses a <slot> that all of its intent's
# templates mention, so it never names something the customer did not say.
_TEMPLATE_TEXT = (Path(__file__).with_name("support_templates.txt")).read_text(encoding="utf-8")

_STATEMENT_FRAMES = ("I want to {}", "I need to {}", "I'd like to {}", "I'm trying to {}", "help me {}",
                     "I would like to {}", "please help me {}")
_QUESTION_FRAMES = ("how do I {}?", "how can I {}?", "can you help me {}?", "could you help me {}?",
                    "what do I have to do to {}?", "is it possible to {}?", "can I {}?")
_POLITE_PREFIXES = ("Hello, ", "Hi there, ", "Good morning, ", "Good afternoon, ", "Excuse me, ",
                    "Hello, I hope you are well. ", "Dear support team, ", "Hi, I hope you can help. ")
_POLITE_SUFFIXES = ("Thanks in advance.", "Thank you so much!", "I would really appreciate your help.",
                    "Thank you for your time.", "Many thanks.", "Thanks a lot for your help.")
_POLITE_SWAPS = {"I want to": "I would like to", "I need to": "I would like to", "can you": "could you"}
_COLLOQUIAL_PREFIXES = ("hey ", "hi ", "yo ", "heyy ", "ok so ", "hey there ", "um ", "")
_COLLOQUIAL_SUFFIXES = ("", " thx", " pls", " asap", "!!", " lol", " ty", "")
_COLLOQUIAL_SWAPS = {
    "i want to": "i wanna", "i'd like to": "i wanna", "i would like to": "i wanna", "going to": "gonna",
    "please": "pls", "you": "u", "your": "ur", "i am": "im", "i'm": "im", "don't": "dont",
    "doesn't": "doesnt", "can't": "cant", "haven't": "havent", "hasn't": "hasnt", "didn't": "didnt",
    "isn't": "isnt", "won't": "wont", "thanks": "thx", "because": "cuz", "what is": "whats",
}
_LONG_BEFORE = (
    "I have been a customer for a few years now.",
    "I tried to sort this out on the website but could not find the option.",
    "I am writing from my <device>, so sorry if this is short.",
    "This is the second time I am contacting you about this.",
    "Your chatbot was not able to help me earlier.",
    "I am a bit stressed because I am travelling next week.",
    "A friend recommended your shop and I have been happy so far.",
    "I looked through the help pages <when> but nothing answered my question.",
)
_LONG_AFTER = ("Please let me know what I should do next.", "I would appreciate a quick answer.",
               "Let me know if you need any more details from me.", "I can share more information if needed.",
               "Hope to hear from you soon.", "It is quite urgent for me.")
_TERSE_STOPWORDS = frozenset((
    "i", "i'd", "i'm", "me", "my", "a", "an", "the", "to", "want", "need", "would", "like", "please",
    "can", "could", "you", "your", "how", "do", "does", "is", "it", "of", "for", "and", "that", "what",
    "where", "why", "which", "will", "be", "still", "so", "just", "tell", "help", "am", "are", "was", "with",
    "on", "in", "there", "if", "this", "get", "have", "did", "should", "about", "some", "any", "one", "from",
    "possible", "trying",
))
_TERSE_TAILS = ("help", "asap", "pls", "now", "urgent", "issue", "question")

_PLACEHOLDER_SPLIT = re.compile(r"(\{\{[^{}]*\}\})")
_PLACEHOLDER_OR_WORD = re.compile(r"\{\{[^{}]*\}\}|([A-Za-z]{4,})")
_TOKEN = re.compile(r"\{\{[^{}]*\}\}|\S+")
_SLOT = re.compile(r"<(\w+)>")


def _swapper(swaps: dict[str, str]) -> re.Pattern[str]:
    longest_first = sorted(swaps, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(k) for k in longest_first) + r")\b")


_POLITE_RE = _swapper(_POLITE_SWAPS)
_COLLOQUIAL_RE = _swapper(_COLLOQUIAL_SWAPS)
_SLOT_NAMES = tuple(_SLOTS)
_SLOT_COLUMN = {name: k for k, name in enumerate(_SLOT_NAMES)}


def _pick(options: Sequence[str], u: float) -> str:
    return options[int(u * len(options))]


def _outside_placeholders(text: str, fn: Callable[[str], str]) -> str:
    # Placeholders are entity markers a downstream anonymiser or template filler may look for, so
    # style changes (case, swaps, typos) must never alter them.
    parts = _PLACEHOLDER_SPLIT.split(text)
    parts[::2] = [fn(p) for p in parts[::2]]
    return "".join(parts)


def _terminate(text: str) -> str:
    return text if text[-1] in ".?!" else text + "."


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _polite(text: str, u: Sequence[float]) -> str:
    text = _POLITE_RE.sub(lambda m: _POLITE_SWAPS[m.group(1)], text)
    prefix = _pick(_POLITE_PREFIXES, u[2])
    if prefix.endswith(", ") and not text.startswith(("I ", "I'", "{{")):
        text = text[:1].lower() + text[1:]
    else:
        text = _capitalize(text)
    return f"{prefix}{_terminate(text)} {_pick(_POLITE_SUFFIXES, u[3])}"


def _colloquial(text: str, u: Sequence[float]) -> str:
    drop_you = u[4] < 0.5

    def swap(m: re.Match[str]) -> str:
        word = m.group(1)
        return word if word in ("you", "your") and not drop_you else _COLLOQUIAL_SWAPS[word]

    text = _outside_placeholders(text, lambda s: _COLLOQUIAL_RE.sub(swap, s.lower()))
    text = text.rstrip(".!" if u[5] < 0.5 else ".!?")
    return f"{_pick(_COLLOQUIAL_PREFIXES, u[2])}{text}{_pick(_COLLOQUIAL_SUFFIXES, u[3])}"


def _terse(text: str, u: Sequence[float]) -> str:
    words: list[str] = []
    for token in _TOKEN.findall(text):
        if not token.startswith("{{"):
            token = token.strip(".,?!").lower()
            if not token or token in _TERSE_STOPWORDS:
                continue
        words.append(token)
    text = " ".join(words[:7])
    if len(text.split()) < 3 or u[3] < 0.4:
        text = f"{text} {_pick(_TERSE_TAILS, u[2])}".strip()
    return text


def _long(template: str, u: Sequence[float]) -> str:
    # Runs before slot filling (unlike the other styles) because the context sentences hold slots too.
    text = f"{_pick(_LONG_BEFORE, u[2])} {_terminate(_capitalize(template))}"
    return f"{text} {_pick(_LONG_AFTER, u[3])}" if u[4] < 0.6 else text


def _mangle(word: str, v: float) -> str:
    op_float = v * 3
    op, frac = int(op_float), op_float - int(op_float)
    i = int(frac * (len(word) - 1))
    # Swapping two equal letters would leave the word intact, so drop one instead.
    if op == 0 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i] + word[i:] if op == 2 else word[:i] + word[i + 1 :]


def _typo(text: str, u: Sequence[float]) -> str:
    # The placeholder alternative consumes {{...}} spans whole, so only words outside them match.
    spans = [m.span(1) for m in _PLACEHOLDER_OR_WORD.finditer(text) if m.group(1)]
    if not spans:
        return text
    chosen = {int(u[3] * len(spans)): u[4]}
    if u[2] < 0.4 and len(spans) > 1:
        second = int(u[5] * (len(spans) - 1))
        chosen[second + (second >= min(chosen))] = u[6]
    for index in sorted(chosen, reverse=True):
        start, end = spans[index]
        text = text[:start] + _mangle(text[start:end], chosen[index]) + text[end:]
    return text


_STYLE_FUNCS = {"polite": _polite, "colloquial": _colloquial, "terse": _terse, "typo": _typo}


def _parse_templates(text: str) -> dict[str, dict[str, list[str]]]:
    parsed: dict[str, dict[str, list[str]]] = {}
    entry: dict[str, list[str]] = {}
    for line in text.strip().splitlines():
        if line.startswith("["):
            entry = parsed[line.strip("[]")] = {"cores": [], "templates": [], "responses": []}
        elif line.startswith("= "):
            entry["cores"].append(line[2:])
        elif line.startswith("> "):
            entry["responses"].append(line[2:])
        elif line.startswith("  "):
            entry["responses"][-1] += " " + line.strip()
        else:
            entry["templates"].append(line)
    return parsed


_TEMPLATES = _parse_templates(_TEMPLATE_TEXT)
_RESPONSES = {intent: tuple(entry["responses"]) for intent, entry in _TEMPLATES.items()}
_FRAMES = {"plain": _STATEMENT_FRAMES, "question": _QUESTION_FRAMES,
           "any": _STATEMENT_FRAMES + _QUESTION_FRAMES}
# (cores, whole templates) per intent and pool: plain rows are statements, question rows questions,
# and the other styles transform either.
_POOLS: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    intent: {
        "plain": (tuple(e["cores"]), tuple(t for t in e["templates"] if not t.endswith("?"))),
        "question": (tuple(e["cores"]), tuple(t for t in e["templates"] if t.endswith("?"))),
        "any": (tuple(e["cores"]), tuple(e["templates"])),
    }
    for intent, e in _TEMPLATES.items()
}


def _instruction_template(intent: str, pool: str, u: float) -> str:
    cores, templates = _POOLS[intent][pool]
    x = u * (len(cores) + len(templates))
    k = int(x)
    if k >= len(cores):
        return templates[k - len(cores)]
    # The fractional part of x is itself uniform, so it picks the frame without another draw.
    return _pick(_FRAMES[pool], x - k).format(cores[k])


def _validate(n_rows: int, bias: float, bias_attribute: str, bias_group: str) -> None:
    if not isinstance(n_rows, Integral) or isinstance(n_rows, bool) or n_rows < 1:
        raise DataError(f"n_rows must be an integer >= 1, got {n_rows!r}")
    if not isinstance(bias, Real) or not 0.0 <= float(bias) < 1.0:
        raise DataError(f"bias must be a number in [0, 1), got {bias!r}")
    if bias_attribute not in ATTRIBUTES:
        raise DataError(f"bias_attribute must be one of {', '.join(ATTRIBUTES)}, got {bias_attribute!r}")
    groups = ATTRIBUTES[bias_attribute]
    if bias_group not in groups:
        raise DataError(
            f"bias_group must be one of {', '.join(groups)} for bias_attribute {bias_attribute!r}, "
            f"got {bias_group!r}"
        )


def generate_support_dataset(
    n_rows: int = 10_000,
    seed: int = 0,
    bias: float = 0.0,
    bias_attribute: str = "age_band",
    bias_group: str = "65+",
) -> pd.DataFrame:
    """Generate a synthetic customer-support instruction dataset.

    The same arguments always give an identical DataFrame. Changing ``bias`` only changes the
    ``resolved`` column: every random draw happens regardless of it.

    Args:
        n_rows: Number of rows to generate (>= 1).
        seed: Seed for ``numpy.random.default_rng``.
        bias: In [0, 1). Rows whose ``bias_attribute`` equals ``bias_group`` have their resolution
            probability multiplied by ``1 - bias``; 0 leaves the outcome independent of all attributes.
        bias_attribute: The attribute the bias targets, a key of ``ATTRIBUTES``.
        bias_group: The disadvantaged value of ``bias_attribute``.

    Returns:
        A DataFrame with columns ``id``, ``instruction``, ``response``, ``category``, ``intent``,
        ``age_band``, ``region``, ``customer_tier`` (strings), ``resolved`` (int 0/1) and ``style``
        (the linguistic variation applied to the instruction, one of ``STYLES``).

    Raises:
        DataError: If an argument is out of range; the message names the argument and its value.
    """
    _validate(n_rows, bias, bias_attribute, bias_group)
    n = int(n_rows)
    rng = np.random.default_rng(seed)
    intent_names = tuple(_INTENT_TABLE)
    weights = np.array([row[2] for row in _INTENT_TABLE.values()])
    intent_idx = rng.choice(len(intent_names), size=n, p=weights / weights.sum())
    style_idx = rng.choice(len(STYLES), size=n, p=_STYLE_WEIGHTS)
    attr_idx = {name: rng.choice(len(values), size=n, p=_ATTRIBUTE_WEIGHTS[name])
                for name, values in ATTRIBUTES.items()}
    slot_sizes = np.array([len(_SLOTS[name]) for name in _SLOT_NAMES])
    slot_idx = rng.integers(0, slot_sizes, size=(n, len(_SLOT_NAMES))).tolist()
    aux = rng.random((n, 7)).tolist()  # per-row template, response and style choices
    outcome_u = rng.random(n)

    instructions: list[str] = []
    responses: list[str] = []
    for i, (intent_i, style_i) in enumerate(zip(intent_idx.tolist(), style_idx.tolist(), strict=True)):
        intent, style, u, row_slots = intent_names[intent_i], STYLES[style_i], aux[i], slot_idx[i]
        template = _instruction_template(intent, style if style in ("plain", "question") else "any", u[0])
        if style == "long":
            template = _long(template, u)

        def fill(m: re.Match[str], row_slots: list[int] = row_slots) -> str:
            name = m.group(1)
            return _SLOTS[name][row_slots[_SLOT_COLUMN[name]]]

        text = _SLOT.sub(fill, template)
        if style in _STYLE_FUNCS:
            text = _STYLE_FUNCS[style](text, u)
        instructions.append(" ".join(text.split()))
        responses.append(_SLOT.sub(fill, _pick(_RESPONSES[intent], u[1])))

    base_rate = np.array([row[1] for row in _INTENT_TABLE.values()])[intent_idx]
    target = attr_idx[bias_attribute] == ATTRIBUTES[bias_attribute].index(bias_group)
    resolved = (outcome_u < np.where(target, base_rate * (1.0 - float(bias)), base_rate)).astype(np.int64)

    width = max(6, len(str(n)))
    columns: dict[str, object] = {
        "id": [f"gen-{k:0{width}d}" for k in range(1, n + 1)],
        "instruction": instructions,
        "response": responses,
        "category": [INTENTS[intent_names[k]] for k in intent_idx.tolist()],
        "intent": [intent_names[k] for k in intent_idx.tolist()],
    }
    for name, values in ATTRIBUTES.items():
        columns[name] = [values[k] for k in attr_idx[name].tolist()]
    columns["resolved"] = resolved
    columns["style"] = [STYLES[k] for k in style_idx.tolist()]
    return pd.DataFrame(columns)
