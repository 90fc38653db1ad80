"""Weight storage for the fast engine: fp32, INT8 per-channel and INT4 group-wise, and the exact row operations.

Schemes:

* ``fp32`` — the extracted weights as they are.
* ``int8`` — per-output-channel symmetric int8 weights (``w ~= q * scale``), the weight format of
  ``torch.ao.quantization.quantize_dynamic`` (Jacob et al., "Quantization and Training of Neural Networks
  for Efficient Integer-Arithmetic-Only Inference", CVPR 2018, symmetric variant). The tied
  embedding/LM-head table is int8 too (one copy: its rows are the LM head's output channels), which is
  what takes the file well under 40 % of fp32.
* ``int4`` — asymmetric round-to-nearest 4-bit codes per group of ``group_size`` input columns, with a
  bf16 scale and minimum per group (min/max calibration): the affine group-wise format of torchao's
  ``int4_weight_only`` / ``groupwise_affine_quantize_tensor``, which the CPU kernel
  ``torch.ops.aten._weight_int4pack_mm_for_cpu`` consumes.

The kernels that multiply by these weights are in ``compactlm.serving.engine.kernels``; quantizing a
whole decoder is ``compactlm.serving.engine.weights.quantize_decoder``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from compactlm.errors import ConfigError
from compactlm.serving import SCHEMES
from compactlm.serving.engine.rope import rotate_half_rows

INT4_GROUP_SIZES = (32, 64, 128, 256)  # the group sizes _weight_int4pack_mm_for_cpu accepts


def normalize_scheme(scheme: str) -> str:
    """A scheme name from user input: ``none``/``fp32``/``float32`` -> ``fp32``; ``int8``, ``int4`` (any case).

    Args:
        scheme: the name as given (empty or None means ``fp32``).

    Returns:
        One of ``SCHEMES``.

    Raises:
        ConfigError: an unknown name (the message lists the choices).
    """
    value = (scheme or "fp32").strip().lower()
    value = "fp32" if value in ("none", "fp32", "float32") else value
    if value not in SCHEMES:
        raise ConfigError(f"quantization must be one of none, {', '.join(SCHEMES)}, got {scheme!r}")
    return value


@dataclass
class Int8Weight:
    """Symmetric per-row int8: ``w ~= q * scale[:, None]``."""

    q: torch.Tensor  # int8 [out, in]
    scale: torch.Tensor  # fp32 [out]

    def dequantize(self) -> torch.Tensor:
        """The fp32 ``[out, in]`` matrix these codes stand for."""
        return self.q.float() * self.scale[:, None]


@dataclass
class Int4Weight:
    """Asymmetric group-wise int4: ``w[:, g] ~= code * scale[:, g] + minimum[:, g]``, two codes per byte."""

    codes: torch.Tensor  # uint8 [out, in // 2]: column 2j in the high nibble, 2j+1 in the low one
    scale: torch.Tensor  # bf16 [out, in // group_size]
    minimum: torch.Tensor  # bf16 [out, in // group_size]
    group_size: int

    def unpacked(self) -> torch.Tensor:
        """Codes as int32 ``[out, in]`` in 0..15."""
        high, low = (self.codes >> 4).to(torch.int32), (self.codes & 0xF).to(torch.int32)
        return torch.stack([high, low], dim=-1).reshape(self.codes.shape[0], -1)

    def dequantize(self) -> torch.Tensor:
        """The fp32 ``[out, in]`` matrix these codes stand for."""
        codes = self.unpacked().float()
        out, cols = codes.shape
        grouped = codes.view(out, cols // self.group_size, self.group_size)
        return (grouped * self.scale.float()[..., None] + self.minimum.float()[..., None]).view(out, cols)


Weight = torch.Tensor | Int8Weight | Int4Weight


def quantize_int8(weight: torch.Tensor) -> Int8Weight:
    """Per-row symmetric int8 in [-127, 127]: ``scale = max |w_row| / 127``, ``q = round(w / scale)``.

    127, not 128, so that negating a row (RoPE's ``rotate_half``) stays exact.

    Args:
        weight: fp32 ``[out, in]``.
    """
    scale = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return Int8Weight(q=q, scale=scale.float())


def quantize_int4(weight: torch.Tensor, group_size: int = 32) -> Int4Weight:
    """Asymmetric 4-bit codes per group of ``group_size`` input columns (min/max calibrated).

    Per group: ``scale = (max - min) / 15``, ``code = round((w - min) / scale)`` in 0..15, with scale and
    minimum rounded to bf16 first (the kernel consumes bf16 metadata, so codes are chosen against it).

    Args:
        weight: fp32 ``[out, in]``.
        group_size: input columns per group, one of ``INT4_GROUP_SIZES``.

    Raises:
        ConfigError: a group size the kernel does not take, or ``in`` not divisible by it.
    """
    out, cols = weight.shape
    if group_size not in INT4_GROUP_SIZES:
        raise ConfigError(f"int4 group_size must be one of {INT4_GROUP_SIZES}, got {group_size}")
    if cols % group_size != 0:
        raise ConfigError(f"int4 needs input features divisible by the group size {group_size}, got {cols}")
    grouped = weight.float().view(out, cols // group_size, group_size)
    low, high = grouped.amin(dim=-1), grouped.amax(dim=-1)
    # bf16 metadata is what the kernel consumes, so quantize against the rounded values.
    scale = ((high - low) / 15.0).clamp(min=1e-8).to(torch.bfloat16)
    minimum = low.to(torch.bfloat16)
    codes = torch.round((grouped - minimum.float()[..., None]) / scale.float()[..., None]).clamp(0, 15)
    codes = codes.to(torch.uint8).view(out, cols)
    packed = (codes[:, 0::2] << 4) | codes[:, 1::2]
    return Int4Weight(codes=packed.contiguous(), scale=scale.contiguous(), minimum=minimum.contiguous(),
                      group_size=group_size)


QUANTIZE_ROWS = 4096  # rows quantized at a time: the temporaries of a 49k-row embedding stay ~10 MB, not ~400


def quantize_weight(weight: torch.Tensor, scheme: str, group_size: int = 32) -> Weight:
    """One fp32 ``[out, in]`` matrix in ``scheme`` (``fp32`` returns it unchanged).

    Both schemes quantize each row on its own, so a tall matrix is done ``QUANTIZE_ROWS`` rows at a time
    (the same result, a fraction of the peak memory).

    Raises:
        ConfigError: as ``quantize_int4``.
    """
    if scheme not in ("int8", "int4"):
        return weight
    if weight.shape[0] > QUANTIZE_ROWS:
        return concat_rows([quantize_weight(weight[start:start + QUANTIZE_ROWS], scheme, group_size)
                            for start in range(0, weight.shape[0], QUANTIZE_ROWS)])
    return quantize_int8(weight) if scheme == "int8" else quantize_int4(weight, group_size)


def dequantize(weight: Weight) -> torch.Tensor:
    """The fp32 ``[out, in]`` matrix of any stored weight."""
    return weight if isinstance(weight, torch.Tensor) else weight.dequantize()


def concat_rows(parts: list[Weight]) -> Weight:
    """Stack row blocks of the same kind (used to add the RoPE rows to a fused projection)."""
    first = parts[0]
    if isinstance(first, Int8Weight):
        return Int8Weight(q=torch.cat([p.q for p in parts]), scale=torch.cat([p.scale for p in parts]))
    if isinstance(first, Int4Weight):
        return Int4Weight(codes=torch.cat([p.codes for p in parts]), scale=torch.cat([p.scale for p in parts]),
                          minimum=torch.cat([p.minimum for p in parts]), group_size=first.group_size)
    return torch.cat(parts)


def slice_rows(weight: Weight, start: int, stop: int) -> Weight:
    """Output rows ``start:stop`` of a stored weight, in its own scheme."""
    if isinstance(weight, Int8Weight):
        return Int8Weight(q=weight.q[start:stop], scale=weight.scale[start:stop])
    if isinstance(weight, Int4Weight):
        return Int4Weight(codes=weight.codes[start:stop], scale=weight.scale[start:stop],
                          minimum=weight.minimum[start:stop], group_size=weight.group_size)
    return weight[start:stop]


def take_rows(weight: Weight, ids: torch.Tensor) -> Weight:
    """Output rows ``ids`` (int64 ``[n]``, repeats allowed) of a stored weight, in its own scheme (an embedding
    lookup that stays quantized until ``dequantize``)."""
    if isinstance(weight, Int8Weight):
        return Int8Weight(q=weight.q[ids], scale=weight.scale[ids])
    if isinstance(weight, Int4Weight):
        return Int4Weight(codes=weight.codes[ids], scale=weight.scale[ids], minimum=weight.minimum[ids],
                          group_size=weight.group_size)
    return weight[ids]


def rotate_rows(weight: Weight, n_heads: int, head_dim: int) -> Weight:
    """``rotate_half`` applied to the rows of a projection, exactly, in any scheme (see ``rope.rotate_half_rows``).

    Args:
        weight: ``[n_heads * head_dim, in]`` in any scheme.
        n_heads: heads of the projection.
        head_dim: rows per head.
    """
    if isinstance(weight, Int8Weight):  # negate the codes, move the (positive) scales
        return Int8Weight(q=rotate_half_rows(weight.q, n_heads, head_dim),
                          scale=rotate_half_rows(weight.scale, n_heads, head_dim, negate=False))
    if isinstance(weight, Int4Weight):  # -(c * s + m) = c * (-s) + (-m): move codes, negate metadata
        return Int4Weight(codes=rotate_half_rows(weight.codes, n_heads, head_dim, negate=False),
                          scale=rotate_half_rows(weight.scale, n_heads, head_dim),
                          minimum=rotate_half_rows(weight.minimum, n_heads, head_dim), group_size=weight.group_size)
    return rotate_half_rows(weight, n_heads, head_dim)
