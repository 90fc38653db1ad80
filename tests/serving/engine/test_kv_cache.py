"""The KV cache allocated by need: it grows in chunks, stays exact across chunk boundaries, obeys its budget
(requests wait or are refused with the numbers) and is handed back when the server idles."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
import torch
from helpers import PROMPTS, hf_greedy, prompt_ids

from compactlm.config import ServeConfig
from compactlm.errors import ConfigError, InvalidRequestError
from compactlm.serving.engine.decoder import FastDecoder
from compactlm.serving.engine.generation import GenerationEngine
from compactlm.serving.engine.kv_cache import MIB, KVCache
from compactlm.serving.engine.loading import load_model
from compactlm.serving.engine.sampling import SamplingParams
from compactlm.serving.engine.scheduler import Scheduler
from compactlm.serving.engine.weights import DecoderWeights
from compactlm.serving.http.app import create_app

TOKEN = 2 * 2 * 4 * 16 * 4  # decoder-tiny: layers x (k, v) x kv_heads x head_dim x fp32 = 1 KiB per position


def engine_for(model, tokenizer, chunk: int = 16, budget_tokens: int = 0, **kwargs) -> GenerationEngine:
    """An engine on ``model`` whose cache grows in ``chunk``-token steps, within ``budget_tokens`` positions."""
    decoder = FastDecoder(DecoderWeights.from_hf(model), kwargs.pop("max_batch_size", 4),
                          kv_cache_mb=budget_tokens * TOKEN / MIB, cache_chunk=chunk)
    decoder.warmup()
    return GenerationEngine(decoder, tokenizer, **kwargs)


def test_bytes_per_token_and_growth_from_nothing(tiny_model, tokenizer):
    engine = engine_for(tiny_model, tokenizer, max_batch_size=32)
    cache = engine.decoder.cache
    assert cache.bytes_per_token == TOKEN and cache.nbytes == 0  # warmed up, then handed back
    prompts = [prompt_ids(tokenizer, p) for p in PROMPTS[:3]]
    for ids in prompts:
        engine.add(engine.sequence(ids, SamplingParams(max_tokens=40, min_tokens=40)))
    engine.step()
    first = -(-(max(map(len, prompts)) + 1) // 16) * 16  # the longest prompt + 1, rounded up to the chunk
    assert (cache.rows, cache.length) == (8, first)  # 3 rows rounded up to 8
    lengths = {cache.length}
    while engine.busy:
        engine.step()
        lengths.add(cache.length)
    assert sorted(lengths) == list(range(first, cache.length + 1, 16)) and cache.length >= first + 32
    assert cache.rows == 8 and cache.nbytes <= 8 * (first + 48) * TOKEN  # preallocated: 32 x 256 positions
    engine.release_cache()
    assert cache.nbytes == 0 and [k.numel() for k in cache.keys] == [0, 0]


def test_cache_keeps_content_when_it_grows_shrinks_and_moves_rows():
    cache = KVCache(num_layers=2, kv_heads=2, head_dim=4, max_rows=32, max_length=100, chunk=16)
    cache.reserve(3, 10)
    assert (cache.rows, cache.length) == (8, 16)
    cache.keys[1][2, :, :10] = 7.0
    cache.values[0][2, :, :5] = 3.0
    cache.reserve(9, 40)  # grow both axes, in chunks; content copied
    assert (cache.rows, cache.length) == (16, 48)
    assert (cache.keys[1][2, :, :10] == 7.0).all() and (cache.keys[1][2, :, 10:] == 0).all()
    cache.move_row(2, 0, 10)
    assert (cache.keys[1][0, :, :10] == 7.0).all() and (cache.values[0][0, :, :5] == 3.0).all()
    cache.fit(1, 12)  # holds over twice the need: shrinks, keeping row 0's first 12 positions
    assert (cache.rows, cache.length) == (8, 16) and (cache.keys[1][0, :, :10] == 7.0).all()
    cache.fit(2, 97)  # the context bounds the rounding (112 -> 100)
    assert cache.length == 100 and cache.nbytes == cache.rows * 100 * cache.bytes_per_token


def test_budget_bounds_rounding_and_refuses_what_cannot_fit():
    cache = KVCache(num_layers=2, kv_heads=4, head_dim=16, max_rows=32, max_length=256,
                    budget_bytes=100 * TOKEN, chunk=16)
    assert cache.max_tokens == 96 and cache.fits(1, 96) and not cache.fits(1, 97) and not cache.fits(2, 64)
    cache.reserve(1, 40)
    assert (cache.rows, cache.length) == (2, 48)  # rows rounded up only as far as the budget allows
    assert cache.sequences_within_budget(32) == 3 and cache.describe(32)["mib_per_sequence"] == round(32 / 1024, 2)
    with pytest.raises(ConfigError, match=r"serve.kv_cache_mb=.* holds less than one sequence of 16 tokens"):
        KVCache(2, 4, 16, 4, 256, budget_bytes=10 * TOKEN, chunk=16)


@pytest.mark.parametrize("kv_heads", [None, 2], ids=["mha", "gqa"])
def test_greedy_output_is_unchanged_across_chunk_boundaries(make_decoder, tokenizer, kv_heads):
    model = make_decoder(seed=5, kv_heads=kv_heads)
    budgets = [37, 5, 50, 19, 28]  # prompts of ~8-25 tokens: rows cross 16, 32, 48 and 64 at different steps
    prompts = [prompt_ids(tokenizer, p) for p in PROMPTS]
    expected = [hf_greedy(model, ids, n, tokenizer.eos_token_id) for ids, n in zip(prompts, budgets)]
    params = [SamplingParams(max_tokens=n) for n in budgets]
    for chunk in (16, 7):
        engine = engine_for(model, tokenizer, chunk=chunk, max_batch_size=3)
        assert [c.token_ids for c in engine.generate(prompts, params)] == expected
        assert engine.decoder.cache.nbytes == 0  # generate hands the cache back at the end
    speculative = engine_for(model, tokenizer, chunk=16, max_batch_size=3, speculative_tokens=6)
    speculative.generate(prompts, params)  # the drafter learns the answers; the second pass verifies drafts
    assert [c.token_ids for c in speculative.generate(prompts, params)] == expected
    assert speculative.stats["accepted"] > 0


def test_request_larger_than_the_budget_is_refused_with_the_numbers(tiny_model, tokenizer):
    engine = engine_for(tiny_model, tokenizer, budget_tokens=64)
    ids = prompt_ids(tokenizer, PROMPTS[1])
    with pytest.raises(InvalidRequestError) as info:
        engine.sequence(ids, SamplingParams(max_tokens=70))
    message = str(info.value)
    assert info.value.param == "max_tokens"
    assert f"max_tokens=70 plus the prompt's {len(ids)} tokens needs 0.1 MiB of KV cache (1.0 KiB per token)" in message
    assert "serve.kv_cache_mb=0.0625, holds at most 64 tokens per sequence" in message
    assert "raise serve.kv_cache_mb" in message
    with pytest.raises(InvalidRequestError, match="holds at most 64 tokens") as prompt_error:
        engine.sequence(list(range(3, 70)), SamplingParams(max_tokens=1))
    assert prompt_error.value.param == "prompt"
    engine.sequence(ids, SamplingParams(max_tokens=64 - len(ids)))  # exactly the budget: accepted


def test_with_room_for_two_sequences_five_requests_all_complete(tiny_model, tokenizer):
    prompts = [prompt_ids(tokenizer, p) for p in PROMPTS]
    params = SamplingParams(max_tokens=20, min_tokens=20)  # prompts of 13-47 tokens: 48 to 80 positions each
    alone = engine_for(tiny_model, tokenizer, max_batch_size=8).generate(prompts, params)
    engine = engine_for(tiny_model, tokenizer, budget_tokens=160, max_batch_size=8, speculative_tokens=0)
    seqs = [engine.sequence(ids, params) for ids in prompts]
    engine.add(seqs[0])
    engine.add(seqs[1])
    assert engine.free_rows == 6 and not engine.can_admit(seqs[2])
    with pytest.raises(RuntimeError, match="check can_admit"):
        engine.add(seqs[2])
    engine.pending.clear()
    steps: list[tuple[int, int]] = []  # (sequences decoded, cache bytes) per step
    scheduler = Scheduler(engine, max_queue=8, idle_release_s=0.05,
                          on_step=lambda n: steps.append((n, engine.decoder.cache.nbytes))).start()

    async def run():
        return await asyncio.gather(*(h.result() for h in scheduler.submit_many(seqs)))

    try:
        done = asyncio.run(run())
        assert max(n for n, _ in steps) == 2 and len(steps) >= 3 * 19  # queued (3 waves), not failed
        assert max(size for _, size in steps) <= 160 * TOKEN
        assert [c.token_ids for c in done] == [c.token_ids for c in alone]
        deadline = time.monotonic() + 10
        while engine.decoder.cache.nbytes and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.decoder.cache.nbytes == 0  # idle: the cache was handed back
    finally:
        scheduler.close()
    again = engine.generate(prompts, params)  # offline use waits for rows in the same way
    assert [c.token_ids for c in again] == [c.token_ids for c in alone]


def test_server_queues_what_does_not_fit_and_says_what_never_will(tiny_model_dir, start_server):
    # 0.2 MiB = 204 positions of decoder-tiny: one 128-position sequence at a time, none over 128 tokens.
    config = ServeConfig(threads=0, max_batch_size=8, kv_cache_mb=0.2)
    loaded = load_model(model_dir=tiny_model_dir, max_batch_size=8, kv_cache_mb=0.2)
    live = start_server(create_app(config, preloaded=loaded))
    ready = httpx.get(f"{live.url}/ready").json()["model"]["kv_cache"]
    assert ready["bytes_per_token"] == TOKEN and ready["budget_mib"] == 0.2 and ready["sequences_within_budget"] == 0
    body = {"model": loaded.model_id, "prompt": "Where is my order?", "max_tokens": 30, "min_tokens": 30,
            "temperature": 0}

    async def burst():
        async with httpx.AsyncClient(base_url=live.url, timeout=120) as client:
            return await asyncio.gather(*(client.post("/v1/completions", json=body) for _ in range(4)))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 4
    assert all(r.json()["usage"]["completion_tokens"] == 30 for r in responses)
    with pytest.raises(openai.BadRequestError) as info:
        live.client().completions.create(model=loaded.model_id, prompt="Where is my order?", max_tokens=150)
    assert info.value.body["param"] == "max_tokens" and "serve.kv_cache_mb=0.2" in info.value.body["message"]
    assert "holds at most 128 tokens per sequence" in info.value.body["message"]


def test_kv_cache_mb_is_validated_in_one_line():
    with pytest.raises(ConfigError, match=r"serve.kv_cache_mb"):
        ServeConfig(kv_cache_mb=-1)
    assert ServeConfig().kv_cache_mb == 1024.0


def test_decoder_rope_tables_grow_with_the_positions_used(tiny_model):
    decoder = FastDecoder(DecoderWeights.from_hf(tiny_model), 2, cache_chunk=16)
    assert decoder._cos.shape[0] == 0
    with torch.inference_mode():
        decoder.forward([[1, 2, 3]], first_row=0)
    assert decoder._cos.shape[0] == 16 and decoder.cache.length == 16


def test_bfloat16_cache_halves_the_memory_and_keeps_the_logits(make_decoder, tokenizer):
    """``serve.kv_cache_dtype=bfloat16``: half the bytes per token, attention in bf16 over the cache, logits
    within bf16 rounding of the fp32 cache's (teacher-forced on the same tokens, plain and multi-token steps)."""
    model = make_decoder(seed=5, kv_heads=2)
    weights = DecoderWeights.from_hf(model)
    exact = FastDecoder(weights, 4, cache_chunk=16)
    half = FastDecoder(weights, 4, cache_chunk=16, kv_cache_dtype="bfloat16")
    assert half.cache.bytes_per_token * 2 == exact.cache.bytes_per_token
    assert half.cache.describe()["dtype"] == "bfloat16" and "KV cache (bfloat16)" in half.cache.summary()
    prompts = [prompt_ids(tokenizer, p) for p in PROMPTS[:3]]
    positions = [len(ids) for ids in prompts]
    with torch.inference_mode():
        for decoder in (exact, half):
            decoder.forward(prompts, first_row=0)
        assert half.cache.keys[0].dtype == torch.bfloat16 and exact.cache.keys[0].dtype == torch.float32
        agree = total = 0
        for step in range(24):
            tokens = [(7 * step + 3 * r) % 200 + 5 for r in range(3)]
            a, b = exact.decode(tokens, positions), half.decode(tokens, positions)
            assert (a - b).abs().max().item() < 0.05 * a.abs().max().item()
            agree += int((a.argmax(-1) == b.argmax(-1)).sum())
            total += 3
            positions = [p + 1 for p in positions]
        drafts = [[11, 12, 13]] * 3  # a speculative verification step: 3 tokens per row
        a, b = exact.decode(drafts, positions), half.decode(drafts, positions)
        assert a.shape == b.shape == (3, 3, a.shape[-1])
        assert (a - b).abs().max().item() < 0.05 * a.abs().max().item()
    assert agree >= 0.9 * total


def test_kv_cache_dtype_is_validated_in_one_line():
    assert ServeConfig(kv_cache_dtype="BF16").kv_cache_dtype == "bfloat16"
    assert ServeConfig().kv_cache_dtype == "float32"
    with pytest.raises(ConfigError, match=r"serve.kv_cache_dtype.*float16"):
        ServeConfig(kv_cache_dtype="float16")
    with pytest.raises(ConfigError, match="not torch.float16"):
        KVCache(2, 2, 4, 4, 64, dtype=torch.float16)


def test_heap_retention_is_limited_unless_the_user_set_glibc_s_threshold(monkeypatch):
    import platform

    from compactlm.serving.engine.kv_cache import MMAP_THRESHOLD, limit_heap_retention

    if platform.libc_ver()[0] == "glibc":
        assert limit_heap_retention(MMAP_THRESHOLD) is True
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert limit_heap_retention() is False  # the user's setting wins
