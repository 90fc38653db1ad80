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


def test_earlier_turns_of_a_chat_row_are_rendered_in_the_models_own_template():
    """A multi-turn row's ``context`` (CompactLM's format, written at ingest) becomes messages of the
    pretrained model's chat template, so SmolLM2 trains and is scored on conversations in its own format."""
    from compactlm.data.chat import render_messages
    from compactlm.models.tokenizer import EOS, parse_chat, render_prompt
    from compactlm.training.encoding import supervised_pairs

    earlier = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is my order?"},
               {"role": "assistant", "content": "It ships tomorrow."}]
    context = render_messages(earlier)
    assert context.endswith(f"It ships tomorrow.{EOS}\n") and parse_chat(context) == earlier
    assert parse_chat("") == [] and parse_chat(" \n") == []
    frame = pd.DataFrame({"context": [context, ""], "instruction": ["Can you cancel it?", "Hi"],
                          "response": ["Done.", "Hello!"]})
    frame = frame.assign(prompt=[c + format_prompt(i) for c, i in zip(frame["context"], frame["instruction"])],
                         completion=frame["response"])
    assert supervised_pairs(frame)[0][0] == context + format_prompt("Can you cancel it?")  # CompactLM's format
    tok = _tokenizer()
    tok.chat_template = CHATML
    prompts, completions = supervised_pairs(frame, tokenizer=tok)
    assert prompts[0] == ("<|bos|>system\nBe brief.<|eos|>\n<|bos|>user\nWhere is my order?<|eos|>\n"
                          "<|bos|>assistant\nIt ships tomorrow.<|eos|>\n<|bos|>user\nCan you cancel it?<|eos|>\n"
                          "<|bos|>assistant\n")
    assert prompts[1] == render_prompt("Hi", tok) and completions == ["Done.", "Hello!"]
    import pytest

    with pytest.raises(ValueError, match="not a CompactLM-rendered conversation"):
        render_prompt("Hi", tok, context="User: hello")
