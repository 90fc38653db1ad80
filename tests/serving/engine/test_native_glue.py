"""The compiled batch-1 decode glue (compactlm.serving.engine.native) against the torch ops it replaces."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from helpers import PROMPTS, prompt_ids

from compactlm.serving.engine import native
from compactlm.serving.engine.decoder import FastDecoder
from compactlm.serving.engine.weights import DecoderWeights, quantize_decoder


def test_the_glue_builds_here():
    # CI and the demo machines are x86-64 Linux with gcc: the fast path must really be on there, not skipped
    assert native.library() is not None, native.status()
    assert native.status().startswith("on (")


@pytest.mark.parametrize("kv_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("scheme", ["fp32", "int8", "int4"])
def test_batch_one_decode_through_the_glue_is_as_accurate_as_the_torch_ops(make_decoder, tokenizer, scheme, kv_dtype):
    model = make_decoder(seed=5, kv_heads=2)  # grouped-query attention: 4 query heads on 2 KV heads
    fp32 = DecoderWeights.from_hf(model)
    weights = quantize_decoder(fp32, scheme)
    glued, plain = (FastDecoder(weights, max_batch_size=2, kv_cache_dtype=kv_dtype, native_glue=flag, fold_rotary=False)
                    for flag in (None, False))
    truth = FastDecoder(fp32, max_batch_size=1, native_glue=False)  # fp32 weights, fp32 cache, torch ops
    assert glued._glue is not None and plain._glue is None
    assert glued.glue_status.startswith("compiled glue (") and plain.glue_status.startswith("torch ops (")
    ids = prompt_ids(tokenizer, PROMPTS[2])

    def error(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a - b).norm() / b.norm()).item()

    with torch.inference_mode():
        for decoder in (glued, plain, truth):
            decoder.forward([ids[:5]], first_row=0)
        for pos in range(5, len(ids)):  # teacher-forced: all see the same tokens; the cache grows past a chunk
            a, b, t = (decoder.decode([ids[pos]], [pos]) for decoder in (glued, plain, truth))
            assert a.shape == b.shape == (1, model.config.vocab_size)
            if scheme == "fp32" and kv_dtype == "float32":
                assert error(a, b) < 1e-5  # float rounding only
            else:  # quantized weights or a bf16 cache: as close to the fp32 result as the torch ops get
                assert error(a, t) <= 1.25 * error(b, t) + 2e-3, (pos, error(a, t), error(b, t))
        # the cache the glue wrote (k after RoPE, v as is) is the cache the torch ops wrote
        length = len(ids)
        for k_glued, k_plain in zip(glued.cache.keys, plain.cache.keys):
            assert error(k_glued[0, :, :length].float(), k_plain[0, :, :length].float()) < 3e-2
        # a verification step (several tokens) keeps the torch path and reads the glue's cache
        assert glued.decode([[ids[3], ids[4]]], [3]).shape == (1, 2, model.config.vocab_size)


def test_decoding_matches_transformers_greedy_through_the_glue(make_decoder, tokenizer):
    model = make_decoder(seed=6, kv_heads=2)
    decoder = FastDecoder(DecoderWeights.from_hf(model), max_batch_size=1)
    assert decoder._glue is not None
    ids = prompt_ids(tokenizer, PROMPTS[0])
    with torch.inference_mode():
        reference = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id)[0, len(ids):].tolist()
        token = decoder.forward([ids], first_row=0).argmax(-1).item()
        ours = [token]
        for pos in range(len(ids), len(ids) + 11):
            token = decoder.decode([token], [pos]).argmax(-1).item()
            ours.append(token)
    assert len(reference) >= 8 and ours[:len(reference)] == reference  # transformers stops at EOS, we do not


def test_the_glue_can_be_turned_off_by_the_environment():
    code = ("from compactlm.serving.engine import native; import sys; "
            "sys.exit(0 if native.library() is None and 'COMPACTLM_NATIVE_GLUE=0' in native.status() else 1)")
    env = {"COMPACTLM_NATIVE_GLUE": "0", "PATH": "/usr/bin:/bin"}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode == 0
