"""Pretraining and LoRA fine-tuning of a tiny preset for a few steps, end to end on the CPU."""

from __future__ import annotations

import math

import pytest
import torch

from compactlm.config import load_config
from compactlm.errors import ConfigError
from compactlm.training.causal import finetune_causal, pretrain_decoder
from compactlm.training.runner import resolve_device

CFG = load_config(overrides=["model.preset=decoder-tiny", "model.vocab_size=400", "model.max_seq_len=64",
                             "train.max_steps=8", "train.batch_size=8", "train.logging_steps=2",
                             "finetune.max_steps=6", "finetune.batch_size=8", "finetune.r=4", "finetune.alpha=8"])


@pytest.fixture(scope="module")
def trained(tiny_frame, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    train, val = tiny_frame.iloc[:500], tiny_frame.iloc[500:]
    base = pretrain_decoder(train, val, root / "base", CFG.model, CFG.train, report_to_mlflow=False)
    tuned = finetune_causal(root / "base", train, val, root / "ft", CFG.model, CFG.finetune, report_to_mlflow=False)
    return root, base, tuned, val


def test_pretraining_saves_a_loadable_model_and_tokenizer(trained):
    root, base, _, _ = trained
    assert base.steps == 8 and math.isfinite(base.train_loss) and base.eval_loss is not None
    assert base.parameters == base.trainable_parameters > 0
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (root / "base" / name).is_file()


def test_lora_trains_only_the_adapter_and_saves_adapter_and_merged(trained):
    root, base, tuned, _ = trained
    assert tuned.steps == 6
    assert 0 < tuned.trainable_parameters < tuned.parameters
    assert (root / "ft" / "adapter" / "adapter_config.json").is_file()
    assert (root / "ft" / "merged" / "model.safetensors").is_file()
    assert tuned.output_dir == str(root / "ft" / "merged")


def test_merged_model_reproduces_the_adapter_model_outputs(trained):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, _, _, val = trained
    tok = AutoTokenizer.from_pretrained(root / "ft" / "merged")
    ids = torch.tensor([tok(val.instruction.iloc[0], add_special_tokens=False)["input_ids"][:20]])
    merged = AutoModelForCausalLM.from_pretrained(root / "ft" / "merged").eval()
    base = AutoModelForCausalLM.from_pretrained(root / "base")
    adapted = PeftModel.from_pretrained(base, root / "ft" / "adapter").eval()
    with torch.no_grad():
        diff = (merged(ids).logits - adapted(ids).logits).abs().max().item()
    assert diff < 1e-4


def test_unknown_lora_target_fails_before_training(trained, tiny_frame, tmp_path):
    root = trained[0]
    bad = load_config(overrides=["finetune.target_modules=[q_proj,attn_c]"]).finetune
    with pytest.raises(ConfigError, match=r"finetune.target_modules \['attn_c'\] are not modules of the model"):
        finetune_causal(root / "base", tiny_frame, tiny_frame, tmp_path, CFG.model, bad, report_to_mlflow=False)
    assert not (tmp_path / "adapter").exists()


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
