"""Encoders: masked-LM pretraining, then classifiers (full or LoRA, cross-entropy or focal) on text/label."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from compactlm.errors import ConfigError, DataError
from compactlm.models.classifier import predict_labels
from compactlm.training.encoder import finetune_classifier, focal_loss, pretrain_encoder_mlm

ENCODER = ["model.preset=encoder-tiny", "finetune.batch_size=16", "finetune.learning_rate=0.005"]


@pytest.fixture(scope="module")
def labelled(splits):
    train, val = (frame.assign(text=frame["instruction"], label=frame["category"]) for frame in splits)
    return train[["text", "label"]], val[["text", "label"]]


@pytest.fixture(scope="module")
def mlm_dir(labelled, tiny_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlm")
    config = tiny_config(*ENCODER)
    summary = pretrain_encoder_mlm(*labelled, folder, config.model, config.train, report_to_mlflow=False)
    assert summary.steps == 4 and 0 < summary.eval_loss < 20
    return folder


def test_mlm_pretraining_saves_a_masked_lm_with_its_wordpiece_tokenizer(mlm_dir):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(mlm_dir)
    model = AutoModelForMaskedLM.from_pretrained(mlm_dir).eval()
    batch = tokenizer(["where is my [MASK] ?"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert tokenizer.mask_token_id in batch["input_ids"][0].tolist()
    assert logits.shape == (1, batch["input_ids"].shape[1], len(tokenizer))


def test_focal_loss_is_cross_entropy_at_gamma_zero_and_discounts_easy_examples():
    torch.manual_seed(0)
    logits, labels = torch.randn(16, 5) * 3, torch.randint(0, 5, (16,))
    assert float(focal_loss(logits, labels, 0.0)) == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-6)
    assert float(focal_loss(logits, labels, 2.0)) < float(F.cross_entropy(logits, labels))
    confident, label = torch.tensor([[8.0, 0.0]]), torch.tensor([0])
    assert float(focal_loss(confident, label, 2.0)) < 1e-3 * float(F.cross_entropy(confident, label))


def test_full_classifier_with_focal_loss_keeps_label_names(mlm_dir, labelled, tiny_config, tmp_path):
    from transformers import AutoConfig

    config = tiny_config(*ENCODER, "finetune.mode=full", "classifier.loss=focal")
    summary = finetune_classifier(*labelled, tmp_path, config.model, config.classifier, config.finetune, config.train,
                                  base_dir=mlm_dir, report_to_mlflow=False)
    labels = sorted(labelled[0]["label"].unique())
    assert summary.trainable_parameters == summary.parameters and summary.eval_loss is not None
    assert AutoConfig.from_pretrained(tmp_path / "merged").label2id == {name: i for i, name in enumerate(labels)}
    predicted = predict_labels(tmp_path / "merged", None, list(labelled[1]["text"][:12]))
    assert len(predicted) == 12 and set(predicted) <= set(labels)


def test_lora_classifier_adapter_and_merged_model_give_the_same_logits(mlm_dir, labelled, tiny_config, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config = tiny_config(*ENCODER, "finetune.target_modules=[query,value]")
    summary = finetune_classifier(*labelled, tmp_path, config.model, config.classifier, config.finetune, config.train,
                                  base_dir=mlm_dir, report_to_mlflow=False)
    assert 0 < summary.trainable_parameters < summary.parameters
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    fresh = AutoModelForSequenceClassification.from_pretrained(mlm_dir, id2label=merged.config.id2label)
    adapted = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    batch = AutoTokenizer.from_pretrained(tmp_path / "merged")(list(labelled[1]["text"][:4]), padding=True,
                                                               return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, adapted(**batch).logits, atol=1e-5)
    assert predict_labels(merged, AutoTokenizer.from_pretrained(tmp_path / "merged"), ["refund please"])[0] in \
        set(labelled[0]["label"])


def test_bad_classifier_setups_fail_before_training(labelled, tiny_config, tmp_path):
    config = tiny_config(*ENCODER)
    with pytest.raises(ConfigError, match="finetune.mode must be full to train a classifier from a randomly"):
        finetune_classifier(*labelled, tmp_path, config.model, config.classifier, config.finetune, config.train,
                            report_to_mlflow=False)
    train, val = labelled
    with pytest.raises(DataError, match=r"validation label\(s\) \['brand-new'\] never occur in the train split"):
        finetune_classifier(train, val.assign(label="brand-new"), tmp_path, config.model, config.classifier,
                            report_to_mlflow=False)
    assert not any(tmp_path.iterdir())


def test_a_compacted_base_with_out_of_scope_rows_abstains_and_keeps_its_best_checkpoint(
        mlm_dir, labelled, tiny_config, tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    out = labelled[0]["label"].iloc[0]  # one category plays the out-of-scope questions
    train, val = (frame.assign(label=frame["label"].where(frame["label"] != out, "oos")) for frame in labelled)
    config = tiny_config(*ENCODER, f"model.base={mlm_dir}", "model.prune_vocab=true", "model.keep_layers=1",
                         "model.max_seq_len=48", "finetune.mode=full", "finetune.max_steps=-1", "finetune.epochs=2",
                         "train.best_metric=accuracy", "train.early_stopping_patience=1", "classifier.oos_label=oos")
    summary = finetune_classifier(train, val, tmp_path, config.model, config.classifier, config.finetune,
                                  config.train, report_to_mlflow=False)
    saved = AutoConfig.from_pretrained(tmp_path / "merged")
    assert "oos" not in saved.label2id and saved.oos_label == "oos" and isinstance(saved.oos_threshold, float)
    assert saved.num_hidden_layers == 1 and saved.max_position_embeddings == 48
    assert saved.vocab_size == len(AutoTokenizer.from_pretrained(tmp_path / "merged"))
    assert saved.vocab_size < AutoConfig.from_pretrained(mlm_dir).vocab_size
    assert summary.best_checkpoint is not None and summary.eval_loss is not None
    predicted = predict_labels(tmp_path / "merged", None, list(val["text"][:20]))
    assert set(predicted) <= set(train["label"])


def test_compacting_needs_full_fine_tuning(mlm_dir, labelled, tiny_config, tmp_path):
    config = tiny_config(*ENCODER, f"model.base={mlm_dir}", "model.prune_vocab=true", "finetune.mode=lora")
    with pytest.raises(ConfigError, match="^finetune.mode must be full to compact the base"):
        finetune_classifier(*labelled, tmp_path, config.model, config.classifier, config.finetune, config.train,
                            report_to_mlflow=False)
