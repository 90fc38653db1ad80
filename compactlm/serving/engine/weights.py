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

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
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
_HF_LAYER_TENSORS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                     "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm")


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


def _fuse_layer(shape: DecoderShape, own: Callable[[torch.Tensor], torch.Tensor], q, k, v, o, gate, up, down,
                norm_in, norm_post) -> LayerWeights:
    """One layer's HF tensors (``[out, in]``) fused and folded (see ``LayerWeights``); ``own`` makes o/down fp32
    tensors of our own (a copy, or the tensor itself when the source is given up)."""
    norm_in, norm_post = norm_in.detach().float(), norm_post.detach().float()
    q = q.detach().float() * shape.head_dim ** -0.5
    qkv = torch.cat([q, k.detach().float(), v.detach().float()], 0) * norm_in
    gate_up = torch.cat([gate.detach().float(), up.detach().float()], 0) * norm_post
    return LayerWeights(qkv=qkv.contiguous(), o=own(o), gate_up=gate_up.contiguous(), down=own(down))


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
    def from_hf(cls, model, consume: bool = False) -> DecoderWeights:
        """Extract (copy) the weights of a ``LlamaForCausalLM``; the model is left untouched unless ``consume``.

        Args:
            model: a ``transformers`` ``LlamaForCausalLM`` (any dtype; copied to fp32).
            consume: take the tensors instead of copying where no arithmetic is needed and replace each layer
                of ``model`` by ``nn.Identity`` once extracted. The model is unusable afterwards.

        Raises:
            UnsupportedModelError: the architecture differs from what the engine implements.
        """
        shape = check_supported(model.config)
        own = (lambda t: t.detach().float()) if consume else (lambda t: t.detach().float().clone())
        layers = []
        with torch.no_grad():
            for index, layer in enumerate(model.model.layers):
                attn, mlp = layer.self_attn, layer.mlp
                layers.append(_fuse_layer(shape, own, attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight,
                                          attn.o_proj.weight, mlp.gate_proj.weight, mlp.up_proj.weight,
                                          mlp.down_proj.weight, layer.input_layernorm.weight,
                                          layer.post_attention_layernorm.weight))
                if consume:
                    model.model.layers[index] = torch.nn.Identity()
            embed = own(model.model.embed_tokens.weight)
            lm_head = None if shape.tied_embeddings else own(model.lm_head.weight)
            final_norm = model.model.norm.weight.detach().float().clone()
        return cls(shape=shape, embed=embed, final_norm=final_norm, lm_head=lm_head, layers=layers)

    @classmethod
    def from_safetensors(cls, directory: str | Path, config, scheme: str = "fp32",
                         group_size: int = 32) -> DecoderWeights:
        """Read a saved ``LlamaForCausalLM`` folder's safetensors one layer at a time, without ``transformers``.

        Each layer's tensors are read (copied out of the file's memory map, which is closed again) and fused
        before the next layer is read, so the peak memory is the fused weights plus one layer, where loading
        the model first holds the file's pages and the fused copies together (~2x). Sharded checkpoints
        (``model.safetensors.index.json``) are read through their index.

        Args:
            directory: the folder (``config.json`` and ``*.safetensors`` with the standard Llama tensor names).
            config: its ``transformers`` config.
            scheme: quantize each layer as it is read (``fp32``, ``int8``, ``int4``; same result as
                ``quantize_decoder`` afterwards, without holding every fp32 layer at once).
            group_size: int4 input columns per group.

        Raises:
            UnsupportedModelError: the architecture differs from what the engine implements.
            ConfigError: an unknown scheme, or a shape int4 cannot group.
            FileNotFoundError: no safetensors file; KeyError: a tensor name is missing (callers fall back to
                ``from_hf``).
        """
        from safetensors import safe_open

        shape = check_supported(config)
        scheme = normalize_scheme(scheme)
        directory = Path(directory)

        def stored(weight: torch.Tensor) -> Weight:
            return weight if scheme == "fp32" else quantize_weight(weight, scheme, group_size)

        index = directory / "model.safetensors.index.json"
        if index.is_file():
            files = {name: directory / file for name, file in json.loads(index.read_text())["weight_map"].items()}
        elif (directory / "model.safetensors").is_file():
            files = None
        else:
            raise FileNotFoundError(f"no model.safetensors in {directory}")

        def read(*names: str) -> list[torch.Tensor]:
            out: dict[str, torch.Tensor] = {}
            for file in {files[n] if files else directory / "model.safetensors" for n in names}:
                with safe_open(str(file), framework="pt") as handle:
                    for name in names:
                        if files is None or files[name] == file:
                            out[name] = handle.get_tensor(name)
            return [out[name] for name in names]

        layers = []
        with torch.no_grad():
            for i in range(shape.num_layers):
                p = f"model.layers.{i}."
                # read out of the closed map: fresh tensors already, so o/down need no copy (torch.Tensor.float)
                fused = _fuse_layer(shape, torch.Tensor.float, *read(*(p + n + ".weight" for n in _HF_LAYER_TENSORS)))
                layers.append(LayerWeights(**{name: stored(getattr(fused, name)) for name in LINEAR_NAMES}))
            embed, final_norm = read("model.embed_tokens.weight", "model.norm.weight")
            lm_head = None if shape.tied_embeddings else stored(read("lm_head.weight")[0].float())
        return cls(shape=shape, embed=stored(embed.float()), final_norm=final_norm.float().clone(), lm_head=lm_head,
                   layers=layers, scheme=scheme)

    def named_weights(self) -> dict[str, Weight]:
        """Flat ``name -> weight`` view (the names of the on-disk format); the final norm excluded."""
        out: dict[str, Weight] = {"embed": self.embed}
        if self.lm_head is not None:
            out["lm_head"] = self.lm_head
        for i, layer in enumerate(self.layers):
            for name in LINEAR_NAMES:
                out[f"layers.{i}.{name}"] = getattr(layer, name)
        return out

    def map_weights(self, fn: Callable[[Weight], Weight], scheme: str, consume: bool = False) -> DecoderWeights:
        """A copy with ``fn`` applied to every matrix (embedding, LM head, layer projections), labelled ``scheme``.

        ``consume``: drop each of this object's layers once mapped (peak memory: the result plus one source
        layer); this object keeps its embedding but no layers afterwards.
        """
        layers = []
        for index, layer in enumerate(self.layers):
            layers.append(LayerWeights(**{name: fn(getattr(layer, name)) for name in LINEAR_NAMES}))
            if consume:
                self.layers[index] = None
        return replace(self, embed=fn(self.embed), lm_head=None if self.lm_head is None else fn(self.lm_head),
                       layers=layers, scheme=scheme)


def quantize_decoder(weights: DecoderWeights, scheme: str, group_size: int = 32,
                     consume: bool = False) -> DecoderWeights:
    """Quantize every matrix of fp32 weights (norms stay fp32); ``fp32`` returns them unchanged.

    Args:
        weights: fp32 decoder weights (``weights.scheme == "fp32"``).
        scheme: ``fp32``/``none``, ``int8`` or ``int4`` (see ``quantize`` for the formats).
        group_size: int4 input columns per group.
        consume: free each fp32 layer once quantized (``DecoderWeights.map_weights``); ``weights`` keeps no layers.

    Raises:
        ConfigError: an unknown scheme, already-quantized weights, or shapes int4 cannot group.
    """
    scheme = normalize_scheme(scheme)
    if weights.scheme != "fp32":
        raise ConfigError(f"these weights are already quantized ({weights.scheme}); quantize from fp32")
    if scheme == "fp32":
        return weights
    return weights.map_weights(lambda w: quantize_weight(w, scheme, group_size), scheme, consume)
