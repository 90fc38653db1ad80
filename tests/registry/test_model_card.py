"""The model card describes the model that was trained (architecture, tokenizer, fine-tuning, base), per shape."""

from __future__ import annotations

import pytest

from compactlm.config import load_config
from compactlm.models.presets import build_decoder, build_encoder
from compactlm.models.tokenizer import train_bpe_tokenizer, train_wordpiece_tokenizer
from compactlm.registry.model_card import build_model_card
from compactlm.shapes import SHAPES

TEXTS = ["where is my order", "i want a refund for my parcel", "cancel my subscription please",
         "the delivery arrived damaged", "how do i change my address"] * 20


def _decoder(folder):
    tok = train_bpe_tokenizer(TEXTS, 300, 64)
    model = build_decoder("decoder-tiny", len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def _classifier(folder):
    tok = train_wordpiece_tokenizer(TEXTS, 300, 64)
    build_encoder("encoder-tiny", len(tok), tok.pad_token_id, "classification",
                  id2label={0: "order", 1: "refund"}).save_pretrained(folder)
    tok.save_pretrained(folder)


def _t5(folder):
    from transformers import T5Config, T5ForConditionalGeneration

    tok = train_bpe_tokenizer(TEXTS, 300, 64)
    config = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)


# shape, overrides, model builder, stages that ran, what the card must say, what it must not say
CASES = [
    ("instruction", [], _decoder, ["pretrain", "finetune"],
     ["Llama-style decoder", "byte-level BPE", "LoRA r=16, alpha=32", "decoder preset pretrained here"],
     ["WordPiece", "classification"]),
    ("chat", ["finetune.mode=full"], _decoder, ["pretrain", "finetune"],
     ["Llama-style decoder", "full fine-tuning (every weight)", "Multi-turn"], ["LoRA r="]),
    ("classification", ["finetune.mode=full", "model.preset=encoder-tiny"], _classifier, ["finetune-classifier"],
     ["BERT-style encoder with a sequence-classification head", "WordPiece", "full fine-tuning",
      "initialised at random", "Routing customer-support messages"], ["Llama", "byte-level BPE", "LoRA r="]),
    ("classification", ["finetune.mode=full", "model.preset=encoder-tiny", "distill.teacher=baseline"], _classifier,
     ["finetune-classifier"], ["full fine-tuning (every weight) (finetune-classifier), distilled from teacher "
                               "`baseline` (alpha=0.5, T=2.0)"], ["distilled here from the teacher"]),
    ("summarization", ["model.base=/models/t5-small"], _t5, ["finetune-seq2seq"],
     ["T5 encoder-decoder (seq2seq)", "LoRA r=16", "`/models/t5-small` (tokenizer from the base)",
      "Summarizing support tickets"], ["Llama", "WordPiece"]),
    ("pretraining", [], _decoder, ["pretrain"],
     ["Llama-style decoder", "byte-level BPE", "decoder preset pretrained here", "A base language model"],
     ["LoRA r=", "WordPiece", "classification"]),
]


@pytest.mark.parametrize(("shape", "overrides", "build", "stages", "expected", "absent"), CASES,
                         ids=[case[0] for case in CASES])
def test_the_card_describes_the_trained_model(tmp_path, shape, overrides, build, stages, expected, absent):
    build(tmp_path)
    config = load_config(overrides=[f"data.task={shape}", *overrides])
    card = build_model_card(model_name="m", version="3", config=config, model_dir=tmp_path, stages=stages,
                            data={"dataset": "d"}, training={s: {"train_loss": 1.0} for s in stages},
                            metrics={"rouge_l": 0.5}, dataset_bias={"audited": False}, gate_markdown="# Promotion gate",
                            lineage={"git_commit": "abc"})
    details = card.split("## Intended use")[0]
    for fragment in expected:
        assert fragment in card, fragment
    for fragment in absent:
        assert fragment not in details, fragment
    assert SHAPES[shape].card.limitations in card


def test_every_shape_has_a_card_case():
    assert {case[0] for case in CASES} == set(SHAPES)


def test_a_base_converted_from_gguf_is_named_with_its_file_hash_and_quantization(tmp_path):
    import json

    from compactlm.registry.model_card import describe_training
    from compactlm.registry.registration import gguf_tags

    folder = tmp_path / "converted"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "gguf_source.json").write_text(json.dumps({
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "sha256": "ab" * 32, "quantization": "Q4_1",
        "note": "weights dequantized from the GGUF file's Q4_1 quantization to float32: not the original weights"}))
    config = load_config(overrides=[f"model.base={folder}"])
    base = describe_training(config, ["finetune"])["base"]
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in base and "Q4_1" in base and "not the original" in base
    assert gguf_tags(str(folder)) == {"base_gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
                                      "base_gguf_sha256": "ab" * 32, "base_gguf_quantization": "Q4_1"}
    assert gguf_tags(None) == {} and gguf_tags(str(tmp_path)) == {}
