"""Supervised distillation from cached sparse teacher targets: the loss, the targets, a short run, the table."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from compactlm.errors import ConfigError
from compactlm.training.distill import classifier_distillation_loss
from compactlm.training.distill_supervised import (
    SparseTargets,
    distill_supervised,
    response_logits,
    sparse_distillation_loss,
    teacher_targets,
)


def _sparse(teacher_logits, k: int, temperature: float):
    logprobs = torch.log_softmax(teacher_logits / temperature, -1)
    top, ids = logprobs.topk(k, -1)
    tail = torch.log1p(-top.exp().sum(-1).clamp(max=1 - 1e-7)).clamp(min=-100.0)
    return ids, top, tail


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_with_every_token_kept_the_sparse_loss_is_the_full_distillation_loss(temperature):
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(12, 20), torch.randn(12, 20), torch.randint(0, 20, (12,))
    ids, top, tail = _sparse(teacher, 20, temperature)
    for alpha in (0.0, 0.3, 1.0):
        full = classifier_distillation_loss(student, teacher, labels, alpha, temperature)
        sparse = sparse_distillation_loss(student, labels, ids, top, tail, alpha, temperature)
        assert float(sparse) == pytest.approx(float(full), rel=1e-4, abs=1e-5)
    assert float(sparse_distillation_loss(student, labels, None, None, None, 0.0, 2.0)) == pytest.approx(
        float(F.cross_entropy(student, labels)), rel=1e-6)


def test_fewer_tokens_give_a_lower_bound_that_vanishes_when_the_student_is_the_teacher():
    torch.manual_seed(1)
    student, teacher, labels = torch.randn(30, 50), torch.randn(30, 50) * 3, torch.randint(0, 50, (30,))
    full = float(classifier_distillation_loss(student, teacher, labels, 1.0, 2.0))
    bounds = [float(sparse_distillation_loss(student, labels, *_sparse(teacher, k, 2.0), 1.0, 2.0))
              for k in (1, 4, 16, 50)]
    assert all(0 <= b <= full + 1e-5 for b in bounds) and bounds[-1] == pytest.approx(full, rel=1e-4)
    assert float(sparse_distillation_loss(teacher, labels, *_sparse(teacher, 8, 2.0), 1.0, 2.0)) == pytest.approx(
        0.0, abs=1e-5)


def test_the_loss_pulls_the_student_towards_the_teacher_only_through_its_top_tokens():
    teacher = torch.tensor([[4.0, 3.0, 0.0, 0.0, 0.0]])
    student = torch.zeros(1, 5, requires_grad=True)
    sparse_distillation_loss(student, torch.tensor([0]), *_sparse(teacher, 2, 1.0), 1.0, 1.0).backward()
    grad = student.grad[0]
    assert grad[0] < grad[1] < 0 < grad[2] and torch.allclose(grad[2:], grad[2].expand(3))  # the tail moves as one


def test_response_logits_are_the_models_own_at_the_labelled_positions(base_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    ids = torch.randint(5, 300, (2, 10))
    labels = torch.full((2, 10), -100)
    labels[0, 4:] = ids[0, 4:]
    labels[1, 7:9] = ids[1, 7:9]
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    with torch.no_grad():
        logits, targets = response_logits(model, ids, mask, labels)
        full = model(input_ids=ids, attention_mask=mask).logits
    keep = labels[:, 1:] != -100
    assert logits.shape == (8, full.shape[-1]) and torch.equal(targets, labels[:, 1:][keep])
    assert torch.allclose(logits, full[:, :-1][keep], atol=1e-5)


@pytest.fixture(scope="module")
def teacher_and_tokenizer(base_dir):
    from transformers import AutoModelForCausalLM

    from compactlm.models.loading import load_tokenizer_for

    return AutoModelForCausalLM.from_pretrained(base_dir).eval(), load_tokenizer_for(str(base_dir))


def test_teacher_targets_keep_the_top_tokens_of_every_response_position(teacher_and_tokenizer, splits):
    teacher, tokenizer = teacher_and_tokenizer
    rows = splits[0].head(6)
    full = teacher_targets(teacher, tokenizer, rows, 64, top_k=len(tokenizer), temperature=2.0, batch_size=4)
    sparse = teacher_targets(teacher, tokenizer, rows, 64, top_k=8, temperature=2.0, batch_size=4)
    assert 0 < len(full.input_ids) <= 6 and full.tokens == sum(len(i) for i in full.input_ids)
    assert sparse.positions == full.positions == sum(sum(t != -100 for t in lab[1:]) for lab in full.labels)
    first = torch.tensor(full.input_ids[0])[None]
    with torch.no_grad():
        expected = torch.log_softmax(teacher(input_ids=first).logits[0, :-1] / 2.0, -1)
    keep = torch.tensor(full.labels[0][1:]) != -100
    expected = expected[keep]
    got = torch.full_like(expected, float("nan"))
    got.scatter_(-1, torch.tensor(full.token_ids[0]).view(-1, len(tokenizer)).long(),
                 torch.tensor(full.logprobs[0]).view(-1, len(tokenizer)))
    assert torch.allclose(got, expected, atol=1e-4) and max(full.tail[0]) == -100.0
    top, tail = torch.tensor(sparse.logprobs[0]).view(-1, 8), torch.tensor(sparse.tail[0])
    assert torch.allclose(top, expected.topk(8, -1).values, atol=1e-4)
    assert torch.allclose(torch.logsumexp(torch.cat([top, tail[:, None]], -1), -1), torch.zeros(len(tail)), atol=1e-4)
    with pytest.raises(ConfigError, match=r"^top_k must be in \[1, 400\]"):
        teacher_targets(teacher, tokenizer, rows, 64, top_k=0)


def test_a_preset_student_learns_from_the_targets_and_the_control_from_the_labels(teacher_and_tokenizer, splits,
                                                                                 tiny_config, tmp_path):
    from transformers import AutoTokenizer

    teacher, tokenizer = teacher_and_tokenizer
    train_cfg = tiny_config("train.max_steps=4", "train.learning_rate=0.003").train
    targets = teacher_targets(teacher, tokenizer, splits[0].head(64), 64, top_k=8, temperature=2.0)
    distilled = distill_supervised(targets, tokenizer, tmp_path / "distilled", "decoder-tiny", train_cfg, 64,
                                   alpha=0.5, temperature=2.0, val=splits[1].head(16))
    control = distill_supervised(splits[0].head(64), tokenizer, tmp_path / "control", "decoder-tiny", train_cfg, 64,
                                 alpha=0.0, val=splits[1].head(16))
    assert distilled.steps == control.steps == 4 and distilled.teacher == "sparse-top8" and control.teacher is None
    assert distilled.parameters == control.parameters and math.isfinite(distilled.train_loss)
    assert distilled.eval_loss is not None and control.eval_loss is not None  # validation cross-entropy, nats
    assert distilled.train_tokens == control.train_tokens  # the same pairs, the same steps
    assert AutoTokenizer.from_pretrained(tmp_path / "distilled").get_vocab() == tokenizer.get_vocab()


def test_bad_arguments_fail_before_any_training(teacher_and_tokenizer, splits, tiny_config, tmp_path):
    _, tokenizer = teacher_and_tokenizer
    train_cfg = tiny_config().train
    targets = SparseTargets([], [], [], [], [], 8, 2.0, 0.0, 0)
    with pytest.raises(ConfigError, match="needs the teacher's targets"):
        distill_supervised(splits[0], tokenizer, tmp_path / "a", "decoder-tiny", train_cfg, 64, alpha=0.5)
    with pytest.raises(ConfigError, match=r"temperature 1.0 differs from the targets' \(2.0\)"):
        distill_supervised(targets, tokenizer, tmp_path / "a", "decoder-tiny", train_cfg, 64, temperature=1.0)
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\]"):
        distill_supervised(targets, tokenizer, tmp_path / "a", "decoder-tiny", train_cfg, 64, alpha=1.5)
    with pytest.raises(ConfigError, match="need validation rows"):
        distill_supervised(targets, tokenizer, tmp_path / "a", "decoder-tiny",
                           tiny_config("train.early_stopping_patience=2").train, 64, temperature=2.0)
    assert not (tmp_path / "a").exists()


def test_the_benchmark_table_orients_every_ratio_so_that_higher_is_better():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import distill_bench

    teacher = {"parameters": 134_515_008, "rouge_l": 0.5, "mcq_accuracy": 0.9, "word_perplexity": 4.0,
               "generation_tokens_per_second": 100.0}
    student = {"parameters": 12_979_392, "rouge_l": 0.45, "mcq_accuracy": 0.81, "word_perplexity": 5.0,
               "generation_tokens_per_second": 900.0, "train_seconds": 300.0}
    r = distill_bench.ratios(teacher, student)
    assert r["params_ratio"] == pytest.approx(0.0965, abs=1e-4) and r["rouge_l_ratio"] == pytest.approx(0.9)
    assert r["mcq_ratio"] == pytest.approx(0.9) and r["word_perplexity_ratio"] == pytest.approx(0.8)
    assert distill_bench.verdict(r) == {"params_le_0_1": True, "quality_ge_0_8": True, "met": True}
    assert not distill_bench.verdict({**r, "mcq_ratio": 0.79})["met"]
    table = distill_bench.markdown_table({"teacher": teacher, "distilled": student, "control": student})
    assert table.count("\n") == 4 and "| distilled student | 13.0M | 0.096 | 0.450 | 0.90 |" in table
    assert table.splitlines()[2].endswith("| 100 | — |") and table.endswith("| 900 | 300 |")
