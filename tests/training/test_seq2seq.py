"""Seq2seq fine-tuning of a tiny locally built T5: document -> summary, adapter and merged model agree."""

from __future__ import annotations

import pytest
import torch

from compactlm.errors import ConfigError
from compactlm.models.tokenizer import train_bpe_tokenizer
from compactlm.training.seq2seq import finetune_seq2seq, seq2seq_dataset


@pytest.fixture(scope="module")
def t5_dir(splits, tmp_path_factory):
    """A randomly initialised 2-layer, width-32 T5 saved with a BPE tokenizer, as a user's base would be."""
    from transformers import T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("t5")
    texts = list(splits[0]["instruction"]) + list(splits[0]["response"])
    tok = train_bpe_tokenizer(texts, 400, 128)
    config = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def documents(splits):
    return tuple(frame.assign(document=frame["instruction"] + " " + frame["response"],
                              summary=frame["response"].str.slice(0, 50)) for frame in splits)


def test_sources_carry_the_prefix_and_both_sides_end_with_eos(t5_dir, documents):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(t5_dir)
    dataset = seq2seq_dataset(documents[1].head(5), tok, 32)
    assert tok.decode(dataset["input_ids"][0]).startswith("summarize: ")
    for ids, labels in zip(dataset["input_ids"], dataset["labels"]):
        assert len(ids) <= 32 and ids[-1] == tok.eos_token_id and labels[-1] == tok.eos_token_id


def test_lora_seq2seq_trains_and_the_merged_model_reproduces_the_adapter(t5_dir, documents, tiny_config, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM

    config = tiny_config(f"model.base={t5_dir}", "model.max_seq_len=64", "finetune.target_modules=[auto]")
    summary = finetune_seq2seq(t5_dir, *documents, tmp_path, config.model, config.finetune, config.train,
                               report_to_mlflow=False)
    assert summary.steps == 4 and summary.eval_loss is not None
    assert 0 < summary.trainable_parameters < summary.parameters
    merged = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "merged").eval()
    adapted = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(t5_dir), tmp_path / "adapter").eval()
    inputs = torch.tensor([[5, 6, 7, 8, 2]])
    decoder = torch.tensor([[0, 9, 10]])
    with torch.no_grad():
        diff = (merged(input_ids=inputs, decoder_input_ids=decoder).logits
                - adapted(input_ids=inputs, decoder_input_ids=decoder).logits).abs().max().item()
    assert diff < 1e-5


def test_llama_module_names_are_not_t5_targets(t5_dir, documents, tiny_config, tmp_path):
    config = tiny_config(f"model.base={t5_dir}")
    with pytest.raises(ConfigError, match=r"finetune.target_modules \[.*'q_proj'.*\] are not modules of the model "
                                          r"\(linear layers: .*'q'.*\)"):
        finetune_seq2seq(t5_dir, *documents, tmp_path, config.model, config.finetune, config.train,
                         report_to_mlflow=False)
