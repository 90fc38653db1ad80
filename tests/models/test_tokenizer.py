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


def test_wordpiece_tokenizer_wraps_texts_in_cls_sep_and_has_a_mask_token(tmp_path):
    from compactlm.models.tokenizer import train_wordpiece_tokenizer

    tok = train_wordpiece_tokenizer(TEXTS, vocab_size=200, model_max_length=32)
    encoded = tok("Where is my REFUND?")
    tokens = tok.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "refund" in tokens  # lower-cased
    assert tok.mask_token == "[MASK]" and tok.pad_token == "[PAD]" and tok.unk_token == "[UNK]"
    assert tok.decode(encoded["input_ids"], skip_special_tokens=True) == "where is my refund?"
    assert "[UNK]" in tok.convert_ids_to_tokens(tok("✓")["input_ids"])  # WordPiece, unlike byte-level BPE
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again("Where is my order?")["input_ids"] == tok("Where is my order?")["input_ids"]
    assert again.mask_token_id == tok.mask_token_id and again.model_max_length == 32


def test_wordpiece_vocabulary_too_small_is_a_config_error():
    from compactlm.models.tokenizer import train_wordpiece_tokenizer

    with pytest.raises(ConfigError, match="model.vocab_size must be >= 69"):
        train_wordpiece_tokenizer(TEXTS, vocab_size=40, model_max_length=32)


def test_prompt_normalises_spacing_and_shouting_but_keeps_placeholders_and_acronyms():
    from compactlm.models.tokenizer import format_prompt

    spaced = format_prompt("  Where is   my order?\n  Thanks ")
    assert spaced == "### Instruction:\nWhere is my order?\nThanks\n### Response:\n"
    shouted = format_prompt("WHERE IS ORDER {{Order Number}}?")
    assert shouted == "### Instruction:\nwhere is order {{Order Number}}?\n### Response:\n"
    assert "NASA" in format_prompt("Is my NASA mug shipped")  # a capitalised word is not shouting


def test_the_chat_template_renders_what_the_training_data_and_the_engine_render():
    from compactlm.data.chat import render_messages
    from compactlm.models.tokenizer import format_prompt, render_chat

    tokenizer = train_bpe_tokenizer(["where is my order", "it ships today"] * 50, 300, 64)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "where is my order"},
                {"role": "assistant", "content": "It ships today."}, {"role": "user", "content": "thanks"}]
    template = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert template == render_chat(messages, add_generation_prompt=True)
    assert template.startswith("### System:\nBe brief.\n") and render_messages(messages[:3]) in template
    shouted = [{"role": "user", "content": "  WHERE   IS MY ORDER  "}]
    assert render_chat(shouted, add_generation_prompt=True) == format_prompt("where is my order")
