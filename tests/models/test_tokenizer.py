"""BPE tokenizer training: special tokens, lossless round trip, chat template equals the training prompt."""

from __future__ import annotations

import pytest

from compactlm.errors import ConfigError
from compactlm.models.tokenizer import BOS, EOS, PAD, format_prompt, load_tokenizer, train_bpe_tokenizer

TEXTS = ["Where is my order {{Order Number}}?", "I want a refund, please.", "Café crème — naïve façade"] * 50


def test_trained_tokenizer_round_trips_any_text_and_saves(tmp_path):
    tok = train_bpe_tokenizer(TEXTS, vocab_size=300, model_max_length=64)
    assert len(tok) <= 300
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == (PAD, BOS, EOS)
    unseen = "Unseen ünïcode ✓ and emoji 🙂 text"
    assert tok.decode(tok(unseen, add_special_tokens=False)["input_ids"]) == unseen  # byte-level: nothing lost
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again(unseen)["input_ids"] == tok(unseen)["input_ids"]
    assert again.model_max_length == 64


def test_chat_template_renders_the_fine_tuning_prompt():
    tok = train_bpe_tokenizer(TEXTS, vocab_size=300, model_max_length=64)
    rendered = tok.apply_chat_template([{"role": "user", "content": "Where is my order?"}], tokenize=False,
                                       add_generation_prompt=True)
    assert rendered == format_prompt("Where is my order?")


def test_vocabulary_too_small_is_a_config_error():
    with pytest.raises(ConfigError, match="model.vocab_size must be >= 260"):
        train_bpe_tokenizer(TEXTS, vocab_size=100, model_max_length=64)
