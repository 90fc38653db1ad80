"""Token datasets: packing without padding, and loss masks covering only the response."""

from __future__ import annotations

import pandas as pd

from compactlm.models.tokenizer import format_prompt, train_bpe_tokenizer
from compactlm.training.encoding import IGNORE_INDEX, corpus_texts, encode_instruction_pairs, pack_documents

FRAME = pd.DataFrame({"instruction": ["Where is my order?", "Cancel it please"],
                      "response": ["It ships tomorrow.", "Done, it is cancelled."]})


def _tokenizer():
    return train_bpe_tokenizer(corpus_texts(FRAME) * 20, vocab_size=300, model_max_length=64)


def test_packing_cuts_full_blocks_with_bos_and_eos():
    tok = _tokenizer()
    ds = pack_documents(corpus_texts(FRAME) * 10, tok, block_size=16)
    assert all(len(ids) == 16 for ids in ds["input_ids"])
    assert ds["input_ids"] == ds["labels"]
    flat = [t for block in ds["input_ids"] for t in block]
    assert flat[0] == tok.bos_token_id and tok.eos_token_id in flat


def test_only_response_tokens_and_eos_carry_loss():
    tok = _tokenizer()
    encoded = encode_instruction_pairs(FRAME, tok, max_length=64)
    for row, (ids, labels) in enumerate(zip(encoded["input_ids"], encoded["labels"])):
        prompt_len = 1 + len(tok(format_prompt(FRAME.instruction[row]), add_special_tokens=False)["input_ids"])
        assert labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
        assert labels[prompt_len:] == ids[prompt_len:]
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids[prompt_len:-1]) == FRAME.response[row]


def test_long_rows_are_cut_to_max_length():
    tok = _tokenizer()
    encoded = encode_instruction_pairs(FRAME, tok, max_length=8)
    assert all(len(ids) == 8 for ids in encoded["input_ids"])


CHATML = ("{% for message in messages %}{{ '<|bos|>' + message['role'] + '\\n' + message['content'] + '<|eos|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|bos|>assistant\\n' }}{% endif %}")


def test_a_pretrained_chat_model_is_trained_in_its_own_template_without_an_extra_bos():
    from compactlm.models.tokenizer import has_own_chat_template, prompt_start_ids, render_prompt
    from compactlm.training.encoding import encode_prompt_completion, supervised_pairs

    tok = _tokenizer()
    assert not has_own_chat_template(tok) and prompt_start_ids(tok) == [tok.bos_token_id]
    tok.chat_template = CHATML  # a ChatML-style model whose template opens with its BOS, like SmolLM2
    assert has_own_chat_template(tok) and prompt_start_ids(tok) == []
    assert render_prompt("Where is my order?", tok) == "<|bos|>user\nWhere is my order?<|eos|>\n<|bos|>assistant\n"
    # Prompt/completion columns rendered at ingest hold CompactLM's format: the instruction is re-rendered.
    frame = FRAME.assign(prompt=[format_prompt(i) for i in FRAME["instruction"]], completion=FRAME["response"])
    prompts, completions = supervised_pairs(frame, tokenizer=tok)
    assert prompts[0].startswith("<|bos|>user\n") and completions == list(FRAME["response"])
    assert supervised_pairs(frame)[0][0] == format_prompt("Where is my order?")
    encoded = encode_prompt_completion(prompts, completions, tok, max_length=64)
    ids = encoded["input_ids"][0]
    assert ids.count(tok.bos_token_id) == 2 and ids[0] == tok.bos_token_id  # the template's two, no extra one
    assert ids[-1] == tok.eos_token_id
