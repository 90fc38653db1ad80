"""Presets build real transformers models whose size matches the README table's formula."""

from __future__ import annotations

import pytest

from compactlm.errors import ConfigError
from compactlm.models.presets import PRESETS, build_decoder, get_preset


@pytest.mark.parametrize("name", ["decoder-tiny", "decoder-micro"])
def test_decoder_parameter_count_matches_formula(name: str):
    model = build_decoder(name, vocab_size=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    assert sum(p.numel() for p in model.parameters()) == PRESETS[name].approx_params(512)
    assert model.config.tie_word_embeddings
    assert model.config.max_position_embeddings == PRESETS[name].max_position_embeddings


def test_presets_span_about_1m_to_100m_parameters():
    sizes = {n: p.approx_params(8192) for n, p in PRESETS.items() if p.kind == "decoder" and n != "decoder-tiny"}
    assert min(sizes.values()) < 2_000_000 and 80_000_000 < max(sizes.values()) < 120_000_000


def test_unknown_preset_and_wrong_kind_fail_clearly():
    with pytest.raises(ConfigError, match="model.preset must be one of .* got 'decoder-huge'"):
        get_preset("decoder-huge")
    with pytest.raises(ConfigError, match="is an encoder"):
        build_decoder("encoder-tiny", 512, 0, 1, 2)


def test_readme_preset_table_matches_the_presets():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| (\w+-\w+) \| (decoder|encoder) \| ([\d.]+)M \| (\d+) \| (\d+) \|", readme, re.M)
    assert {r[0] for r in rows} == set(PRESETS)
    for name, kind, millions, layers, width in rows:
        preset = PRESETS[name]
        assert (kind, int(layers), int(width)) == (preset.kind, preset.num_layers, preset.hidden_size)
        assert float(millions) == round(preset.approx_params(8192) / 1e6, 1)


@pytest.mark.parametrize("name", ["encoder-tiny", "encoder-mini"])
def test_encoder_presets_build_bert_models_close_to_the_formula(name: str):
    from compactlm.models.presets import build_encoder

    mlm = build_encoder(name, vocab_size=512, pad_token_id=0)
    classifier = build_encoder(name, vocab_size=512, pad_token_id=0, head="classification",
                               id2label={0: "negative", 1: "positive"})
    assert type(mlm).__name__ == "BertForMaskedLM" and mlm.config.tie_word_embeddings
    assert type(classifier).__name__ == "BertForSequenceClassification"
    assert classifier.config.id2label == {0: "negative", 1: "positive"} and classifier.num_labels == 2
    counted = sum(p.numel() for p in mlm.parameters())
    assert abs(counted - PRESETS[name].approx_params(512)) / counted < 0.05  # heads and norms are not in the formula
    assert mlm.config.max_position_embeddings == PRESETS[name].max_position_embeddings


def test_dropout_reaches_the_architecture_and_kinds_are_checked():
    from compactlm.models.presets import build_encoder

    assert build_decoder("decoder-tiny", 512, 0, 1, 2, dropout=0.1).config.attention_dropout == 0.1
    assert build_encoder("encoder-tiny", 512, 0, dropout=0.2).config.hidden_dropout_prob == 0.2
    assert build_encoder("encoder-tiny", 512, 0).config.hidden_dropout_prob == 0.1  # BERT's own default
    with pytest.raises(ConfigError, match="is a decoder"):
        build_encoder("decoder-tiny", 512, 0)
    with pytest.raises(ConfigError, match="needs at least one label"):
        build_encoder("encoder-tiny", 512, 0, head="classification")


def test_the_benchmark_preset_is_about_10m_parameters():
    assert 9_000_000 < PRESETS["decoder-10m"].approx_params(8192) < 11_000_000
    assert PRESETS["decoder-10m"].hidden_size // PRESETS["decoder-10m"].num_heads == 64
