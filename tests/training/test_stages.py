"""Which stages each task shape runs, by configuration alone (no training here)."""

from __future__ import annotations

import pytest

from compactlm.config import load_config
from compactlm.errors import ConfigError
from compactlm.training.stages import plan_retrain, plan_stages


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Saved (random) models whose kind the planner reads from their config: a Llama and a T5."""
    from transformers import T5Config, T5ForConditionalGeneration

    from compactlm.models.presets import build_decoder

    root = tmp_path_factory.mktemp("bases")
    build_decoder("decoder-tiny", 300, 0, 1, 2).save_pretrained(root / "llama")
    T5ForConditionalGeneration(T5Config(vocab_size=300, d_model=16, d_kv=4, d_ff=32, num_layers=1,
                                        num_heads=2)).save_pretrained(root / "t5")
    return root


@pytest.mark.parametrize(("overrides", "stages"), [
    ([], ["pretrain", "finetune"]),
    (["data.task=chat"], ["pretrain", "finetune"]),
    (["finetune.enabled=false"], ["pretrain"]),
    (["distill.teacher=/models/teacher"], ["distill", "finetune"]),
    (["model.base={bases}/llama"], ["finetune"]),
    (["data.task=summarization"], ["pretrain", "finetune"]),
    (["data.task=classification", "model.preset=encoder-mini"], ["finetune-classifier"]),
    (["data.task=classification", "model.preset=encoder-mini", "classifier.mlm_pretrain=true"],
     ["pretrain-mlm", "finetune-classifier"]),
    (["data.task=classification", "model.preset=encoder-mini", "distill.teacher=baseline"],  # no causal distill
     ["finetune-classifier"]),
    (["data.task=pretraining"], ["pretrain"]),
    (["data.task=pretraining", "model.preset=encoder-tiny"], ["pretrain-mlm"]),
])
def test_each_task_shape_plans_its_stages(overrides, stages, bases):
    assert plan_stages(load_config(overrides=[o.format(bases=bases) for o in overrides])) == stages


def test_a_seq2seq_base_summarizes_with_the_seq2seq_path_and_a_shared_base_skips_pretraining(bases):
    config = load_config(overrides=["data.task=summarization", f"model.base={bases}/t5"])
    assert plan_stages(config) == ["finetune-seq2seq"]
    assert plan_stages(load_config(), base_dir="/shared/base") == ["finetune"]
    classification = load_config(overrides=["data.task=classification", "model.preset=encoder-tiny",
                                            "classifier.mlm_pretrain=true"])
    assert plan_stages(classification, base_dir="/shared/mlm") == ["finetune-classifier"]


def test_the_retrain_flow_pretrains_decoders_and_points_encoders_to_launch():
    decoder = load_config(overrides=["data.task=pretraining"])
    assert plan_retrain(decoder) == ["pretrain"]
    encoder = load_config(overrides=["data.task=pretraining", "model.preset=encoder-tiny"])
    assert plan_stages(encoder) == ["pretrain-mlm"]  # launch still trains it
    with pytest.raises(ConfigError, match=r"encoder-tiny.*compactlm.training.launch"):
        plan_retrain(encoder)
