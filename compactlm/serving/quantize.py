"""Weight quantization for the fast engine: INT8 dynamic (fbgemm) and INT4 weight-only (group-wise).

Schemes:

* ``fp32`` — the extracted weights as they are (``torch.mm``).
* ``int8`` — per-output-channel symmetric int8 weights; activations are quantized per call to 8 bits
  and multiplied with an int8 GEMM (``torch.ops.quantized.linear_dynamic``, the kernel behind
  ``torch.ao.quantization.quantize_dynamic``). The tied embedding/LM-head table is int8 too (one copy:
  its rows are the LM head's output channels), which is what takes the file well under 40 % of fp32.
* ``int4`` — asymmetric 4-bit codes in groups of ``group_size`` input columns with a bf16 scale and
  minimum per group; multiplied by ``torch.ops.aten._weight_int4pack_mm_for_cpu`` with bf16 activations
  (the fp32-activation variant of that kernel is ~100x slower on CPU).

The embedding lookup uses an fp32 copy of the table dequantized at load (a gather from int8 would cost
two extra ops per token for no gain at this size); on disk and in the LM head the table stays quantized.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Protocol

import torch

from compactlm.errors import ConfigError
from compactlm.serving import SCHEMES

INT4_GROUP_SIZES = (32, 64, 128, 256)


def normalize_scheme(scheme: str) -> str:
    """``none``/``fp32``/``int8``/``int4`` (any case) to a scheme name, or fail naming the choices."""
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
        codes = self.unpacked().float()
        out, cols = codes.shape
        grouped = codes.view(out, cols // self.group_size, self.group_size)
        return (grouped * self.scale.float()[..., None] + self.minimum.float()[..., None]).view(out, cols)


Weight = torch.Tensor | Int8Weight | Int4Weight


def quantize_int8(weight: torch.Tensor) -> Int8Weight:
    """Per-row symmetric int8 in [-127, 127] (127, not 128, so that negating a row stays exact)."""
    scale = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return Int8Weight(q=q, scale=scale.float())


def quantize_int4(weight: torch.Tensor, group_size: int = 32) -> Int4Weight:
    """Asymmetric 4-bit codes per group of ``group_size`` input columns (min/max calibrated)."""
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


def quantize_weight(weight: torch.Tensor, scheme: str, group_size: int = 32) -> Weight:
    """One ``[out, in]`` fp32 matrix in ``scheme``."""
    if scheme == "int8":
        return quantize_int8(weight)
    if scheme == "int4":
        return quantize_int4(weight, group_size)
    return weight


def dequantize(weight: Weight) -> torch.Tensor:
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
    if isinstance(weight, Int8Weight):
        return Int8Weight(q=weight.q[start:stop], scale=weight.scale[start:stop])
    if isinstance(weight, Int4Weight):
        return Int4Weight(codes=weight.codes[start:stop], scale=weight.scale[start:stop],
                          minimum=weight.minimum[start:stop], group_size=weight.group_size)
    return weight[start:stop]


def rotate_rows(weight: Weight, n_heads: int, head_dim: int) -> Weight:
    """``rotate_half`` applied to the rows of a projection, exactly, in any scheme (see ``weights``)."""
    from compactlm.serving.weights import rotate_half_rows

    if isinstance(weight, Int8Weight):  # negate the codes, move the (positive) scales
        return Int8Weight(q=rotate_half_rows(weight.q, n_heads, head_dim),
                          scale=rotate_half_rows(weight.scale, n_heads, head_dim, negate=False))
    if isinstance(weight, Int4Weight):  # -(c * s + m) = c * (-s) + (-m): move codes, negate metadata
        return Int4Weight(codes=rotate_half_rows(weight.codes, n_heads, head_dim, negate=False),
                          scale=rotate_half_rows(weight.scale, n_heads, head_dim),
                          minimum=rotate_half_rows(weight.minimum, n_heads, head_dim), group_size=weight.group_size)
    return rotate_half_rows(weight, n_heads, head_dim)


# --- runtime kernels -------------------------------------------------------------------------------------


class Linear(Protocol):
    """``x [n, in] -> x @ W.T [n, out]`` in fp32, whatever the storage."""

    out_features: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def add_to(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...


class DenseLinear:
    """fp32 ``mm`` on a pre-transposed contiguous matrix (measured faster than ``F.linear`` at batch 1)."""

    def __init__(self, weight: torch.Tensor):
        self.weight_t = weight.t().contiguous()
        self.out_features = weight.shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mm(x, self.weight_t)

    def add_to(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(residual, x, self.weight_t)  # the residual add fused into the GEMM


class Int8DynamicLinear:
    """fbgemm dynamic-quantized GEMM: activations quantized per call, int8 weights prepacked once."""

    # reduce_range=False keeps all 8 activation bits: the AVX512-VNNI/AVX2 kernels here do not saturate.
    reduce_range = False

    def __init__(self, weight: Int8Weight):
        with warnings.catch_warnings():
            # Quantized tensor constructors are deprecated in favour of torchao, which is not installed
            # here; the fbgemm kernels themselves are current and this is their only entry point.
            warnings.simplefilter("ignore")
            zeros = torch.zeros(weight.q.shape[0], dtype=torch.long)
            qweight = torch._make_per_channel_quantized_tensor(weight.q, weight.scale.double(), zeros, 0)
            self.packed = torch.ops.quantized.linear_prepack(qweight, None)
        self.out_features = weight.q.shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self.packed, self.reduce_range)

    def add_to(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return residual + self(x)


class Int4WeightOnlyLinear:
    """Group-wise int4 weights, bf16 activations (``_weight_int4pack_mm_for_cpu``), fp32 out."""

    def __init__(self, weight: Int4Weight):
        out = weight.codes.shape[0]
        codes, scale, minimum = weight.unpacked(), weight.scale, weight.minimum
        pad = -out % 16  # the packing kernel wants the output features in multiples of 16
        if pad:
            codes = torch.cat([codes, torch.zeros(pad, codes.shape[1], dtype=codes.dtype)])
            scale = torch.cat([scale, torch.ones(pad, scale.shape[1], dtype=scale.dtype)])
            minimum = torch.cat([minimum, torch.zeros(pad, minimum.shape[1], dtype=minimum.dtype)])
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.contiguous(), 1)
        # The kernel computes (code - 8) * scale + zero, so zero = minimum + 8 * scale; layout [groups, out, 2].
        zero = minimum.float() + 8 * scale.float()
        self.scale_zero = torch.stack([scale.float().t(), zero.t()], dim=-1).to(torch.bfloat16).contiguous()
        self.group_size = weight.group_size
        self.out_features = out
        self.padded = bool(pad)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), self.packed, self.group_size,
                                                       self.scale_zero).float()
        return y[:, :self.out_features] if self.padded else y

    def add_to(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return residual + self(x)


def make_linear(weight: Weight) -> Linear:
    """The runtime kernel for a stored weight."""
    if isinstance(weight, Int8Weight):
        return Int8DynamicLinear(weight)
    if isinstance(weight, Int4Weight):
        return Int4WeightOnlyLinear(weight)
    return DenseLinear(weight.float())


def quantize_decoder(weights, scheme: str, group_size: int = 32):
    """Quantize every matrix of fp32 ``DecoderWeights`` (norms stay fp32); ``fp32`` returns them unchanged.

    Raises:
        ConfigError: an unknown scheme, already-quantized weights, or shapes int4 cannot group.
    """
    scheme = normalize_scheme(scheme)
    if weights.scheme != "fp32":
        raise ConfigError(f"these weights are already quantized ({weights.scheme}); quantize from fp32")
    if scheme == "fp32":
        return weights
    return weights.map_weights(lambda w: quantize_weight(w, scheme, group_size), scheme)
