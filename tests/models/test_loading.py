"""Any Hugging Face model as a base: local folders of each kind, clear one-line errors otherwise."""

from __future__ import annotations

import pytest
import torch

from compactlm.errors import ConfigError
from compactlm.models.loading import check_seq_len, detect_kind, load_base, load_model_config
from compactlm.models.presets import build_decoder, build_encoder
from compactlm.models.tokenizer import train_bpe_tokenizer, train_wordpiece_tokenizer

TEXTS = ["Where is my order?", "I want a refund, please.", "Cancel my subscription today."] * 40


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A saved decoder, encoder and T5 (each with a tokenizer), as a user's local HF folders would be."""
    from transformers import T5Config, T5ForConditionalGeneration

    root = tmp_path_factory.mktemp("bases")
    bpe = train_bpe_tokenizer(TEXTS, 300, 64)
    decoder = build_decoder("decoder-tiny", len(bpe), bpe.pad_token_id, bpe.bos_token_id, bpe.eos_token_id)
    decoder.save_pretrained(root / "decoder")
    bpe.save_pretrained(root / "decoder")
    wordpiece = train_wordpiece_tokenizer(TEXTS, 200, 64)
    build_encoder("encoder-tiny", len(wordpiece), wordpiece.pad_token_id).save_pretrained(root / "encoder")
    wordpiece.save_pretrained(root / "encoder")
    t5 = T5Config(vocab_size=len(bpe), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                  decoder_start_token_id=bpe.pad_token_id, pad_token_id=bpe.pad_token_id, eos_token_id=bpe.eos_token_id)
    T5ForConditionalGeneration(t5).save_pretrained(root / "t5")
    bpe.save_pretrained(root / "t5")
    return root


def test_each_kind_loads_from_a_local_folder_with_its_head(folders):
    causal, tok = load_base(str(folders / "decoder"), "causal")
    assert type(causal).__name__ == "LlamaForCausalLM" and tok.pad_token is not None
    seq2seq, _ = load_base(str(folders / "t5"), "seq2seq")
    assert type(seq2seq).__name__ == "T5ForConditionalGeneration"
    mlm, wordpiece = load_base(str(folders / "encoder"), "encoder")
    assert type(mlm).__name__ == "BertForMaskedLM" and wordpiece.mask_token == "[MASK]"
    classifier, _ = load_base(str(folders / "encoder"), "classifier", id2label={0: "no", 1: "yes", 2: "maybe"})
    assert classifier.config.label2id == {"no": 0, "yes": 1, "maybe": 2}
    with torch.no_grad():
        logits = classifier(**wordpiece(["Where is my order?"], return_tensors="pt")).logits
    assert logits.shape == (1, 3)


def test_kinds_are_detected_from_the_saved_config(folders):
    assert detect_kind(load_model_config(str(folders / "decoder"))) == "causal"
    assert detect_kind(load_model_config(str(folders / "t5"))) == "seq2seq"
    assert detect_kind(load_model_config(str(folders / "encoder"))) == "encoder"


def test_an_uncached_hub_id_fails_in_one_line_while_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as error:
        load_base("compactlm-tests/never-downloaded-model", "causal")
    message = str(error.value)
    assert message.startswith("model.base 'compactlm-tests/never-downloaded-model': not a local folder and the "
                              "Hugging Face hub is offline") and "\n" not in message


def test_missing_folders_wrong_heads_and_long_sequences_are_config_errors(folders, tmp_path):
    with pytest.raises(ConfigError, match=r"model.base '/no/such/model/dir': no such model folder"):
        load_base("/no/such/model/dir", "causal")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no saved transformers model"):
        load_base(str(tmp_path / "empty"), "causal")
    with pytest.raises(ConfigError, match="is a t5 model, which has no causal head"):
        load_base(str(folders / "t5"), "causal")
    with pytest.raises(ConfigError, match=r"model.max_seq_len must be in \[8, 256\] \(the base's positions\), got 512"):
        load_base(str(folders / "decoder"), "causal", max_seq_len=512)
    check_seq_len(load_model_config(str(folders / "t5")), 100_000)  # relative positions: no limit


def test_a_base_skips_the_preset_position_check_in_the_config():
    from compactlm.config import load_config

    config = load_config(overrides=["model.base=some/model", "model.max_seq_len=4096"])
    assert config.model.base == "some/model" and config.model.max_seq_len == 4096
    with pytest.raises(ConfigError, match=r"model.max_seq_len must be in \[8, 256\]"):
        load_config(overrides=["model.preset=decoder-tiny", "model.max_seq_len=4096"])
