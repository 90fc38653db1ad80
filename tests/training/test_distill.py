"""Knowledge distillation: the loss's two terms, a short run from a teacher folder, and vocabulary checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compactlm.errors import ConfigError
from compactlm.training.causal import pretrain_decoder
from compactlm.training.distill import distill, distillation_loss


def test_the_loss_mixes_cross_entropy_and_the_temperature_scaled_kl():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 6, 10), torch.randn(2, 6, 10)
    labels = torch.randint(0, 10, (2, 6))
    labels[0, :3] = -100  # a prompt: no loss there
    ce = F.cross_entropy(student[:, :-1].reshape(-1, 10), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert float(distillation_loss(student, teacher, labels, 0.0, 2.0, 10)) == pytest.approx(float(ce), rel=1e-6)
    assert float(distillation_loss(student, student, labels, 1.0, 2.0, 10)) == pytest.approx(0.0, abs=1e-6)
    mask = labels[:, 1:] != -100
    log_s, log_t = F.log_softmax(student[:, :-1] / 3.0, -1), F.log_softmax(teacher[:, :-1] / 3.0, -1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)[mask].mean() * 9.0
    mixed = 0.3 * kl + 0.7 * ce
    assert float(distillation_loss(student, teacher, labels, 0.3, 3.0, 10)) == pytest.approx(float(mixed), rel=1e-5)
    padded = torch.cat([student, torch.full((2, 6, 3), 50.0)], -1)  # a model whose embeddings are padded
    assert float(distillation_loss(padded, teacher, labels, 0.3, 3.0, 10)) == pytest.approx(float(mixed), rel=1e-5)


def test_a_student_preset_learns_from_a_teacher_folder_with_its_tokenizer(base_dir, splits, tiny_config, tmp_path):
    from transformers import AutoTokenizer

    config = tiny_config("model.preset=decoder-tiny", "distill.alpha=0.7", "distill.temperature=2.0")
    summary = distill(*splits, tmp_path, config.model, config.train, config.distill, teacher=str(base_dir),
                      report_to_mlflow=False)
    assert summary.steps == 4 and summary.eval_loss is not None and summary.parameters > 0
    assert AutoTokenizer.from_pretrained(tmp_path).get_vocab() == AutoTokenizer.from_pretrained(base_dir).get_vocab()


def test_the_teacher_can_be_a_registry_version(base_dir, splits, tiny_config, home, tmp_path):
    import mlflow

    from compactlm.registry import store
    from compactlm.registry.pyfunc import log_chat_model
    from compactlm.state import state_paths

    experiment = store.setup_tracking(state_paths(), "teachers")
    try:
        with mlflow.start_run(experiment_id=experiment):
            uri = log_chat_model(base_dir).model_uri
        version = store.register_version(uri, "unit-teacher", {"gate_verdict": "passed"})
        store.set_alias("unit-teacher", store.CHAMPION, version)
        config = tiny_config("model.preset=decoder-tiny", "distill.alpha=0.5")
        summary = distill(*splits, tmp_path / "student", config.model, config.train, config.distill,
                          teacher="models:/unit-teacher@champion", report_to_mlflow=False)
        assert summary.steps == 4 and summary.eval_loss is not None
        with pytest.raises(ConfigError, match=r"^model reference 'models:/unit-teacher@nobody': "):
            distill(*splits, tmp_path / "none", config.model, config.train, config.distill,
                    teacher="models:/unit-teacher@nobody", report_to_mlflow=False)
        assert not (tmp_path / "none").exists()
    finally:
        mlflow.set_tracking_uri(None)


def test_vocabulary_mismatch_fails_before_any_training(base_dir, splits, tiny_config, tmp_path):
    other = tiny_config("model.vocab_size=300", "train.max_steps=1")
    pretrain_decoder(splits[0].head(60), splits[1], tmp_path / "other", other.model, other.train,
                     report_to_mlflow=False)
    config = tiny_config()
    with pytest.raises(ConfigError, match=rf"^distill.teacher '{base_dir}': vocabulary mismatch: the teacher's "
                                          r"tokenizer has 400 tokens, the student's 300$"):
        distill(*splits, tmp_path / "student", config.model, config.train, config.distill, teacher=str(base_dir),
                student=str(tmp_path / "other"), report_to_mlflow=False)
    with pytest.raises(ConfigError, match="distill.teacher must be set"):
        distill(*splits, tmp_path / "student", config.model, config.train, config.distill, report_to_mlflow=False)
    with pytest.raises(ConfigError, match=r"^distill.teacher 'baseline' \(the TF-IDF baseline\) teaches classifiers"):
        distill(*splits, tmp_path / "student", config.model, config.train, config.distill, teacher="baseline",
                report_to_mlflow=False)
    assert not (tmp_path / "student").exists()


def test_same_size_vocabularies_with_different_ids_are_a_mismatch():
    from compactlm.models.tokenizer import train_bpe_tokenizer
    from compactlm.training.distill import check_vocab_match

    one = train_bpe_tokenizer(["where is my order, where is my parcel"] * 50, 266, 32)
    two = train_bpe_tokenizer(["cancel the subscription, cancel it today"] * 50, 266, 32)
    assert len(one) == len(two)
    check_vocab_match(one, one, "teacher-dir")  # identical: no error
    with pytest.raises(ConfigError, match=r"^distill.teacher 'teacher-dir': vocabulary mismatch: token '.+' is id \d+ "
                                          r"for the teacher and \w+ for the student$"):
        check_vocab_match(one, two, "teacher-dir")
