"""Bits per character: every token scored once, the formula exact on a model whose answer is known."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from compactlm.errors import DataError
from compactlm.evaluation.language_model import evaluate_language_model, text_likelihood
from compactlm.models.presets import build_decoder
from compactlm.models.tokenizer import train_bpe_tokenizer

DOCS = ["how do i reset my password", "what is the weather like in paris today",
        "transfer two hundred dollars to my savings account", "set an alarm for seven"] * 5


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tok = train_bpe_tokenizer(DOCS, 300, 64)
    torch.manual_seed(0)
    model = build_decoder("decoder-tiny", len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    return model, tok


def test_every_token_is_scored_once_whatever_the_window(model_and_tokenizer):
    model, tok = model_and_tokenizer
    expected_tokens = sum(len(ids) + 1 for ids in tok(DOCS, add_special_tokens=False)["input_ids"])  # text + EOS
    small = text_likelihood(model, tok, DOCS, max_length=8, batch_size=3)
    large = text_likelihood(model, tok, DOCS, max_length=64)
    assert small.tokens == large.tokens == expected_tokens
    assert small.characters == sum(len(d) for d in DOCS) + len(DOCS)  # one end-of-document character each
    # Less context per token in short windows can only cost likelihood, never gain it by more than noise.
    assert small.nll > 0 and large.nll > 0


def test_a_uniform_model_costs_log2_vocab_bits_per_token(model_and_tokenizer):
    model, tok = model_and_tokenizer
    uniform = build_decoder("decoder-tiny", len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    uniform.load_state_dict(model.state_dict())
    with torch.no_grad():
        uniform.lm_head.weight.zero_()  # every logit 0: each token has probability 1 / vocab
    result = text_likelihood(uniform, tok, DOCS, max_length=16)
    vocab = uniform.config.vocab_size
    assert result.nll == pytest.approx(result.tokens * math.log(vocab), rel=1e-5)
    assert result.bits_per_character == pytest.approx(result.tokens * math.log2(vocab) / result.characters, rel=1e-5)
    assert result.perplexity == pytest.approx(vocab, rel=1e-4)


def test_the_evaluation_reports_bits_per_character_and_continuations(model_and_tokenizer):
    model, tok = model_and_tokenizer
    result = evaluate_language_model(model, tok, pd.DataFrame({"text": DOCS}), max_length=32, samples=2,
                                     max_new_tokens=4, model_size_mb=0.1)
    assert set(result.metrics) == {"bits_per_character", "perplexity", "tokens_per_character", "model_size_mb"}
    assert 0 < result.metrics["bits_per_character"] < 20
    assert len(result.examples) == 2 and "bits per character" in result.reports["language-model"]


def test_no_text_is_a_data_error(model_and_tokenizer):
    model, tok = model_and_tokenizer
    with pytest.raises(DataError, match="no text to score"):
        text_likelihood(model, tok, ["", ""], max_length=16)
    with pytest.raises(DataError, match="no 'text' column"):
        evaluate_language_model(model, tok, pd.DataFrame({"body": ["x"]}), max_length=16)
