"""Where a decode step's time goes: the engine's batch-1 (or batch-N) decode on a real model, profiled.

Loads a model folder into the serving engine's ``FastDecoder`` (the weights ``compactlm serve`` runs) at
each precision, prefills one prompt, then times ``--steps`` plain decode steps (no speculation, no HTTP,
no sampling beyond argmax) with ``--threads`` torch threads, and runs the same steps under the torch
profiler (``torch.profiler.profile``, CPU activities) to split the step into GEMMs, attention, element-wise
ops and the Python between them. The "memory bound" figure is the weight bytes a step must read divided
by the step time (the bandwidth a step achieves); ``--stream-gbs`` compares it with a plain ``copy_`` of
a 512 MB tensor (what one core can stream).

    python benchmarks/profile_decode.py                       # the pulled SmolLM2-135M, fp32,int8,int4
    python benchmarks/profile_decode.py --precisions fp32 --batch 8 --steps 50

Ends with one JSON line: per precision ``ms_per_step``, ``tokens_per_s``, ``weight_mb``, ``achieved_gbs``
and the profiler's top ops (self CPU time per step, in ms).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from compactlm.serving.engine.decoder import FastDecoder  # noqa: E402
from compactlm.serving.engine.loading import load_weights  # noqa: E402
from compactlm.serving.engine.weights import quantize_decoder  # noqa: E402


def default_model_dir() -> Path:
    from compactlm.models.bundled import bundled_path  # the pulled SmolLM2 folder

    return Path(bundled_path("bundled:smollm2-135m"))


def weight_bytes(decoder: FastDecoder) -> int:
    """Bytes of every tensor a decode step reads (the layers' kernels and the LM head)."""
    seen, total = set(), 0
    kernels = [decoder._head] + [part for layer in decoder.layers for part in (layer.qkv, layer.o, layer.gate_up,
                                                                                layer.down)]
    for kernel in kernels:
        for value in vars(kernel).values():
            if isinstance(value, torch.Tensor) and value.data_ptr() not in seen:
                seen.add(value.data_ptr())
                total += value.numel() * value.element_size()
            elif value is getattr(kernel, "packed", None) and not isinstance(value, torch.Tensor):
                total += kernel.out_features * decoder.shape.hidden_size  # fbgemm's opaque int8 pack: 1 byte/weight
    return total


def stream_gbs() -> float:
    source = torch.empty(128 * 2**20, dtype=torch.float32).fill_(1.0)
    target = torch.empty_like(source)
    target.copy_(source)
    start = time.perf_counter()
    for _ in range(5):
        target.copy_(source)
    seconds = (time.perf_counter() - start) / 5
    return round(2 * source.numel() * 4 / seconds / 1e9, 2)  # read + write


def profile(decoder: FastDecoder, batch: int, steps: int, prompt_tokens: int, top: int) -> dict:
    prompt = list(range(100, 100 + prompt_tokens))
    logits = decoder.forward([prompt] * batch, first_row=0)
    tokens = logits.argmax(-1).tolist()
    positions = [prompt_tokens] * batch
    for _ in range(5):  # warm-up
        tokens = decoder.decode(tokens, positions).argmax(-1).tolist()
        positions = [p + 1 for p in positions]
    start = time.perf_counter()
    for _ in range(steps):
        tokens = decoder.decode(tokens, positions).argmax(-1).tolist()
        positions = [p + 1 for p in positions]
    seconds = (time.perf_counter() - start) / steps
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            tokens = decoder.decode(tokens, positions).argmax(-1).tolist()
            positions = [p + 1 for p in positions]
    events = prof.key_averages()
    total_self_us = sum(e.self_cpu_time_total for e in events)
    ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    calls = sum(e.count for e in events if not e.key.startswith("ProfilerStep"))
    return {
        "ms_per_step": round(seconds * 1000, 2),
        "tokens_per_s": round(batch / seconds, 1),
        "profiled_ms_per_step": round(total_self_us / steps / 1000, 2),
        "ops_per_step": round(calls / steps),
        "top_ops": [{"op": e.key, "ms_per_step": round(e.self_cpu_time_total / steps / 1000, 3),
                     "calls_per_step": round(e.count / steps, 1)} for e in ops],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", help="HF folder (default: the pulled SmolLM2-135M-Instruct)")
    parser.add_argument("--precisions", default="fp32,int8,int4")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    weights, _tokenizer, _, _, _ = load_weights(model_dir=model_dir)
    result = {"benchmark": "profile_decode", "model_dir": str(model_dir), "threads": args.threads,
              "batch": args.batch, "steps": args.steps, "load_avg_start": list(os.getloadavg()),
              "stream_gbs": stream_gbs(), "precisions": {}}
    print(f"one core streams {result['stream_gbs']} GB/s (copy_, read + write)")
    for precision in args.precisions.split(","):
        decoder = FastDecoder(quantize_decoder(weights, precision), max_batch_size=args.batch, max_seq_len=512)
        figures = profile(decoder, args.batch, args.steps, args.prompt_tokens, args.top)
        figures["weight_mb"] = round(weight_bytes(decoder) / 1e6, 1)
        figures["achieved_gbs"] = round(figures["weight_mb"] / figures["ms_per_step"], 2)
        result["precisions"][precision] = figures
        print(f"{precision}: {figures['ms_per_step']} ms/step ({figures['tokens_per_s']} tok/s), "
              f"{figures['ops_per_step']} ops/step, weights {figures['weight_mb']} MB -> "
              f"{figures['achieved_gbs']} GB/s")
        for op in figures["top_ops"]:
            print(f"    {op['op']:<45} {op['ms_per_step']:>8.3f} ms  x{op['calls_per_step']}")
        del decoder
    result["load_avg_end"] = list(os.getloadavg())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
