"""The fast engine against transformers itself: same logits, same greedy tokens, under continuous batching."""

from __future__ import annotations

import pytest
import torch
from helpers import PROMPTS, hf_greedy, prompt_ids

from compactlm.errors import InvalidRequestError, UnsupportedModelError
from compactlm.serving.engine.generation import GenerationEngine
from compactlm.serving.engine.sampling import SamplingParams, TextTracker, select_tokens
from compactlm.serving.engine.weights import check_supported


@pytest.mark.parametrize("kv_heads", [None, 2], ids=["mha", "gqa"])
def test_greedy_tokens_equal_transformers_generate_under_continuous_batching(make_decoder, tokenizer, kv_heads):
    model = make_decoder(seed=1, kv_heads=kv_heads)
    assert model.config.num_key_value_heads == (kv_heads or model.config.num_attention_heads)
    budgets = [24, 9, 30, 3, 17]  # different lengths: rows finish, move and get reused mid-flight
    prompts = [prompt_ids(tokenizer, p) for p in PROMPTS]
    expected = [hf_greedy(model, ids, n, tokenizer.eos_token_id) for ids, n in zip(prompts, budgets)]
    engine = GenerationEngine.from_hf(model, tokenizer, max_batch_size=2)
    done = engine.generate(prompts, [SamplingParams(max_tokens=n) for n in budgets])
    assert [c.token_ids for c in done] == expected
    assert all(c.finish_reason == ("length" if len(c.token_ids) == n else "stop") for c, n in zip(done, budgets))
    assert not engine.busy and engine.free_rows == 2


@pytest.mark.parametrize("kv_heads", [None, 2], ids=["mha", "gqa"])
def test_prefill_and_decode_logits_match_transformers(make_decoder, tokenizer, kv_heads):
    model = make_decoder(seed=2, kv_heads=kv_heads)
    engine = GenerationEngine.from_hf(model, tokenizer, max_batch_size=4)
    short, long = prompt_ids(tokenizer, PROMPTS[2]), prompt_ids(tokenizer, PROMPTS[1])
    with torch.inference_mode():
        reference = model(torch.tensor([long])).logits[0]
        ours = engine.decoder.forward([short, long], all_logits=True)[1, :len(long)]  # right-padded batch
        assert torch.allclose(ours, reference, atol=1e-4), (ours - reference).abs().max()
        # Decode step by step from a prefilled prefix; each step's logits equal the full forward's.
        engine.decoder.forward([long[:5]], first_row=0)
        for pos in range(5, len(long) - 4):
            step = engine.decoder.decode([long[pos]], [pos])[0]
            assert torch.allclose(step, reference[pos], atol=1e-4)
        # Several tokens per row at once (speculative verification), rows at different positions.
        end = len(long) - 4
        engine.decoder.forward([short[:3]], first_row=1)
        multi = engine.decoder.decode([long[end:end + 4], short[3:7]], [end, 3])
        assert torch.allclose(multi[0], reference[end:end + 4], atol=1e-4)
        short_reference = model(torch.tensor([short[:7]])).logits[0, 3:7]
        assert torch.allclose(multi[1], short_reference, atol=1e-4)


@pytest.mark.parametrize("scheme", ["fp32", "int8"])
def test_rotary_folded_into_the_weights_or_applied_per_step_gives_the_same_logits(make_decoder, tokenizer, scheme):
    from compactlm.serving.engine import native
    from compactlm.serving.engine.decoder import FastDecoder
    from compactlm.serving.engine.weights import DecoderWeights, quantize_decoder

    model = make_decoder(seed=3, kv_heads=2)
    weights = quantize_decoder(DecoderWeights.from_hf(model), scheme)
    folded, plain = (FastDecoder(weights, max_batch_size=2, fold_rotary=fold) for fold in (True, False))
    assert folded.fold_rotary and not plain.fold_rotary
    assert FastDecoder(weights, max_batch_size=1, native_glue=False).fold_rotary  # a tiny model folds by default...
    assert FastDecoder(weights, max_batch_size=1).fold_rotary == (native.library() is None)  # ...without the glue
    ids = prompt_ids(tokenizer, PROMPTS[1])
    with torch.inference_mode():
        assert torch.allclose(folded.forward([ids], all_logits=True), plain.forward([ids], all_logits=True), atol=1e-4)
        for decoder in (folded, plain):
            decoder.forward([ids[:6]], first_row=0)
        for pos in range(6, 10):
            assert torch.allclose(folded.decode([ids[pos]], [pos]), plain.decode([ids[pos]], [pos]), atol=1e-4)
        multi = [decoder.decode([ids[10:13]], [10]) for decoder in (folded, plain)]
        assert torch.allclose(multi[0], multi[1], atol=1e-4)
    if scheme == "fp32":  # and both equal transformers
        reference = model(torch.tensor([ids])).logits[0]
        assert torch.allclose(plain.forward([ids], all_logits=True)[0], reference, atol=1e-4)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_fp32_lm_head_keeps_one_table_when_tied_and_matches_transformers(make_decoder, tokenizer, tied):
    model = make_decoder(seed=3)
    if not tied:  # a separate LM head, drawn like the other matrices
        from transformers import LlamaForCausalLM

        model.config.tie_word_embeddings = False
        untied = LlamaForCausalLM(model.config)
        untied.load_state_dict(model.state_dict(), strict=False)
        with torch.no_grad():
            untied.lm_head.weight.normal_(0.0, 0.2)
        model = untied.eval()
        assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    decoder = GenerationEngine.from_hf(model, tokenizer, max_batch_size=2).decoder
    vocab, hidden = model.config.vocab_size, model.config.hidden_size
    if tied:  # the embedding lookup and the LM head read the same [hidden, vocab] table: no second copy
        assert decoder.embed is None and decoder._embed_t.shape == (hidden, vocab)
        assert decoder._head.weight_t.data_ptr() == decoder._embed_t.data_ptr()
    else:
        assert decoder.embed.shape == (vocab, hidden) and decoder._head.weight_t.shape == (hidden, vocab)
    ids = prompt_ids(tokenizer, PROMPTS[1])
    with torch.inference_mode():
        reference = model(torch.tensor([ids])).logits[0]
        assert torch.allclose(decoder.forward([ids], all_logits=True)[0], reference, atol=1e-4)
        decoder.forward([ids[:4]], first_row=0)
        assert torch.allclose(decoder.decode([ids[4]], [4])[0], reference[4], atol=1e-4)


def test_stop_sequences_cut_the_text_and_streamed_deltas_add_up(tiny_model, tokenizer):
    engine = GenerationEngine.from_hf(tiny_model, tokenizer, max_batch_size=4)
    ids = prompt_ids(tokenizer, PROMPTS[0])
    (free,) = engine.generate([ids], SamplingParams(max_tokens=40))
    stop = free.text[10:13]
    assert len(stop) == 3 and free.text.find(stop) >= 0
    seq = engine.sequence(ids, SamplingParams(max_tokens=40, stop=(stop, "never-appears")), stream=True)
    engine.add(seq)
    pieces = []
    while not seq.finished:
        engine.step()
        pieces.append(seq.delta())
    assert seq.completion().text == free.text[:free.text.find(stop)]
    assert seq.finish_reason == "stop" and "".join(pieces) == seq.completion().text
    assert stop not in "".join(pieces)


def test_text_tracker_holds_back_partial_stop_strings(tokenizer):
    tracker = TextTracker(tokenizer, stop=("END",))
    ids = tokenizer("hello E", add_special_tokens=False)["input_ids"]
    tracker.update(ids)
    assert tracker.delta() == "hello "  # "E" may start "END"
    tracker.update(tokenizer("hello EN", add_special_tokens=False)["input_ids"])
    assert tracker.delta() == ""
    tracker.update(tokenizer("hello ENX", add_special_tokens=False)["input_ids"])
    assert tracker.delta() == "ENX" and not tracker.stopped
    tracker.update(tokenizer("hello ENX END more", add_special_tokens=False)["input_ids"])
    assert tracker.stopped and tracker.text == "hello ENX " and tracker.delta() == " "


def test_seeded_sampling_is_reproducible_and_top_p_near_zero_is_greedy(tiny_model, tokenizer):
    engine = GenerationEngine.from_hf(tiny_model, tokenizer, max_batch_size=4)
    ids = prompt_ids(tokenizer, PROMPTS[3])
    sampled = SamplingParams(max_tokens=20, temperature=1.0, seed=7)
    first, again, other = engine.generate([ids] * 3, [sampled, sampled, SamplingParams(max_tokens=20,
                                                                                       temperature=1.0, seed=8)])
    assert first.token_ids == again.token_ids and first.token_ids != other.token_ids
    (greedy,) = engine.generate([ids], SamplingParams(max_tokens=20))
    (nucleus,) = engine.generate([ids], SamplingParams(max_tokens=20, temperature=1.5, top_p=1e-6, seed=3))
    assert nucleus.token_ids == greedy.token_ids


def test_select_tokens_suppresses_eos_until_min_tokens():
    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0]])
    picks = select_tokens(logits.clone(), [SamplingParams(), SamplingParams()], [None, None], [1, -1],
                          torch.Generator().manual_seed(0))
    assert picks == [2, 1]


def test_min_tokens_forces_the_length(tiny_model, tokenizer):
    engine = GenerationEngine.from_hf(tiny_model, tokenizer, max_batch_size=2)
    (done,) = engine.generate([prompt_ids(tokenizer, PROMPTS[0])], SamplingParams(max_tokens=50, min_tokens=50))
    assert done.completion_tokens == 50 and done.finish_reason == "length"


def test_context_limit_is_checked_and_reached_as_length(tiny_model, tokenizer):
    engine = GenerationEngine.from_hf(tiny_model, tokenizer, max_batch_size=2, max_seq_len=32)
    ids = prompt_ids(tokenizer, PROMPTS[1])[:20]
    with pytest.raises(InvalidRequestError, match="exceeds the context of 32 tokens") as info:
        engine.sequence(ids, SamplingParams(max_tokens=13))
    assert info.value.param == "max_tokens"
    with pytest.raises(InvalidRequestError, match="at most 31 fit"):
        engine.sequence(list(range(3, 35)), SamplingParams(max_tokens=1))
    (done,) = engine.generate([ids], SamplingParams(max_tokens=12, min_tokens=12))
    assert done.completion_tokens == 12 and done.prompt_tokens + done.completion_tokens == 32


def test_cancelled_sequences_free_their_rows(tiny_model, tokenizer):
    engine = GenerationEngine.from_hf(tiny_model, tokenizer, max_batch_size=2)
    seqs = [engine.sequence(prompt_ids(tokenizer, p), SamplingParams(max_tokens=50, min_tokens=50))
            for p in PROMPTS[:2]]
    for seq in seqs:
        engine.add(seq)
    engine.step()
    seqs[0].cancelled = True
    engine.step()
    assert seqs[0].finish_reason == "cancelled" and engine.free_rows == 1 and seqs[1].row == 0
    while engine.busy:
        engine.step()
    assert seqs[1].completion().completion_tokens == 50


@pytest.mark.parametrize(("change", "fragment"), [
    ({"attention_bias": True}, "attention_bias=True"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"model_type": "gpt2"}, "model_type='gpt2'"),
])
def test_unsupported_architectures_are_refused_by_name(tiny_model, change, fragment):
    from copy import deepcopy

    config = deepcopy(tiny_model.config)
    for key, value in change.items():
        setattr(config, key, value)
    with pytest.raises(UnsupportedModelError, match="Llama-style") as info:
        check_supported(config)
    assert fragment in str(info.value)


@pytest.mark.parametrize("params", [SamplingParams(temperature=1.5e-71), SamplingParams(temperature=1.0, top_p=5e-324)])
def test_vanishing_temperature_or_top_p_sample_the_top_token(params):
    # Found by schemathesis: both values are 0 in float32 and made the distribution NaN or empty.
    picks = select_tokens(torch.tensor([[0.5, 3.0, -1.0]]), [params], [None], None, torch.Generator())
    assert picks == [1]


def test_speculative_decoding_returns_exactly_the_greedy_tokens(make_decoder, tokenizer):
    model = make_decoder(seed=3)
    prompts = [prompt_ids(tokenizer, p) for p in PROMPTS]
    expected = [hf_greedy(model, ids, 20, tokenizer.eos_token_id) for ids in prompts]
    engine = GenerationEngine.from_hf(model, tokenizer, max_batch_size=2, speculative_tokens=6)
    assert engine.generate(prompts, SamplingParams(max_tokens=20))[0].token_ids == expected[0]
    # Second pass: the drafter now proposes the previous answers, so whole drafts are accepted.
    again = engine.generate(prompts, SamplingParams(max_tokens=20))
    assert [c.token_ids for c in again] == expected
    assert engine.stats["verify_steps"] > 0 and engine.stats["accepted"] >= 20
    # EOS suppression (min_tokens) also holds inside verified drafts.
    with torch.inference_mode():
        forced = model.generate(torch.tensor([prompts[0]]), max_new_tokens=30, min_new_tokens=30, do_sample=False,
                                pad_token_id=0, eos_token_id=tokenizer.eos_token_id)[0, len(prompts[0]):].tolist()
    for _ in range(2):
        (done,) = engine.generate([prompts[0]], SamplingParams(max_tokens=30, min_tokens=30))
        assert done.token_ids == forced


def test_suffix_drafter_proposes_what_followed_the_longest_match():
    from compactlm.serving.engine.speculative import SuffixDrafter

    drafter = SuffixDrafter(max_ngram=3, min_ngram=2, prompt_tail=2)
    assert drafter.draft([1, 2, 3], 4) == []
    drafter.add([90, 91, 92], [10, 11, 12, 13, 14])
    drafter.add([90, 91, 92], [10, 11, 20, 21])
    assert drafter.draft([91, 92], 3) == [10, 11, 20]  # the prompt tail drafts an answer's opening (latest wins)
    assert drafter.draft([5, 11, 12], 5) == [13, 14]  # stops at the end of that answer
    assert drafter.draft([7, 8], 3) == []
    small = SuffixDrafter(max_tokens=20, prompt_tail=0)
    for start in range(0, 40, 5):
        small.add([], list(range(start, start + 5)))
    assert len(small) <= 20 and small.draft([36, 37], 2) == [38, 39] and small.draft([1, 2], 2) == []


def test_sampled_rows_share_a_speculative_step_with_greedy_ones(make_decoder, tokenizer):
    model = make_decoder(seed=4)
    prompts = [prompt_ids(tokenizer, p) for p in PROMPTS[:3]]
    sampled = SamplingParams(max_tokens=15, temperature=0.8, seed=11)
    plain = GenerationEngine.from_hf(model, tokenizer, max_batch_size=4, speculative_tokens=0)
    alone = plain.generate([prompts[2]], sampled)[0].token_ids
    greedy = [c.token_ids for c in plain.generate(prompts[:2], SamplingParams(max_tokens=15))]
    engine = GenerationEngine.from_hf(model, tokenizer, max_batch_size=4, speculative_tokens=6)
    engine.generate(prompts[:2], SamplingParams(max_tokens=15))  # warm the drafter with the greedy answers
    mixed = engine.generate(prompts, [SamplingParams(max_tokens=15), SamplingParams(max_tokens=15), sampled])
    assert engine.stats["accepted"] > 0
    assert [c.token_ids for c in mixed] == [*greedy, alone]


@pytest.mark.parametrize("shard", [None, "200KB"], ids=["one-file", "sharded"])
def test_safetensors_are_read_layer_by_layer_into_the_same_weights_as_the_model(make_decoder, tmp_path, shard):
    import gc
    from pathlib import Path

    from compactlm.serving.engine.weights import DecoderWeights

    model = make_decoder(seed=4, kv_heads=2)
    model.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    assert (tmp_path / "model.safetensors.index.json").is_file() == bool(shard)
    ours = DecoderWeights.from_safetensors(tmp_path, model.config)
    reference = DecoderWeights.from_hf(model)
    for name, weight in reference.named_weights().items():
        assert torch.equal(ours.named_weights()[name], weight), name
    assert torch.equal(ours.final_norm, reference.final_norm)
    with pytest.raises(FileNotFoundError):
        DecoderWeights.from_safetensors(tmp_path / "missing", model.config)
    from compactlm.serving.engine.weights import quantize_decoder

    del ours
    int8 = DecoderWeights.from_safetensors(tmp_path, model.config, "int8")  # quantized layer by layer
    # no tensor is left viewing the file's memory map (one would keep every page read from it resident)
    gc.collect()
    assert str(tmp_path) not in Path("/proc/self/maps").read_text()
    expected = quantize_decoder(reference, "int8")
    assert int8.scheme == "int8"
    for name, weight in expected.named_weights().items():
        assert torch.equal(int8.named_weights()[name].q, weight.q), name
