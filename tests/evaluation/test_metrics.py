"""Metrics against hand-computed values, and the likelihood against the model's own loss."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from compactlm.evaluation.generate import LikelihoodResult, generate_responses, response_likelihood
from compactlm.evaluation.metrics import (
    accuracy,
    bleu,
    exact_match,
    macro_f1,
    model_size_mb,
    rouge_l,
    rouge_scores,
    slice_means,
)
from compactlm.models.presets import build_decoder
from compactlm.models.tokenizer import train_bpe_tokenizer
from compactlm.training.encoding import corpus_texts, encode_instruction_pairs


def test_rouge_l_by_hand():
    # LCS("the cat sat", "the cat sat on the mat") = 3: precision 1, recall 1/2, F1 = 2/3.
    assert rouge_l(["the cat sat"], ["the cat sat on the mat"]) == pytest.approx(2 / 3)
    assert rouge_l(["a b c"], ["a b c"]) == pytest.approx(1.0)
    assert rouge_l(["x y"], ["a b"]) == 0.0
    assert rouge_l([], []) == 0.0


def test_bleu_by_hand():
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert bleu(["completely different words here"], ["the cat sat on the mat"]) == pytest.approx(0.0)
    # 4 of 5 words right with no 4-gram match: precisions 4/5, 3/4, 2/3, 1/2 -> geometric mean, BP = 1.
    expected = 100 * math.exp((math.log(4 / 5) + math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2)) / 4)
    assert bleu(["a b c d x"], ["a b c d e"]) == pytest.approx(expected, rel=1e-6)


def test_rouge_1_and_2_by_hand():
    # pred "the cat sat", ref "the cat sat on the mat": unigrams 3/3 precise, recall 3/6 -> F1 2/3;
    # bigrams: pred {the cat, cat sat} all in ref (5 bigrams): P 1, R 2/5 -> F1 4/7.
    scores = rouge_scores(["the cat sat"], ["the cat sat on the mat"])
    assert scores["rouge_1"] == pytest.approx(2 / 3)
    assert scores["rouge_2"] == pytest.approx(4 / 7)
    assert scores["rouge_l"] == pytest.approx(2 / 3)


def test_exact_match_normalises_case_punctuation_and_spaces():
    assert exact_match(["Your order ships TODAY!", "no"], ["your order ships today", "yes"]) == 0.5
    assert exact_match([], []) == 0.0


def test_accuracy_and_macro_f1_by_hand():
    labels = ["a", "a", "b", "c"]
    preds = ["a", "b", "b", "b"]
    assert accuracy(preds, labels) == 0.5
    # F1(a) = 2*1/(2*1+0+1) = 2/3; F1(b) = 2*1/(2*1+2+0) = 1/2; F1(c) = 0 -> mean 7/18.
    assert macro_f1(preds, labels) == pytest.approx(7 / 18)
    assert macro_f1(["x"], ["x"]) == 1.0


def test_slice_means_and_model_size(tmp_path):
    assert slice_means([1.0, 0.0, 0.5], ["b", "a", "b"]) == {"a": 0.0, "b": 0.75}
    (tmp_path / "model.safetensors").write_bytes(b"x" * 2_000_000)
    (tmp_path / "config.json").write_text("{}")
    assert model_size_mb(tmp_path) == pytest.approx(2.0)


def test_metric_inputs_must_align():
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        rouge_l(["a", "b"], ["a"])


def test_perplexities_from_the_nll():
    result = LikelihoodResult(nll=10.0, tokens=5, words=2)
    assert result.perplexity == pytest.approx(math.exp(2.0))
    assert result.word_perplexity == pytest.approx(math.exp(5.0))


@pytest.fixture(scope="module")
def tiny_model():
    frame = pd.DataFrame({"instruction": ["Where is my order?", "Cancel my plan", "Refund please"],
                          "response": ["It ships tomorrow.", "Your plan is cancelled.", "Refund sent today."]})
    tok = train_bpe_tokenizer(corpus_texts(frame) * 20, 300, 64)
    torch.manual_seed(0)
    model = build_decoder("decoder-tiny", len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id).eval()
    return model, tok, frame


def test_response_likelihood_equals_the_models_own_loss(tiny_model):
    model, tok, frame = tiny_model
    result = response_likelihood(model, tok, frame, max_length=64, batch_size=2)  # batched with padding
    encoded = encode_instruction_pairs(frame, tok, 64)
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, labels in zip(encoded["input_ids"], encoded["labels"]):  # one row at a time, no padding
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            n = sum(1 for t in labels[1:] if t != -100)
            total += out.loss.item() * n
            count += n
    assert result.tokens == count
    assert result.nll == pytest.approx(total, rel=1e-4)
    assert result.words == sum(len(r.split()) + 1 for r in frame.response)


def test_generation_returns_one_string_per_prompt_and_matches_unbatched(tiny_model):
    model, tok, frame = tiny_model
    batched = generate_responses(model, tok, list(frame.instruction), max_new_tokens=6, batch_size=3)
    single = [generate_responses(model, tok, [i], max_new_tokens=6, batch_size=1)[0] for i in frame.instruction]
    assert len(batched) == 3 and all(isinstance(x, str) for x in batched)
    assert batched == single  # left padding must not change greedy outputs
