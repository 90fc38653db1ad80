"""The on-disk format of engine weights (fp32 or quantized): one safetensors file + a JSON manifest.

A folder holds ``engine_weights.safetensors``, ``compactlm_engine.json`` (format version, scheme,
architecture, where the weights came from), the tokenizer and, when given, the source model's
``config.json`` for reference. Tensor names: ``embed``, ``final_norm``, optional ``lm_head``,
``layers.<i>.<qkv|o|gate_up|down>``, each either plain fp32 or split into ``.q``/``.scale`` (int8) or
``.codes``/``.scale``/``.minimum`` (int4).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from compactlm.errors import CompactLMError
from compactlm.models.tokenizer import load_tokenizer
from compactlm.serving.engine.quantize import Int4Weight, Int8Weight, Weight
from compactlm.serving.engine.weights import LINEAR_NAMES, DecoderShape, DecoderWeights, LayerWeights

MANIFEST = "compactlm_engine.json"
WEIGHTS_FILE = "engine_weights.safetensors"
FORMAT_VERSION = 1


def is_engine_artifact(directory: str | Path) -> bool:
    """True when ``directory`` holds an engine manifest (``compactlm_engine.json``)."""
    return (Path(directory) / MANIFEST).is_file()


def _flatten(name: str, weight: Weight, out: dict[str, torch.Tensor]) -> None:
    if isinstance(weight, Int8Weight):
        out[f"{name}.q"], out[f"{name}.scale"] = weight.q, weight.scale
    elif isinstance(weight, Int4Weight):
        out[f"{name}.codes"], out[f"{name}.scale"], out[f"{name}.minimum"] = weight.codes, weight.scale, weight.minimum
    else:
        out[name] = weight


def _unflatten(name: str, tensors: dict[str, torch.Tensor]) -> Weight:
    if f"{name}.q" in tensors:
        return Int8Weight(q=tensors[f"{name}.q"], scale=tensors[f"{name}.scale"])
    if f"{name}.codes" in tensors:
        codes, scale = tensors[f"{name}.codes"], tensors[f"{name}.scale"]
        # Two codes per byte; one scale per group of input columns: the group size follows from the shapes.
        return Int4Weight(codes=codes, scale=scale, minimum=tensors[f"{name}.minimum"],
                          group_size=codes.shape[1] * 2 // scale.shape[1])
    if name not in tensors:
        raise CompactLMError(f"engine weights are missing tensor {name!r}")
    return tensors[name]


def save_engine_weights(weights: DecoderWeights, tokenizer, directory: str | Path, hf_config=None,
                        source: dict[str, Any] | None = None) -> Path:
    """Write ``weights`` (any scheme) and the tokenizer to ``directory``; returns the weights file.

    Args:
        weights: decoder weights, fp32 or quantized.
        tokenizer: a ``transformers`` tokenizer (``save_pretrained``).
        directory: the folder to write (created if missing).
        hf_config: the source model's ``transformers`` config, saved for reference when given.
        source: where the weights came from (model, version, URI...), kept in the manifest.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {"final_norm": weights.final_norm}
    group_sizes = set()
    for name, weight in weights.named_weights().items():
        _flatten(name, weight, tensors)
        if isinstance(weight, Int4Weight):
            group_sizes.add(weight.group_size)
    path = directory / WEIGHTS_FILE
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    manifest = {"format": "compactlm-engine", "version": FORMAT_VERSION, "scheme": weights.scheme,
                "group_size": min(group_sizes, default=None), "shape": weights.shape.to_dict(), "source": source or {}}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(str(directory))
    if hf_config is not None:
        hf_config.save_pretrained(str(directory))
    return path


def load_engine_weights(directory: str | Path) -> tuple[DecoderWeights, Any, dict[str, Any]]:
    """Read a folder written by ``save_engine_weights``: ``(weights, tokenizer, manifest)``.

    Raises:
        CompactLMError: not an engine folder, or a format version this code does not read.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    if not is_engine_artifact(directory):
        raise CompactLMError(f"{directory} is not a CompactLM engine folder (no {MANIFEST})")
    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("version") != FORMAT_VERSION:
        raise CompactLMError(f"{directory / MANIFEST}: format version {manifest.get('version')!r} is not supported "
                             f"(this code reads version {FORMAT_VERSION})")
    tensors = load_file(str(directory / WEIGHTS_FILE))
    shape = DecoderShape(**manifest["shape"])
    layers = [LayerWeights(**{n: _unflatten(f"layers.{i}.{n}", tensors) for n in LINEAR_NAMES})
              for i in range(shape.num_layers)]
    lm_head = None if shape.tied_embeddings else _unflatten("lm_head", tensors)
    weights = DecoderWeights(shape=shape, embed=_unflatten("embed", tensors), final_norm=tensors["final_norm"],
                             lm_head=lm_head, layers=layers, scheme=manifest["scheme"])
    return weights, load_tokenizer(directory), manifest


def weights_bytes(directory: str | Path) -> int:
    """Size on disk of the weights file in bytes (what the size-reduction figures compare)."""
    return (Path(directory) / WEIGHTS_FILE).stat().st_size
