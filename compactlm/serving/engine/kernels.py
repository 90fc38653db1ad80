"""The CPU matmul kernels that run stored weights: ``x [n, in] -> x @ W.T [n, out]`` in fp32, any scheme.

* fp32: ``torch.mm`` / ``torch.addmm`` on a pre-transposed matrix ``[in, out]`` (at batch 1 this layout runs
  the SmolLM2 LM head in ~half the time of ``F.linear`` on ``[out, in]``). A tied fp32 LM head is the
  embedding table itself, stored once in that layout (``DenseLinear.transposed``; the decoder gathers
  embedding columns from it), not a second ``[vocab, hidden]`` copy.
* int8: fbgemm's dynamic-quantized GEMM (``torch.ops.quantized.linear_dynamic``, the kernel behind
  ``torch.ao.quantization.quantize_dynamic``): activations are quantized to 8 bits per call.
* int4: ``torch.ops.aten._weight_int4pack_mm_for_cpu`` with bf16 activations (the fp32-activation
  variant of that kernel is ~100x slower on CPU), as torchao's ``int4_weight_only`` uses it.

A quantized embedding table stays quantized: the decoder dequantizes only the rows a step looks up
(``quantize.take_rows``), a few small ops per step instead of an fp32 copy of the table (113 MB on SmolLM2).
"""

from __future__ import annotations

import warnings
from typing import Protocol

import torch

from compactlm.serving.engine.quantize import Int4Weight, Int8Weight, Weight


class Linear(Protocol):
    """``x [n, in] -> x @ W.T [n, out]`` in fp32, whatever the storage."""

    out_features: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` fp32 ``[n, in]`` -> fp32 ``[n, out]``."""
        ...

    def add_to(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``residual + x @ W.T`` (``residual`` ``[n, out]``), fused into the GEMM where the kernel allows."""
        ...


class DenseLinear:
    """fp32 ``mm`` on a pre-transposed contiguous matrix (measured faster than ``F.linear`` at batch 1)."""

    def __init__(self, weight: torch.Tensor):
        self.weight_t = weight.t().contiguous()
        self.out_features = weight.shape[0]

    @classmethod
    def transposed(cls, weight_t: torch.Tensor) -> DenseLinear:
        """On a matrix already stored ``[in, out]`` (contiguous), shared, not copied: the tied LM head."""
        linear = cls.__new__(cls)
        linear.weight_t, linear.out_features = weight_t, weight_t.shape[1]
        return linear

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mm(x, self.weight_t)

    def add_to(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``residual + x @ W.T`` in one ``addmm``."""
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
        """``residual + x @ W.T`` (this kernel has no fused add)."""
        return residual + self(x)


class Int4WeightOnlyLinear:
    """Group-wise int4 weights, bf16 activations (``_weight_int4pack_mm_for_cpu``), fp32 out.

    The kernel dequantizes ``(code - 8) * scale + zero`` per group (torchao's affine int4 with the zero
    point in the float domain), so our ``code * scale + minimum`` becomes ``zero = minimum + 8 * scale``.
    """

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
        """``residual + x @ W.T`` (this kernel has no fused add)."""
        return residual + self(x)


def make_linear(weight: Weight) -> Linear:
    """The runtime kernel for a stored ``[out, in]`` weight (fp32 tensor, ``Int8Weight`` or ``Int4Weight``)."""
    if isinstance(weight, Int8Weight):
        return Int8DynamicLinear(weight)
    if isinstance(weight, Int4Weight):
        return Int4WeightOnlyLinear(weight)
    return DenseLinear(weight.float())
