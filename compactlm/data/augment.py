"""Seeded text augmentation of the train split (EDA: Wei & Zou, 2019), with a bundled synonym table.

Four operations, each changing about ``augment_words`` of a text's words: synonym replacement, random
insertion (a synonym of a word of the text, at a random place), random swap and random deletion.
Placeholders such as ``{{Order Number}}`` are never touched. Augmented rows are new rows tagged
``augmented=True`` with ``augmented_from`` (the source row id) and ``augmentation`` (the operation);
they are only ever added to train, and a candidate that would duplicate a validation/test text, another
row, or a text with another label is discarded (and counted), so the split stays leak-free.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from compactlm.data.text import near_duplicate_key, near_duplicate_keys

ATTEMPTS = 3  # draws per augmented row before it is given up (and counted as discarded)
_TOKEN = re.compile(r"\{\{[^{}]*\}\}|\S+")
_CORE = re.compile(r"^([^A-Za-z']*)([A-Za-z']+)([^A-Za-z']*)$")

# Small, domain-leaning synonym groups: every word of a group maps to the others.
_GROUPS = (
    "order, purchase", "package, parcel, shipment", "buy, purchase", "cancel, call off", "refund, reimbursement",
    "money, funds", "help, assist, support", "want, wish", "need, require", "get, obtain, receive",
    "check, verify", "change, modify, update", "fix, resolve, sort out", "problem, issue, trouble",
    "question, query", "quick, fast, rapid", "soon, shortly", "now, immediately", "account, profile",
    "password, passcode", "delete, remove, erase", "send, ship, dispatch", "deliver, bring", "delivery, shipping",
    "late, delayed", "lost, missing", "broken, damaged, faulty", "item, product, article", "return, send back",
    "exchange, swap", "address, location", "phone, telephone", "call, ring", "talk, speak",
    "agent, representative", "customer, client", "store, shop", "price, cost", "fee, charge", "bill, invoice",
    "plan, subscription", "upgrade, improve", "new, fresh", "old, previous", "information, details, info",
    "tell, inform", "know, find out", "see, view", "find, locate", "show, display", "start, begin", "stop, end",
    "open, access", "please, kindly", "thanks, thank you", "hello, hi", "urgent, pressing", "happy, glad",
    "angry, upset, annoyed", "bad, poor", "good, great, fine", "big, large", "small, little", "make, create",
    "set up, configure", "track, follow", "status, state", "option, choice",
)
SYNONYMS: dict[str, tuple[str, ...]] = {}
for _group in _GROUPS:
    _words = [w.strip() for w in _group.split(",")]
    for _w in _words:
        if " " not in _w:  # multi-word phrases are replacements, never looked up
            SYNONYMS[_w] = tuple(dict.fromkeys(SYNONYMS.get(_w, ()) + tuple(x for x in _words if x != _w)))


def _split(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _editable(token: str) -> bool:
    return not token.startswith("{{")


def _synonym_of(token: str, rng: np.random.Generator) -> str | None:
    match = _CORE.match(token)
    if not match or match.group(2).lower() not in SYNONYMS:
        return None
    head, word, tail = match.groups()
    choice = SYNONYMS[word.lower()][int(rng.integers(len(SYNONYMS[word.lower()])))]
    if word[0].isupper():
        choice = choice[0].upper() + choice[1:]
    return f"{head}{choice}{tail}"


def augment_text(text: str, method: str, rng: np.random.Generator, fraction: float = 0.1) -> str:
    """One augmented variant of ``text`` (possibly unchanged when no word qualifies).

    Args:
        text: the text to vary.
        method: ``synonym``, ``insert``, ``swap``, ``delete`` (word level), ``case`` (the whole text
            upper- or lower-cased, placeholders kept) or ``typo`` (adjacent letters swapped).
        rng: the seeded generator (the caller's sequence of draws makes the result reproducible).
        fraction: about this share of the words changes (at least one).
    """
    tokens = _split(text)
    if method == "case":
        # Customers write in capitals or without any; placeholders must stay exactly as they are.
        upper = bool(rng.random() < 0.5)
        return " ".join(t if t.startswith("{{") else (t.upper() if upper else t.lower()) for t in tokens)
    editable = [i for i, t in enumerate(tokens) if _editable(t)]
    if not editable:
        return text
    n = max(1, int(round(len(tokens) * fraction)))
    if method == "typo":
        for i in rng.permutation(editable)[:n].tolist():
            word = tokens[i]
            letters = [j for j in range(len(word) - 1) if word[j].isalpha() and word[j + 1].isalpha()]
            if letters:
                j = letters[int(rng.integers(len(letters)))]
                tokens[i] = word[:j] + word[j + 1] + word[j] + word[j + 2:]
        return " ".join(tokens)
    if method == "synonym":
        for i in rng.permutation(editable)[:n].tolist():
            tokens[i] = _synonym_of(tokens[i], rng) or tokens[i]
    elif method == "insert":
        candidates = [s for s in (_synonym_of(tokens[i], rng) for i in editable) if s]
        for _ in range(min(n, len(candidates))):
            word = candidates[int(rng.integers(len(candidates)))].strip(".,!?;:").lower()
            tokens.insert(int(rng.integers(len(tokens) + 1)), word)
    elif method == "swap" and len(editable) >= 2:
        for _ in range(n):
            a, b = rng.choice(editable, size=2, replace=False).tolist()
            tokens[a], tokens[b] = tokens[b], tokens[a]
    elif method == "delete" and len(editable) >= 2:
        drop = set(i for i in editable if rng.random() < fraction)
        if len(drop) >= len(editable):  # keep at least one word
            drop.discard(editable[0])
        tokens = [t for i, t in enumerate(tokens) if i not in drop]
    return " ".join(tokens)


def augment_rows(train: pd.DataFrame, column: str, ratio: float, methods: list[str], fraction: float, seed: int,
                 forbidden_keys: set[str] | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Augmented copies of ``round(ratio * len(train))`` train rows, and the counts for the report.

    Source rows are drawn without replacement (cycling when ``ratio > 1``); the operation of each copy
    is drawn from ``methods``. A draw is rejected when its text is unchanged or when its
    near-duplicate key is already taken (by train, by another copy, or by ``forbidden_keys``: the
    validation and test texts), which also keeps one label per text; after ``ATTEMPTS`` rejected
    draws the copy is given up and counted.

    Args:
        train: the train split (canonical rows with an ``id``).
        column: the short text column to augment (``TaskSchema.augment_column``).
        ratio: copies to add, as a fraction of the train rows (``data.augment_ratio``, 0 to 4).
        methods: operations to draw from (``schemas.AUGMENT_METHODS``).
        fraction: share of a text's words each operation changes (``data.augment_words``; EDA's alpha,
            for which Wei & Zou recommend 0.1).
        seed: seeds every draw.
        forbidden_keys: near-duplicate keys no copy may take (the validation and test texts).

    Returns:
        (the new rows, with ``augmented``, ``augmented_from`` and ``augmentation`` set; counts)
    """
    n = int(round(ratio * len(train)))
    counts = {"augmented rows added": 0, "augmentation discarded: unchanged text": 0,
              "augmentation discarded: duplicates an existing text": 0}
    if n == 0 or train.empty:
        return train.head(0).assign(augmented=pd.Series(dtype=bool)), counts
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(train)) for _ in range(-(-n // len(train)))])[:n]
    taken = set(near_duplicate_keys(train[column]).dropna()) | set(forbidden_keys or ())
    seen_texts = set(train[column].astype(str))
    texts, keep, used = [], [], []
    for position, row in enumerate(order.tolist()):
        original = str(train[column].iloc[row])
        outcome = "augmentation discarded: unchanged text"
        for _ in range(ATTEMPTS):  # a text with no synonym, or an unlucky draw, gets another try
            method = methods[int(rng.integers(len(methods)))]
            text = augment_text(original, method, rng, fraction)
            if text == original:
                continue
            key = near_duplicate_key(text)
            # A case variant keeps its source's key: it is the same message, in train, with the same
            # label, so it cannot leak; any other taken key would duplicate a different row.
            own_key = method == "case" and key == near_duplicate_key(original)
            if key in taken and not own_key:
                outcome = "augmentation discarded: duplicates an existing text"
                continue
            taken.add(key)
            if own_key and text in seen_texts:
                continue
            seen_texts.add(text)
            texts.append(text)
            keep.append(row)
            used.append((position, method))
            break
        else:
            counts[outcome] += 1
    new = train.iloc[keep].copy()
    new[column] = pd.Series(texts, index=new.index, dtype="string")
    new["augmented_from"] = new["id"].astype("string")
    new["augmentation"] = pd.Series([m for _, m in used], index=new.index, dtype="string")
    new["id"] = [f"{source}-aug{position}" for source, (position, _) in zip(new["augmented_from"], used)]
    new["id"] = new["id"].astype("string")
    new["augmented"] = True
    for derived in ("prompt", "completion", "sample_weight"):
        if derived in new.columns:
            new = new.drop(columns=derived)
    counts["augmented rows added"] = len(new)
    return new.reset_index(drop=True), counts
