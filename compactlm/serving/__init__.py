"""Serving CompactLM models: a fast decoding engine, quantization and an OpenAI-compatible FastAPI service.

Modules, bottom-up:

* ``weights`` — pull a Llama-style ``transformers`` model into fused, folded fp32 tensors.
* ``quantize`` — INT8 dynamic and INT4 weight-only storage and the CPU kernels that run them.
* ``decoder`` — the forward pass on those tensors with a preallocated KV cache (prefill + decode steps).
* ``sampling`` / ``engine`` — per-sequence sampling, stop sequences, continuous batching.
* ``batcher`` — the engine on its own thread behind a bounded queue, for asyncio handlers.
* ``artifact`` / ``mlflow_model`` / ``loading`` — engine folders on disk, in MLflow, and model loading.
* ``tradeoff`` / ``predict`` — the quantization trade-off table and JSONL batch inference.
* ``protocol`` / ``security`` / ``metrics`` / ``app`` — the HTTP service.

This package never imports Prefect; torch is imported by the modules that need it, not here.
"""

SCHEMES = ("fp32", "int8", "int4")
