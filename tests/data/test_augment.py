"""Seeded augmentation of the train split: the four operations, tagging, ratio, and no leakage."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from compactlm.config import DataConfig
from compactlm.data.augment import SYNONYMS, augment_rows, augment_text
from compactlm.data.prepare import prepare_dataset
from compactlm.data.text import near_duplicate_key

TEXT = "Hello, I want to cancel my order {{Order Number}} because the package is late and I need help."
PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")


@pytest.mark.parametrize("method", ["synonym", "insert", "swap", "delete"])
def test_each_operation_changes_words_but_never_a_placeholder(method):
    variants = {augment_text(TEXT, method, np.random.default_rng(seed), 0.2) for seed in range(20)}
    assert len(variants - {TEXT}) >= 5
    for text in variants:
        assert PLACEHOLDER.findall(text) == ["{{Order Number}}"]


def test_operations_do_what_they_say():
    rng = np.random.default_rng(0)
    words = TEXT.split()
    synonym = augment_text(TEXT, "synonym", rng, 0.3).split()
    assert len(synonym) == len(words) and synonym != words
    assert all(a == b or b.strip(".,").lower() in SYNONYMS.get(a.strip(".,").lower(), ()) or " " in b
               for a, b in zip(words, synonym))
    assert len(augment_text(TEXT, "insert", rng, 0.2).split()) > len(words)
    assert sorted(augment_text(TEXT, "swap", rng, 0.2).split()) == sorted(words)
    assert len(augment_text(TEXT, "delete", rng, 0.3).split()) < len(words)
    assert augment_text("{{Order Number}}", "delete", rng) == "{{Order Number}}"


def test_augment_rows_is_seeded_tagged_and_never_duplicates_a_held_out_text(tiny_frame):
    train = tiny_frame.iloc[:300].reset_index(drop=True)
    held_out = {near_duplicate_key(t) for t in tiny_frame.iloc[300:]["instruction"]}
    new, counts = augment_rows(train, "instruction", 0.5, ["synonym", "insert", "swap", "delete"], 0.15, seed=1,
                               forbidden_keys=held_out)
    again, _ = augment_rows(train, "instruction", 0.5, ["synonym", "insert", "swap", "delete"], 0.15, seed=1,
                            forbidden_keys=held_out)
    pd.testing.assert_frame_equal(new, again)
    assert counts["augmented rows added"] == len(new)
    assert sum(v for k, v in counts.items() if k != "augmented rows added") + len(new) == 150
    assert new["augmented"].all() and set(new["augmentation"]) == {"synonym", "insert", "swap", "delete"}
    source = train.set_index("id")
    assert (new["intent"].to_numpy() == source.loc[new["augmented_from"], "intent"].to_numpy()).all()
    assert (new["response"].to_numpy() == source.loc[new["augmented_from"], "response"].to_numpy()).all()
    keys = new["instruction"].map(near_duplicate_key)
    assert keys.is_unique and not set(keys) & (held_out | set(train["instruction"].map(near_duplicate_key)))
    assert new["id"].is_unique and not set(new["id"]) & set(train["id"])


def test_prepare_dataset_augments_train_only_at_the_configured_ratio():
    config = DataConfig(n_rows=600, seed=3, augment_ratio=0.3, augment_methods=["synonym", "swap"])
    result = prepare_dataset(config)
    train, val, test = result.splits["train"], result.splits["val"], result.splits["test"]
    assert not val["augmented"].any() and not test["augmented"].any()
    augmented = train[train["augmented"]]
    originals = result.counts["split train"]
    assert len(train) == originals + len(augmented)
    assert len(augmented) == result.counts["augmented rows added"]
    assert 0.2 * originals < len(augmented) <= round(0.3 * originals)
    assert set(augmented["augmentation"]) == {"synonym", "swap"}
    assert (augmented["prompt"].str.contains(augmented["instruction"].iloc[0], regex=False)).iloc[0]
    held_out = set(pd.concat([val, test])["instruction"].map(near_duplicate_key))
    assert not set(augmented["instruction"].map(near_duplicate_key)) & held_out
    assert prepare_dataset(config).splits["train"].equals(train)  # seeded: the same rows again


def test_case_and_typo_variants_keep_placeholders_and_meaning():
    import numpy as np

    from compactlm.data.augment import augment_text

    text = "Please cancel order {{Order Number}} today"
    rng = np.random.default_rng(0)
    cased = {augment_text(text, "case", rng) for _ in range(20)}
    assert cased == {"PLEASE CANCEL ORDER {{Order Number}} TODAY", "please cancel order {{Order Number}} today"}
    typo = augment_text(text, "typo", np.random.default_rng(1), fraction=0.2)
    assert typo != text and "{{Order Number}}" in typo
    assert sorted(typo.replace(" ", "")) == sorted(text.replace(" ", ""))  # letters swapped, none lost


def test_case_variants_are_added_to_train_despite_sharing_their_sources_key():
    import pandas as pd

    from compactlm.data.augment import augment_rows

    train = pd.DataFrame({"id": ["a", "b"], "instruction": ["Where is my parcel", "Refund my order please"],
                          "intent": ["track", "refund"]})
    new, counts = augment_rows(train, "instruction", ratio=1.0, methods=["case"], fraction=0.1, seed=0)
    assert counts["augmented rows added"] == 2
    assert {t.lower() for t in new["instruction"]} == {t.lower() for t in train["instruction"]}
    assert list(new["intent"]) == list(train.set_index("id").loc[new["augmented_from"], "intent"])
