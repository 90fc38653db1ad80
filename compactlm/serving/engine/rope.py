"""Rotary position embeddings (RoPE) for the fast decoder: the cos/sin tables and the ``rotate_half`` rows.

RoPE (Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021,
arXiv:2104.09864) rotates each pair of q/k features by an angle ``position * theta ** (-2i / head_dim)``.
We use the "two halves" layout of ``transformers``' Llama (``rotate_half``: feature ``i`` pairs with
``i + head_dim / 2``), so ``rope(x) = x * cos + rotate_half(x) * sin`` with ``rotate_half(x) = [-x2, x1]``.
"""

from __future__ import annotations

import torch


def rope_tables(head_dim: int, theta: float, n_heads: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every position, tiled over ``n_heads`` heads.

    Same frequencies as ``transformers``' default rotary embedding (``LlamaRotaryEmbedding``,
    ``rope_type="default"``): ``inv_freq[i] = 1 / theta ** (2i / head_dim)``, and the two halves of a head
    share one frequency.

    Args:
        head_dim: features per head (even).
        theta: the RoPE base (``rope_theta``, 10000 in Llama).
        n_heads: heads the tables are tiled over (q heads + k heads for the fused projection).
        length: positions covered (the KV-cache length).

    Returns:
        ``(cos, sin)``, each fp32 ``[length, n_heads * head_dim]``.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = torch.outer(torch.arange(length, dtype=torch.int64).float(), inv_freq)
    angles = torch.cat([freqs, freqs], dim=-1)
    return angles.cos().repeat(1, n_heads).contiguous(), angles.sin().repeat(1, n_heads).contiguous()


def rotate_half_rows(rows: torch.Tensor, n_heads: int, head_dim: int, negate: bool = True) -> torch.Tensor:
    """Rows of ``R @ rows`` where ``R x = rotate_half(x)`` per head, i.e. ``[-x2, x1]``.

    Appending these rows to the q/k projection turns RoPE into two multiplies and an add on the matmul
    output (``q * cos + (R q) * sin``) instead of slicing, negating and concatenating every step.
    Only a permutation and a sign, so it is exact on quantized rows too: pass ``negate=False`` for
    per-row metadata that only moves (int8 scales, int4 codes) and ``negate=True`` for what flips sign.

    Args:
        rows: ``[n_heads * head_dim, ...]`` (a projection's output rows, or per-row metadata ``[n_heads * head_dim]``).
        n_heads: heads the rows belong to.
        head_dim: rows per head (even).
        negate: negate the rows moved to the first half.

    Returns:
        A tensor of the same shape and dtype.
    """
    shaped = rows.reshape(n_heads, head_dim, *rows.shape[1:])
    half = head_dim // 2
    first = -shaped[:, half:] if negate else shaped[:, half:]
    return torch.cat([first, shaped[:, :half]], dim=1).reshape(rows.shape)
