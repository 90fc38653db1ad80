"""Compacting a pretrained encoder: pruned vocabulary, trimmed positions, dropped layers, same predictions."""

from __future__ import annotations

import pytest
import torch

from compactlm.errors import ConfigError
from compactlm.models.compress import compact_encoder, keep_layers, layers_to_keep, prune_vocabulary
from compactlm.models.tokenizer import train_wordpiece_tokenizer

CORPUS = ["where is my order", "i want a refund for my parcel", "cancel my subscription please",
          "the delivery arrived damaged", "how do i change my address", "what is my account balance",
          "transfer money to my savings", "book a table for two tonight"] * 10
TASK = ["where is my refund", "cancel my order please"]


@pytest.fixture
def encoder():
    """A tiny BERT classifier (2 layers, width 32) with a WordPiece tokenizer: a stand-in for a pretrained base."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = train_wordpiece_tokenizer(CORPUS, 300, 128)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2,
                        pad_token_id=tokenizer.pad_token_id)
    return BertForSequenceClassification(config).eval(), tokenizer


def _logits(model, tokenizer, texts):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_pruning_keeps_the_tokens_the_texts_use_and_the_same_predictions(encoder):
    model, tokenizer = encoder
    before = _logits(model, tokenizer, TASK)
    tokens_before = [tokenizer.convert_ids_to_tokens(tokenizer(t)["input_ids"]) for t in TASK]
    model, small = prune_vocabulary(model, tokenizer, TASK)
    assert len(small) < len(tokenizer) and model.get_input_embeddings().num_embeddings == len(small)
    assert [small.convert_ids_to_tokens(small(t)["input_ids"]) for t in TASK] == tokens_before
    assert torch.allclose(_logits(model, small, TASK), before, atol=1e-6)
    spelt = small.convert_ids_to_tokens(small("bypass")["input_ids"])  # unseen words still split into pieces
    assert "[UNK]" not in spelt and spelt[0] == "[CLS]"


def test_compacting_trims_positions_and_drops_layers(encoder, tmp_path):
    model, tokenizer = encoder
    model, small = compact_encoder(model, tokenizer, TASK, prune_vocab=True, keep=2, max_seq_len=16)
    assert model.config.max_position_embeddings == 16 and model.config.num_hidden_layers == 2
    assert len(model.bert.encoder.layer) == 2 and small.model_max_length == 16
    model.save_pretrained(tmp_path)
    small.save_pretrained(tmp_path)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert torch.allclose(_logits(reloaded, again, TASK), _logits(model.eval(), small, TASK), atol=1e-6)


def test_layer_choice_keeps_the_first_and_last_and_bad_counts_fail(encoder):
    assert layers_to_keep(6, 5) == [0, 1, 2, 4, 5] and layers_to_keep(6, 1) == [0]
    assert layers_to_keep(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match=r"model.keep_layers must be in \[1, 4\]"):
        keep_layers(encoder[0], 7)
