"""The MCQ evaluation: the bundled set, the JSONL record format, and likelihood scoring."""

from __future__ import annotations

import json
import math

import pytest
import torch

from compactlm.errors import DataError
from compactlm.evaluation.mcq import build_mcq_set, evaluate_mcq, load_mcq_set, option_scores
from compactlm.models.presets import build_decoder
from compactlm.models.tokenizer import train_bpe_tokenizer


def test_bundled_set_is_well_formed_and_pinned():
    questions, sha = load_mcq_set()
    assert len(questions) == 200 and len(sha) == 64
    assert all(set(q["options"]) == set("ABCD") and q["answer_gt"] in q["options"] for q in questions)
    assert len({q["question_id"] for q in questions}) == 200
    assert len({q["answer_gt"] for q in questions}) == 4  # the right answer is not always in one place


def test_build_is_seeded_and_the_right_answer_is_the_rows_response(tiny_frame):
    a, b = build_mcq_set(tiny_frame, 10, seed=4), build_mcq_set(tiny_frame, 10, seed=4)
    assert a == b
    responses = dict(zip(tiny_frame["instruction"], tiny_frame["response"]))
    for q in a:
        assert q["options"][q["answer_gt"]] == responses[q["question"]]


def test_malformed_files_fail_with_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": "1", "question": "q", "options": {"A": "x"}, "answer_gt": "A"}\nnot json\n')
    with pytest.raises(DataError, match=r"bad.jsonl line 2: not valid JSON"):
        load_mcq_set(bad)
    bad.write_text('{"question_id": "1", "question": "q", "options": {"A": "x"}, "answer_gt": "B"}\n')
    with pytest.raises(DataError, match=r"line 1: an MCQ record needs"):
        load_mcq_set(bad)
    with pytest.raises(DataError, match="does not exist"):
        load_mcq_set(tmp_path / "missing.jsonl")


@pytest.fixture(scope="module")
def tiny_lm():
    tok = train_bpe_tokenizer(["refund sent", "order shipped", "password reset link"] * 30, 300, 64)
    torch.manual_seed(0)
    return build_decoder("decoder-tiny", len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id).eval(), tok


def test_records_follow_the_schema_and_accuracy_matches_them(tiny_lm, tmp_path):
    model, tok = tiny_lm
    questions, sha = load_mcq_set()
    result = evaluate_mcq(model, tok, questions[:8], tmp_path / "mcq.jsonl", sha)
    records = [json.loads(line) for line in (tmp_path / "mcq.jsonl").read_text().splitlines()]
    assert len(records) == 8 and result.n_questions == 8
    for record in records:
        assert set(record) == {"question_id", "question", "options", "answer_gt", "model_output", "is_correct"}
        assert set(record["model_output"]) == {"reasoning_steps", "final_answer"}
        assert record["model_output"]["final_answer"] in record["options"]
        assert record["is_correct"] == (record["model_output"]["final_answer"] == record["answer_gt"])
    assert result.accuracy == pytest.approx(sum(r["is_correct"] for r in records) / 8)


def test_option_scores_prefer_what_the_model_finds_likely(tiny_lm):
    model, tok = tiny_lm
    scores = option_scores(model, tok, "question", {"A": "refund sent", "B": "refund sent"})
    assert scores["A"] == pytest.approx(scores["B"])  # identical options score identically (padding-safe)


def test_the_fast_engine_scores_options_and_references_as_transformers_does(tiny_lm, tiny_frame):
    import pandas as pd

    from compactlm.evaluation.generate import fast_engine, response_likelihood

    model, tok = tiny_lm
    engine = fast_engine(model, tok, batch_size=4)
    assert engine is not None
    options = {"A": "refund sent", "B": "order shipped", "C": "password reset link now", "D": "x"}
    slow, fast = option_scores(model, tok, "where is my refund", options), option_scores(
        model, tok, "where is my refund", options, engine)
    assert fast == pytest.approx(slow, abs=1e-4)
    long = option_scores(model, tok, "where is my refund", {"A": "refund sent " * 300, "B": "x"}, engine)
    assert all(math.isfinite(v) for v in long.values())  # an option longer than the context keeps its end
    frame = pd.DataFrame({"instruction": ["where is my refund", "reset my password please"],
                          "response": ["refund sent", "password reset link"]})
    hf, ours = response_likelihood(model, tok, frame, 64, 2), response_likelihood(model, tok, frame, 64, 2,
                                                                                   engine=engine)
    assert (ours.tokens, ours.words) == (hf.tokens, hf.words)
    assert ours.nll == pytest.approx(hf.nll, rel=1e-4)
