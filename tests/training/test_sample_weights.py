"""Reweighing sample weights in instruction fine-tuning: the weighted loss, and a weighted LoRA run."""

from __future__ import annotations

import math

import pytest
import torch

from compactlm.config import load_config
from compactlm.models.presets import build_decoder
from compactlm.models.tokenizer import train_bpe_tokenizer
from compactlm.training.causal import (
    _weighted_trainer_class,
    finetune_causal,
    pretrain_decoder,
    weighted_causal_lm_loss,
)
from compactlm.training.encoding import corpus_texts, padding_collator, supervised_dataset

CFG = load_config(overrides=["model.preset=decoder-tiny", "model.vocab_size=400", "model.max_seq_len=64",
                             "train.max_steps=4", "train.batch_size=8", "finetune.max_steps=4", "finetune.batch_size=8",
                             "finetune.r=4", "finetune.alpha=8"])


@pytest.fixture(scope="module")
def setup(tiny_frame, tmp_path_factory):
    """A tokenizer, a tiny random decoder, a padded batch of 6 rows, and a Trainer of each kind."""
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    rows = tiny_frame[tiny_frame["instruction"].str.len() < 60].iloc[:6]  # short: no row loses its response
    tokenizer = train_bpe_tokenizer(corpus_texts(tiny_frame), 400, 64)
    model = build_decoder("decoder-tiny", len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                          tokenizer.eos_token_id).eval()
    dataset = supervised_dataset(rows[["instruction", "response"]].assign(sample_weight=1.0), tokenizer, 64)
    batch = padding_collator(tokenizer)([dataset[i] for i in range(len(dataset))])
    args = TrainingArguments(output_dir=str(tmp_path_factory.mktemp("args")), use_cpu=True, report_to=[],
                             per_device_eval_batch_size=6, remove_unused_columns=False)
    plain = Trainer(model=model, args=args, eval_dataset=dataset, processing_class=tokenizer)
    weighted = _weighted_trainer_class()(model=model, args=args, eval_dataset=dataset, processing_class=tokenizer)
    return model, batch, plain, weighted


def loss_of(trainer, batch, weights=None) -> float:
    inputs = {k: v.clone() for k, v in batch.items() if k != "sample_weight"}
    if weights is not None:
        inputs["sample_weight"] = torch.tensor(weights, dtype=torch.float32)
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, inputs))


def test_the_collator_carries_the_weights_into_the_batch(setup):
    _, batch, _, _ = setup
    assert batch["sample_weight"].shape == (6,) and torch.all(batch["sample_weight"] == 1.0)
    assert batch["input_ids"].shape == batch["labels"].shape


def test_equal_weights_reproduce_the_unweighted_loss(setup):
    _, batch, plain, weighted = setup
    unweighted = loss_of(plain, batch)
    assert math.isfinite(unweighted) and unweighted > 0
    assert loss_of(weighted, batch, [1.0] * 6) == pytest.approx(unweighted, rel=1e-6)
    assert loss_of(weighted, batch, [2.5] * 6) == pytest.approx(unweighted, rel=1e-6)  # only ratios matter
    assert loss_of(weighted, batch) == pytest.approx(unweighted, rel=1e-6)  # no weights: the Trainer's own loss


def test_weights_change_the_loss_as_a_weighted_token_mean(setup):
    model, batch, plain, weighted = setup
    skewed = loss_of(weighted, batch, [5.0, 1.0, 1.0, 1.0, 1.0, 0.1])
    assert skewed != pytest.approx(loss_of(plain, batch), rel=1e-4)
    # Weight 1 on the first example and 0 elsewhere: exactly that example's own mean token loss.
    only_first = loss_of(weighted, batch, [1.0, 0, 0, 0, 0, 0])
    first = {k: v[:1] for k, v in batch.items() if k != "sample_weight"}
    assert only_first == pytest.approx(loss_of(plain, first), rel=1e-5)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    direct = weighted_causal_lm_loss(logits, batch["labels"], torch.tensor([5.0, 1.0, 1.0, 1.0, 1.0, 0.1]))
    assert float(direct) == pytest.approx(skewed, rel=1e-6)


def test_lora_fine_tuning_trains_on_weighted_rows(tiny_frame, tmp_path):
    train, val = tiny_frame.iloc[:300], tiny_frame.iloc[300:360]
    weights = [3.0 if band == "65+" else 0.8 for band in train["age_band"]]
    pretrain_decoder(train, val, tmp_path / "base", CFG.model, CFG.train, report_to_mlflow=False)
    tuned = finetune_causal(tmp_path / "base", train.assign(sample_weight=weights), val.assign(sample_weight=1.0),
                          tmp_path / "ft", CFG.model, CFG.finetune, report_to_mlflow=False)
    assert tuned.steps == 4 and math.isfinite(tuned.train_loss) and tuned.eval_loss is not None
    assert (tmp_path / "ft" / "merged" / "model.safetensors").is_file()
