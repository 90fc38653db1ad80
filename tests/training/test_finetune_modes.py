"""Fine-tuning modes and machinery: full fine-tuning, summarization pairs with packing, early stopping with
the best checkpoint and gradient checkpointing, and the CPU refusals (QLoRA, fp16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compactlm.errors import ConfigError
from compactlm.training.causal import finetune_causal, pretrain_decoder
from compactlm.training.encoding import IGNORE_INDEX, supervised_dataset


def _summaries(frame):
    """Summarization rows whose documents are longer than the 64-token context."""
    return frame.assign(document=frame["instruction"] + " " + frame["response"] + " " + frame["response"],
                        summary=frame["response"].str.slice(0, 40))[["document", "summary"]]


def test_full_fine_tuning_trains_every_weight_and_ships_one_model(base_dir, splits, tmp_path, tiny_config):
    from transformers import AutoModelForCausalLM

    config = tiny_config("finetune.mode=full", "finetune.learning_rate=0.01")
    summary = finetune_causal(base_dir, *splits, tmp_path, config.model, config.finetune, config.train,
                              report_to_mlflow=False)
    assert summary.trainable_parameters == summary.parameters and summary.steps == 4
    assert not (tmp_path / "adapter").exists() and summary.output_dir == str(tmp_path / "merged")
    tuned = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    changed = [n for n, p in tuned.named_parameters() if not torch.equal(p, base.get_parameter(n))]
    assert len(changed) == len(list(base.parameters()))  # every tensor moved, not just an adapter


def test_summaries_survive_long_documents_and_sft_packing_fills_blocks(base_dir, splits, tmp_path, tiny_config):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    rows = _summaries(splits[1]).head(20)
    kept = supervised_dataset(rows, tokenizer, 64, keep_completion=True)
    cut = supervised_dataset(rows, tokenizer, 64)
    assert len(kept) == 20 and all(len(ids) <= 64 for ids in kept["input_ids"])
    for ids, labels in zip(kept["input_ids"], kept["labels"]):
        assert ids[-1] == tokenizer.eos_token_id and labels[-1] == tokenizer.eos_token_id  # the summary is whole
        assert labels[0] == IGNORE_INDEX and ids[0] == tokenizer.bos_token_id
    assert len(cut) < len(kept)  # cutting at the end drops summaries behind long documents

    config = tiny_config("finetune.pack_train=true", "finetune.max_steps=2")
    summary = finetune_causal(base_dir, _summaries(splits[0]), _summaries(splits[1]), tmp_path, config.model,
                              config.finetune, config.train, keep_completion=True, report_to_mlflow=False)
    assert summary.steps == 2 and summary.eval_loss is not None
    assert summary.train_tokens == 2 * 8 * 64  # packed: every row is a full block


def test_early_stopping_ends_on_the_best_checkpoint_with_gradient_checkpointing(splits, tmp_path, tiny_config):
    from safetensors.torch import load_file

    # A learning rate of 1 makes the loss diverge, so validation stops improving after the first evaluations.
    config = tiny_config("train.max_steps=40", "train.learning_rate=1.0", "train.lr_scheduler=constant",
                         "train.warmup_ratio=0", "train.eval_steps=2", "train.save_steps=2",
                         "train.early_stopping_patience=1", "train.save_total_limit=1",
                         "train.gradient_checkpointing=true", "train.pack_eval=false")
    summary = pretrain_decoder(*splits, tmp_path, config.model, config.train, report_to_mlflow=False)
    assert summary.steps < 40 and summary.best_checkpoint is not None
    best = Path(summary.best_checkpoint)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [best.name]  # the limit keeps the best one
    state = json.loads((best / "trainer_state.json").read_text())
    assert summary.eval_loss == pytest.approx(state["best_metric"])
    assert summary.eval_loss == pytest.approx([h["eval_loss"] for h in state["log_history"] if "eval_loss" in h][-1])
    assert int(best.name.split("-")[1]) < summary.steps  # the later evaluations were worse
    final, kept = load_file(tmp_path / "model.safetensors"), load_file(best / "model.safetensors")
    assert all(torch.equal(final[name], kept[name]) for name in kept)  # the saved model is the best one


def test_qlora_and_fp16_fail_before_any_compute_on_cpu(base_dir, splits, tmp_path, tiny_config):
    config = tiny_config("finetune.quantize_4bit=true")
    with pytest.raises(ConfigError, match=r"^finetune.quantize_4bit needs a CUDA device with bitsandbytes; this run is "
                                          r"on the cpu"):
        finetune_causal(base_dir, *splits, tmp_path / "q", config.model, config.finetune, config.train,
                        report_to_mlflow=False)
    config = tiny_config("train.precision=fp16")
    with pytest.raises(ConfigError, match=r"^train.precision 'fp16' needs a CUDA device"):
        pretrain_decoder(*splits, tmp_path / "p", config.model, config.train, report_to_mlflow=False)
    assert not (tmp_path / "q").exists() and not (tmp_path / "p").exists()
