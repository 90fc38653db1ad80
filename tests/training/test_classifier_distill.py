"""Distilled classifiers: the loss, the teachers' logits (baseline, classifier folder), short runs on real intents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy.special import softmax

from compactlm.errors import ConfigError
from compactlm.models.classifier import class_logits
from compactlm.models.presets import build_encoder
from compactlm.models.tokenizer import train_wordpiece_tokenizer
from compactlm.training.classifier_teachers import baseline_logits, calibration_scale, model_logits
from compactlm.training.distill import classifier_distillation_loss
from compactlm.training.encoder import finetune_classifier, focal_loss
from compactlm.training.stages import STAGES

CLINC = Path(__file__).resolve().parents[3] / "shared" / "data" / "clinc150"
SCRATCH = ["model.preset=encoder-tiny", "model.max_seq_len=32", "finetune.mode=full", "finetune.batch_size=16",
           "finetune.learning_rate=0.005"]


@pytest.fixture(scope="module")
def intents():
    """5 in-scope intents of CLINC150 (Larson et al. 2019, CC BY 3.0): 500 train rows, 100 validation rows."""
    train, val = pd.read_csv(CLINC / "train.csv"), pd.read_csv(CLINC / "val.csv")
    labels = sorted(set(train["label"]) - {"oos"})[:5]
    return (train[train["label"].isin(labels)].reset_index(drop=True),
            val[val["label"].isin(labels)].reset_index(drop=True))


@pytest.fixture(scope="module")
def teacher_dir(intents, tmp_path_factory):
    """A (random) classifier folder whose labels are the student's, reversed, plus one more."""
    train, _ = intents
    labels = [*sorted(train["label"].unique(), reverse=True), "extra-intent"]
    tokenizer = train_wordpiece_tokenizer(list(train["text"]), 300, 32)
    folder = tmp_path_factory.mktemp("teacher")
    build_encoder("encoder-tiny", len(tokenizer), tokenizer.pad_token_id, "classification",
                  id2label=dict(enumerate(labels))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_loss_mixes_the_hard_loss_with_the_temperature_scaled_kl():
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(8, 5) * 2, torch.randn(8, 5) * 2, torch.randint(0, 5, (8,))
    ce = F.cross_entropy(student, labels)
    assert float(classifier_distillation_loss(student, teacher, labels, 0.0, 2.0)) == pytest.approx(float(ce))
    assert float(classifier_distillation_loss(student, student, labels, 1.0, 2.0)) == pytest.approx(0.0, abs=1e-6)
    log_s, log_t = F.log_softmax(student / 3.0, -1), F.log_softmax(teacher / 3.0, -1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1).mean()
    assert float(classifier_distillation_loss(student, teacher, labels, 1.0, 3.0)) == pytest.approx(9.0 * float(kl))
    mixed = 0.3 * 9.0 * kl + 0.7 * focal_loss(student, labels, 2.0)
    focal = classifier_distillation_loss(student, teacher, labels, 0.3, 3.0,
                                         hard_loss=lambda s, y: focal_loss(s, y, 2.0))
    assert float(focal) == pytest.approx(float(mixed), rel=1e-5)


def test_the_collator_stacks_teacher_logits_beside_the_padded_batch(intents):
    from transformers import DataCollatorWithPadding

    from compactlm.training.encoder import _carrying_teacher_logits

    tokenizer = train_wordpiece_tokenizer(list(intents[0]["text"]), 300, 32)
    rows = [{**tokenizer(text), "labels": i} for i, text in enumerate(intents[0]["text"][:3])]
    plain = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    batch = _carrying_teacher_logits(plain)([{**row, "teacher_logits": [0.5 * i] * 5} for i, row in enumerate(rows)])
    assert batch["teacher_logits"].dtype == torch.float32 and batch["teacher_logits"][:, 0].tolist() == [0, 0.5, 1]
    assert torch.equal(batch["input_ids"], plain(rows)["input_ids"])


def test_calibration_finds_the_scale_that_turns_margins_back_into_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(4000, 5))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = [rng.choice(5, p=row) for row in probabilities]  # labels drawn from softmax(logits): calibrated
    assert calibration_scale(logits / 5.0, truth) == pytest.approx(5.0, rel=0.1)


def test_the_baseline_teacher_gives_calibrated_logits_in_the_students_order(intents):
    train, val = intents
    classes = sorted(train["label"].unique(), reverse=True)  # any order: the columns follow it
    logits = baseline_logits(train, val, classes)
    assert logits.shape == (len(train), 5) and logits.dtype == np.float32
    assert (np.array(classes)[logits.argmax(1)] == train["label"].to_numpy()).mean() > 0.95
    assert softmax(logits, axis=1).max(1).mean() > 0.9  # softmax of the raw margins (near +1 and -1): 0.65


def test_a_student_distilled_from_the_baseline_trains_and_saves_on_real_intents(intents, tiny_config, tmp_path):
    from transformers import AutoConfig

    config = tiny_config(*SCRATCH, "distill.teacher=baseline", "distill.alpha=1.0", "distill.temperature=2.0")
    summary = finetune_classifier(*intents, tmp_path / "distilled", config.model, config.classifier, config.finetune,
                                  config.train, report_to_mlflow=False, distill_cfg=config.distill)
    plain = finetune_classifier(*intents, tmp_path / "plain", config.model, config.classifier, config.finetune,
                                config.train, report_to_mlflow=False)
    assert summary.teacher == "baseline" and plain.teacher is None and summary.steps == 4
    assert summary.train_loss != pytest.approx(plain.train_loss)  # alpha=1: the KL alone, not the cross-entropy
    assert summary.eval_loss == pytest.approx(plain.eval_loss, rel=0.5)  # validation: the cross-entropy of both
    label2id = {label: i for i, label in enumerate(sorted(intents[0]["label"].unique()))}
    assert AutoConfig.from_pretrained(tmp_path / "distilled" / "merged").label2id == label2id
    assert "distill" in STAGES["finetune-classifier"].sections  # the stage run logs distill.* as params


def test_a_classifier_folder_teaches_with_its_logits_of_the_students_labels(intents, teacher_dir, tiny_config,
                                                                            tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train, _ = intents
    classes = sorted(train["label"].unique())
    texts = list(train["text"][:10])
    logits = model_logits(str(teacher_dir), texts, classes)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    full = class_logits(teacher, AutoTokenizer.from_pretrained(teacher_dir), texts)
    assert np.allclose(logits, full[:, [4, 3, 2, 1, 0]], atol=1e-5)  # reversed, and the extra class dropped
    config = tiny_config(*SCRATCH, f"distill.teacher={teacher_dir}", "classifier.loss=focal")
    summary = finetune_classifier(*intents, tmp_path, config.model, config.classifier, config.finetune,
                                  config.train, report_to_mlflow=False, distill_cfg=config.distill)
    assert summary.teacher == str(teacher_dir) and (tmp_path / "merged" / "config.json").is_file()


def test_a_teacher_without_every_label_of_the_student_fails_before_training(intents, teacher_dir, tiny_config,
                                                                            tmp_path):
    train, val = intents
    extra = train.assign(label="a-label-the-teacher-lacks").iloc[:20]
    config = tiny_config(*SCRATCH, f"distill.teacher={teacher_dir}")
    with pytest.raises(ConfigError, match=rf"^distill.teacher '{teacher_dir}': the teacher has no label "
                                          r"'a-label-the-teacher-lacks' \(its 6 labels must cover the student's 6\)$"):
        finetune_classifier(pd.concat([train, extra]), val, tmp_path, config.model, config.classifier,
                            config.finetune, config.train, report_to_mlflow=False, distill_cfg=config.distill)
    assert not any(tmp_path.iterdir())
