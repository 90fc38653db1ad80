"""The fast decoding engine for Llama-style models on CPUs. Modules, bottom-up:

* ``rope`` — rotary position embedding tables and the exact ``rotate_half`` row permutation.
* ``quantize`` — weight storage: fp32, INT8 per-channel, INT4 group-wise, and exact row operations.
* ``kernels`` — the CPU matmul kernel for each storage scheme.
* ``weights`` — a ``transformers`` Llama pulled into fused, folded tensors; ``quantize_decoder``.
* ``artifact`` — engine weights on disk (safetensors + a JSON manifest).
* ``kv_cache`` — the KV cache, allocated by need (rows and positions in chunks) within a memory budget.
* ``decoder`` — the forward pass on those tensors over that cache (prefill and decode steps).
* ``sampling`` — per-sequence sampling parameters, token selection, stop strings in streamed text.
* ``speculative`` — the n-gram drafter of speculative decoding.
* ``sequence`` — one sequence being decoded and its completion.
* ``generation`` — ``GenerationEngine``: sequences, continuous batching, speculative verification.
* ``scheduler`` — the engine on its own thread behind a bounded waiting queue, for asyncio handlers.
* ``loading`` — a servable engine from the MLflow registry or a folder.

Importing this package imports nothing; its modules import torch.
"""
