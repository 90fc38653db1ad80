"""Decoder weights pulled out of a Hugging Face Llama-style model into plain, fused fp32 tensors.

The fast engine never calls the ``transformers`` modules: it runs on these tensors. Pulling them out
once lets us fuse and fold what the module graph keeps apart:

* q, k and v projections are one matrix (one matmul per layer instead of three), gate and up another;
* each RMSNorm weight (Zhang & Sennrich, "Root Mean Square Layer Normalization", 2019) is folded into
  the columns of the matrix that reads its output (``(x / rms(x) * g) @ W.T == (x / rms(x)) @ (W * g).T``),
  and the attention scale ``head_dim ** -0.5`` into the q rows, so neither costs an op per token;
* the final norm is kept separate because the LM head is tied to the embedding, and the (quantized)
  table is stored once.

Supported: ``LlamaForCausalLM`` with SiLU MLP, default RoPE, no biases, any ``num_key_value_heads``
(grouped-query attention). Anything else is refused with a message naming what differs.
``quantize_decoder`` turns the extracted fp32 weights into int8 or int4 ones (formats in ``quantize``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from compactlm.errors import ConfigError, UnsupportedModelError
from compactlm.serving.engine.quantize import Weight, normalize_scheme, quantize_weight


@dataclass(frozen=True)
class DecoderShape:
    """Everything the engine needs to know about a decoder's architecture."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    rope_theta: float
    rms_norm_eps: float
    tied_embeddings: bool

    @property
    def q_size(self) -> int:
        """Rows of the q projection: ``num_heads * head_dim``."""
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Rows of the k (and of the v) projection: ``num_kv_heads * head_dim``."""
        return self.num_kv_heads * self.head_dim

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (the engine manifest's ``shape``)."""
        return asdict(self)


def _rope_theta(config) -> float:
    """The RoPE base of a ``transformers`` config (``rope_parameters`` in v5, ``rope_theta`` before)."""
    params = getattr(config, "rope_parameters", None) or {}
    scaling = getattr(config, "rope_scaling", None) or {}
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type != "default":
        raise UnsupportedModelError(f"the fast engine supports default RoPE only; this model uses "
                                    f"rope_type={rope_type!r}")
    return float(params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)


def check_supported(config) -> DecoderShape:
    """Validate a ``transformers`` config for the fast engine and return its shape.

    Args:
        config: a ``transformers`` ``PretrainedConfig`` (``LlamaConfig`` is the one that passes).

    Raises:
        UnsupportedModelError: naming the first feature the engine does not implement.
    """
    problems = []
    if getattr(config, "model_type", None) != "llama":
        problems.append(f"model_type={getattr(config, 'model_type', None)!r} (expected 'llama')")
    if getattr(config, "hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={config.hidden_act!r} (expected 'silu')")
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(config, flag, False):
            problems.append(f"{flag}=True")
    if getattr(config, "sliding_window", None):
        problems.append(f"sliding_window={config.sliding_window}")
    if problems:
        raise UnsupportedModelError("the fast engine supports Llama-style decoders (SiLU MLP, default RoPE, no "
                                    f"biases); this model has {', '.join(problems)}")
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    if heads % kv_heads != 0:
        raise UnsupportedModelError(f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}")
    if head_dim % 2 != 0:
        raise UnsupportedModelError(f"head_dim={head_dim} must be even for RoPE")
    return DecoderShape(
        hidden_size=config.hidden_size, num_layers=config.num_hidden_layers, num_heads=heads, num_kv_heads=kv_heads,
        head_dim=head_dim, intermediate_size=config.intermediate_size, vocab_size=config.vocab_size,
        max_positions=config.max_position_embeddings, rope_theta=_rope_theta(config),
        rms_norm_eps=float(config.rms_norm_eps), tied_embeddings=bool(getattr(config, "tie_word_embeddings", True)))


LINEAR_NAMES = ("qkv", "o", "gate_up", "down")


@dataclass
class LayerWeights:
    """One decoder layer, fused and folded (``[out, in]`` like ``nn.Linear.weight``).

    ``qkv`` rows are q (pre-scaled by ``head_dim ** -0.5``), k, v; its columns carry the input norm.
    ``gate_up`` rows are gate then up; its columns carry the post-attention norm.
    """

    qkv: Weight
    o: Weight
    gate_up: Weight
    down: Weight


@dataclass
class DecoderWeights:
    """All weights of a decoder, ready for the engine: fp32 tensors, or quantized ones (``scheme``)."""

    shape: DecoderShape
    embed: Weight  # [vocab, hidden]; also the LM head when tied
    final_norm: torch.Tensor  # [hidden], always fp32
    lm_head: Weight | None  # [vocab, hidden] when the embeddings are not tied
    layers: list[LayerWeights]
    scheme: str = "fp32"

    @classmethod
    def from_hf(cls, model) -> DecoderWeights:
        """Extract (copy) the weights of a ``LlamaForCausalLM``; the model itself is left untouched.

        Args:
            model: a ``transformers`` ``LlamaForCausalLM`` (any dtype; copied to fp32).

        Raises:
            UnsupportedModelError: the architecture differs from what the engine implements.
        """
        shape = check_supported(model.config)
        layers = []
        with torch.no_grad():
            for layer in model.model.layers:
                attn, mlp = layer.self_attn, layer.mlp
                norm_in = layer.input_layernorm.weight.float()
                norm_post = layer.post_attention_layernorm.weight.float()
                q = attn.q_proj.weight.float() * shape.head_dim ** -0.5
                qkv = torch.cat([q, attn.k_proj.weight.float(), attn.v_proj.weight.float()], 0) * norm_in
                gate_up = torch.cat([mlp.gate_proj.weight.float(), mlp.up_proj.weight.float()], 0) * norm_post
                layers.append(LayerWeights(qkv=qkv.contiguous(), o=attn.o_proj.weight.float().clone(),
                                           gate_up=gate_up.contiguous(), down=mlp.down_proj.weight.float().clone()))
            embed = model.model.embed_tokens.weight.float().clone()
            lm_head = None if shape.tied_embeddings else model.lm_head.weight.float().clone()
            final_norm = model.model.norm.weight.float().clone()
        return cls(shape=shape, embed=embed, final_norm=final_norm, lm_head=lm_head, layers=layers)

    def named_weights(self) -> dict[str, Weight]:
        """Flat ``name -> weight`` view (the names of the on-disk format); the final norm excluded."""
        out: dict[str, Weight] = {"embed": self.embed}
        if self.lm_head is not None:
            out["lm_head"] = self.lm_head
        for i, layer in enumerate(self.layers):
            for name in LINEAR_NAMES:
                out[f"layers.{i}.{name}"] = getattr(layer, name)
        return out

    def map_weights(self, fn: Callable[[Weight], Weight], scheme: str) -> DecoderWeights:
        """A copy with ``fn`` applied to every matrix (embedding, LM head, layer projections), labelled ``scheme``."""
        layers = [LayerWeights(**{name: fn(getattr(layer, name)) for name in LINEAR_NAMES}) for layer in self.layers]
        return replace(self, embed=fn(self.embed), lm_head=None if self.lm_head is None else fn(self.lm_head),
                       layers=layers, scheme=scheme)


def quantize_decoder(weights: DecoderWeights, scheme: str, group_size: int = 32) -> DecoderWeights:
    """Quantize every matrix of fp32 weights (norms stay fp32); ``fp32`` returns them unchanged.

    Args:
        weights: fp32 decoder weights (``weights.scheme == "fp32"``).
        scheme: ``fp32``/``none``, ``int8`` or ``int4`` (see ``quantize`` for the formats).
        group_size: int4 input columns per group.

    Raises:
        ConfigError: an unknown scheme, already-quantized weights, or shapes int4 cannot group.
    """
    scheme = normalize_scheme(scheme)
    if weights.scheme != "fp32":
        raise ConfigError(f"these weights are already quantized ({weights.scheme}); quantize from fp32")
    if scheme == "fp32":
        return weights
    return weights.map_weights(lambda w: quantize_weight(w, scheme, group_size), scheme)
