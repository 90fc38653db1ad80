"""The fast decoder's KV cache, allocated by need: rows and positions grow in chunks, up to a memory budget.

Keys and values are one tensor per layer each, ``[rows, kv_heads, length, head_dim]``, in fp32 or, with
``serve.kv_cache_dtype: bfloat16``, in bf16 (half the memory; llama.cpp keeps its cache in 16 bits by
default too). Nothing is
held until a sequence needs it: rows grow (in steps of ``ROW_CHUNK``) as sequences are admitted and
positions grow (in steps of ``chunk`` tokens) as sequences get longer, the content copied over one layer
at a time, so a growth costs one layer's worth of memory on top of the cache. A model with an 8k context
thus costs what its sequences use, not ``rows x 8k`` positions from start-up.

Each layer's tensor is its own anonymous memory map (where the OS has them), not a malloc block: the
kernel hands out zero pages only as positions are written, and a freed layer goes straight back to the
OS. Through malloc, the growing blocks (a few MB each) fragmented the heap: SmolLM2 served at 32
sequences of ~500 tokens peaked at 2.8 GiB resident that way, 1.9 GiB with the maps (and a heap trim
after loading).

Memory per concurrent sequence is ``bytes_per_token`` per position: layers x 2 (keys, values) x
kv_heads x head_dim x 4 bytes (2 in bf16), e.g. 45 KiB for SmolLM2-135M (30 layers, 3 KV heads of 64;
22.5 KiB in bf16) and 4 KiB for the demo's decoder-micro. A budget caps the allocation: the engine
admits a sequence only while its rows times the longest reservation (prompt + ``max_tokens``, rounded up
to the chunk) fit in it (``GenerationEngine.can_admit``), and the cache never grows past it.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os

import torch

from compactlm.errors import ConfigError

MIB = 1 << 20  # the "MB" of ``serve.kv_cache_mb``
ROW_CHUNK = 8  # rows are allocated in multiples of this (at most ``max_rows``, within the budget)
DEFAULT_CHUNK = 128  # positions are allocated in multiples of this (at most ``max_length``)
KV_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}  # serve.kv_cache_dtype -> element type


def kv_dtype(name: str) -> torch.dtype:
    """The element type ``serve.kv_cache_dtype`` names.

    Raises:
        ConfigError: a name not in ``KV_DTYPES``.
    """
    if name not in KV_DTYPES:
        raise ConfigError(f"serve.kv_cache_dtype must be one of {', '.join(KV_DTYPES)}, got {name!r}")
    return KV_DTYPES[name]


MMAP_THRESHOLD = 1 << 20  # bytes: allocations at least this big get their own memory map (see below)
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def limit_heap_retention(threshold: int = MMAP_THRESHOLD) -> bool:
    """Give every allocation of at least ``threshold`` bytes its own memory map, returned to the OS when freed.

    glibc raises its mmap threshold each time a mapped block is freed (up to 32 MiB), so after a model load
    the multi-MB layer tensors being read, fused and quantized come from the heap, whose top cannot shrink
    past a live block: on SmolLM2-135M int8 that left the heap at 680 MB (445 MB of it free) and the load's
    peak at 1.06 GB. A fixed threshold (which also turns the dynamic adjustment off; ``mallopt(3)``,
    ``M_MMAP_THRESHOLD``) keeps it at what is in use: 634 MB peak. Process-wide; a no-op off glibc, and when
    the user set ``MALLOC_MMAP_THRESHOLD_`` (theirs wins).

    Args:
        threshold: bytes (glibc caps it at 32 MiB on 64-bit).

    Returns:
        Whether glibc accepted it.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


def return_freed_memory() -> None:
    """Ask glibc to hand freed heap pages back to the OS (a no-op elsewhere): after loading a model or
    freeing a cache, resident memory should drop to what is in use."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor of zeros in its own private anonymous memory map (``torch.zeros`` where there is none).

    Pages become resident only when written, and the map is unmapped when the last view of the tensor
    goes (``torch.frombuffer`` holds the map).
    """
    size = math.prod(shape) * dtype.itemsize
    private = getattr(mmap, "MAP_PRIVATE", None)
    if size == 0 or private is None:
        return torch.zeros(shape, dtype=dtype)
    return torch.frombuffer(mmap.mmap(-1, size, flags=private), dtype=dtype).view(shape)


class KVCache:
    """Keys and values of every layer for up to ``max_rows`` sequences of up to ``max_length`` positions.

    New memory is zeros, never ``empty``: a masked position still enters the attention matmul, and
    ``0 * NaN`` garbage would be NaN.

    Args:
        num_layers: decoder layers.
        kv_heads: key/value heads per layer.
        head_dim: features per head.
        max_rows: most rows (sequences decoded together).
        max_length: most positions per row (the serving context), in tokens.
        budget_bytes: most bytes the cache may hold; 0: no bound but ``max_rows x max_length``.
        chunk: positions are allocated in multiples of this many tokens.
        dtype: ``torch.float32`` or ``torch.bfloat16`` (see ``KV_DTYPES``).

    Raises:
        ConfigError: ``chunk`` below 1, a budget smaller than one chunk of one sequence, or another dtype.
    """

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, max_rows: int, max_length: int,
                 budget_bytes: int = 0, chunk: int = DEFAULT_CHUNK, dtype: torch.dtype = torch.float32):
        if chunk < 1:
            raise ConfigError(f"the KV-cache chunk must be at least 1 token, got {chunk}")
        self.num_layers, self.kv_heads, self.head_dim = num_layers, kv_heads, head_dim
        self.max_rows, self.max_length, self.chunk = max_rows, max_length, chunk
        self.budget = max(int(budget_bytes), 0)
        if dtype not in KV_DTYPES.values():
            raise ConfigError(f"the KV cache holds {', '.join(KV_DTYPES)}, not {dtype}")
        self.dtype = dtype
        self.dtype_name = next(name for name, value in KV_DTYPES.items() if value == dtype)
        self.bytes_per_token = num_layers * 2 * kv_heads * head_dim * dtype.itemsize
        self.rows = self.length = 0
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self._resize(0, 0)
        if self.max_tokens < 1:
            need = self.rounded(1) * self.bytes_per_token / MIB
            raise ConfigError(f"serve.kv_cache_mb={self.budget / MIB:g} holds less than one sequence of "
                              f"{self.rounded(1)} tokens of this model's KV cache ({need:.2f} MiB): raise it")

    # --- sizes -------------------------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes allocated now (keys and values of every layer)."""
        return self.rows * self.length * self.bytes_per_token

    def rounded(self, tokens: int) -> int:
        """``tokens`` rounded up to the chunk, at most ``max_length``: the positions a row of that length costs."""
        return min(self.max_length, math.ceil(max(tokens, 0) / self.chunk) * self.chunk)

    @property
    def max_tokens(self) -> int:
        """The longest sequence (prompt + ``max_tokens``) the budget holds on its own, at most ``max_length``."""
        if not self.budget or self.rounded(self.max_length) * self.bytes_per_token <= self.budget:
            return self.max_length
        return self.budget // self.bytes_per_token // self.chunk * self.chunk

    def fits(self, rows: int, tokens: int) -> bool:
        """True when ``rows`` sequences reserving up to ``tokens`` positions each fit in the budget."""
        return not self.budget or rows * self.rounded(tokens) * self.bytes_per_token <= self.budget

    def sequences_within_budget(self, tokens: int) -> int:
        """How many sequences of ``tokens`` positions the budget holds (``max_rows`` without a budget)."""
        if not self.budget:
            return self.max_rows
        return self.budget // (self.rounded(tokens) * self.bytes_per_token)

    def describe(self, tokens: int = 512) -> dict[str, float | int]:
        """Memory per concurrent sequence, for ``/ready`` and the logs (JSON-ready; MiB = 2**20 bytes).

        Args:
            tokens: the example sequence length (at most ``max_length``), in tokens.
        """
        tokens = min(tokens, self.max_length)
        return {"bytes_per_token": self.bytes_per_token, "sequence_tokens": tokens,
                "mib_per_sequence": round(tokens * self.bytes_per_token / MIB, 2),
                "budget_mib": round(self.budget / MIB, 2),
                "sequences_within_budget": self.sequences_within_budget(tokens),
                "allocated_mib": round(self.nbytes / MIB, 2), "chunk_tokens": self.chunk, "dtype": self.dtype_name}

    def summary(self, tokens: int = 512) -> str:
        """One line: KiB per token, MiB per ``tokens``-token sequence, the budget and how many such sequences fit."""
        info = self.describe(tokens)
        if self.budget:
            bound = (f"budget {info['budget_mib']:g} MiB (serve.kv_cache_mb) = about {info['sequences_within_budget']} "
                     f"such sequences, at most {self.max_rows} decoded together (serve.max_batch_size)")
        else:
            bound = (f"no budget (serve.kv_cache_mb=0): up to {self.max_rows * info['mib_per_sequence']:g} MiB for "
                     f"{self.max_rows} such sequences (serve.max_batch_size)")
        return (f"KV cache ({self.dtype_name}): {self.bytes_per_token / 1024:.1f} KiB per token; a "
                f"{info['sequence_tokens']}-token sequence needs {info['mib_per_sequence']:g} MiB; {bound}; "
                f"context {self.max_length} tokens (serve.max_seq_len)")

    def refusal(self, prompt_tokens: int, max_tokens: int) -> str:
        """Why a sequence of ``prompt_tokens + max_tokens`` can never fit the budget, with the numbers."""
        need = self.rounded(prompt_tokens + max_tokens) * self.bytes_per_token / MIB
        return (f"max_tokens={max_tokens} plus the prompt's {prompt_tokens} tokens needs {need:.1f} MiB of KV cache "
                f"({self.bytes_per_token / 1024:.1f} KiB per token); the server's budget, serve.kv_cache_mb="
                f"{self.budget / MIB:g}, holds at most {self.max_tokens} tokens per sequence: lower max_tokens or "
                "shorten the prompt, or raise serve.kv_cache_mb")

    # --- allocation --------------------------------------------------------------------------------------

    def _shape(self, rows: int, length: int) -> tuple[int, int]:
        """The allocation for ``rows x length``: rows rounded up to ``ROW_CHUNK`` while the budget allows."""
        length = self.rounded(length)
        if rows <= 0 or length <= 0:
            return 0, 0
        padded = min(self.max_rows, math.ceil(rows / ROW_CHUNK) * ROW_CHUNK)
        if self.budget:
            padded = min(padded, self.budget // (length * self.bytes_per_token))
        return max(rows, padded), length

    def reserve(self, rows: int, length: int) -> None:
        """Grow (never shrink) to hold at least ``rows x length`` positions, keeping all content."""
        if rows > self.rows or length > self.length:
            self._resize(max(rows, self.rows), max(length, self.length))

    def fit(self, rows: int, length: int) -> None:
        """Hold at least ``rows x length``; only rows ``< rows`` and positions ``< length`` are kept.

        Grows when the cache is too small, keeping a larger axis as it is unless that would hold over
        twice what is needed (or exceed the budget); shrinks to the need when it holds over twice that.
        """
        need = math.prod(self._shape(rows, length))
        if rows <= self.rows and length <= self.length:
            if self.rows * self.length > 2 * need:
                self._resize(rows, length)
            return
        wide = (max(rows, self.rows), max(length, self.length))
        keep = math.prod(self._shape(*wide)) <= 2 * need and self.fits(wide[0], wide[1])
        self._resize(*(wide if keep else (rows, length)))

    def release(self) -> None:
        """Free everything (nothing is in flight), and hand the memory back to the OS."""
        self._resize(0, 0)
        return_freed_memory()

    def _resize(self, rows: int, length: int) -> None:
        rows, length = self._shape(rows, length)
        if (rows, length) == (self.rows, self.length) and self.keys:
            return
        keep_rows, keep_len = min(rows, self.rows), min(length, self.length)
        for store in (self.keys, self.values):
            for i in range(self.num_layers):
                new = _zeros(rows, self.kv_heads, length, self.head_dim, dtype=self.dtype)
                if keep_rows and keep_len:
                    new[:keep_rows, :, :keep_len] = store[i][:keep_rows, :, :keep_len]
                if i < len(store):
                    store[i] = new  # the old layer is freed here: one layer's worth of extra memory at a time
                else:
                    store.append(new)
        self.rows, self.length = rows, length

    def move_row(self, src: int, dst: int, length: int) -> None:
        """Copy the first ``length`` positions of row ``src`` to row ``dst`` (all layers)."""
        for store in (self.keys, self.values):
            for layer in store:
                layer[dst, :, :length] = layer[src, :, :length]
