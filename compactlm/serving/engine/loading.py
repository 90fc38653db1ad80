"""Load a model for serving from the MLflow registry or a folder, and tell which version an alias names now.

Sources:

* ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` — a registered CompactLM chat model (the
  fp32 pyfunc flavor) or a registered engine folder (``<name>-int8`` ...). An alias is resolved to a
  version first and that exact version is loaded, so a concurrent alias move cannot mix the two.
* a folder saved with ``save_pretrained`` (a ``transformers`` model + tokenizer), or an engine folder.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compactlm.errors import ConfigError, ModelNotFoundError
from compactlm.models.tokenizer import load_tokenizer
from compactlm.registry import uris
from compactlm.registry.uris import parse_model_uri
from compactlm.serving.engine.artifact import is_engine_artifact, load_engine_weights
from compactlm.serving.engine.generation import GenerationEngine
from compactlm.serving.engine.kv_cache import return_freed_memory
from compactlm.serving.engine.quantize import normalize_scheme
from compactlm.serving.engine.weights import DecoderWeights, quantize_decoder


@dataclass
class LoadedModel:
    """An engine ready to serve and where it came from."""

    engine: GenerationEngine
    model_id: str  # the name clients pass as ``model``
    source: str  # the URI or folder it was loaded from
    version: str | None  # the registry version (None for a folder)
    quantization: str
    loaded_at: float

    def describe(self) -> dict[str, Any]:
        """What ``/ready`` and the logs say about the model (JSON-ready), with the KV-cache memory per sequence."""
        return {"id": self.model_id, "source": self.source, "version": self.version,
                "quantization": self.quantization, "max_batch_size": self.engine.max_batch_size,
                "context_length": self.engine.max_seq_len, "kv_cache": self.engine.decoder.cache.describe(),
                "single_sequence_decode": self.engine.decoder.glue_status}


def resolve_version(uri: str) -> str | None:
    """The version a registry URI points to now (None for a URI that is not ``models:/...``).

    Raises:
        ModelNotFoundError: the registered model, version or alias does not exist.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    parsed = parse_model_uri(uri)
    if parsed is None:
        return None
    name, alias, version = parsed
    client = MlflowClient()
    try:
        if alias is not None:
            return str(client.get_model_version_by_alias(name, alias).version)
        return str(client.get_model_version(name, version).version)
    except MlflowException:
        import mlflow

        what = f"alias {alias!r}" if alias is not None else f"version {version}"
        hint = " (run `make demo` to train and register one)" if alias == "champion" else ""
        raise ModelNotFoundError(f"registered model {name!r} has no {what} in {mlflow.get_tracking_uri()}"
                                 f"{hint}") from None


def _weights_from_directory(directory: Path, scheme: str = "fp32") -> tuple[DecoderWeights, Any]:
    if is_engine_artifact(directory):
        weights, tokenizer, _ = load_engine_weights(directory)
        return weights, tokenizer
    if not (directory / "config.json").is_file():
        raise ModelNotFoundError(f"{directory} holds neither a saved transformers model (config.json) nor engine "
                                 "weights")
    from transformers import AutoConfig, AutoModelForCausalLM  # ~3 s of imports, only for transformers folders

    config = AutoConfig.from_pretrained(str(directory))
    try:  # layer by layer from the safetensors: peak memory one copy of the weights, not two
        return DecoderWeights.from_safetensors(directory, config, scheme), load_tokenizer(directory)
    except (FileNotFoundError, KeyError):  # .bin checkpoints, other tensor names: through transformers
        model = AutoModelForCausalLM.from_pretrained(str(directory))
        weights = DecoderWeights.from_hf(model, consume=True)
        del model
        return quantize_decoder(weights, scheme, consume=True), load_tokenizer(directory)


def _weights_from_registry(uri: str) -> tuple[DecoderWeights, Any]:
    # Local: MLflow's pyfunc machinery costs seconds of imports, paid only when a registry URI is served.
    from compactlm.registry.pyfunc import load_python_model

    python_model = load_python_model(uri)
    if hasattr(python_model, "weights"):  # an engine folder (FastChatModel)
        return python_model.weights, python_model.tokenizer
    if hasattr(python_model, "model") and hasattr(python_model, "tokenizer"):  # the fp32 CompactLM flavor
        return DecoderWeights.from_hf(python_model.model, consume=True), python_model.tokenizer  # discarded after
    raise ModelNotFoundError(f"{uri} is a {type(python_model).__name__}, not a CompactLM chat model")


def load_weights(model_uri: str | None = None, model_dir: str | Path | None = None, quantization: str = "fp32",
                 ) -> tuple[DecoderWeights, Any, str, str | None, str]:
    """Weights and tokenizer from a registry URI or a folder: ``(weights, tokenizer, model_id, version, source)``.

    Args:
        model_uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or any MLflow model URI.
        model_dir: a folder (a saved ``transformers`` model or engine weights); wins over ``model_uri``.
        quantization: a ``transformers`` folder's fp32 weights are quantized to this scheme layer by layer as
            they are read (lower peak memory than quantizing afterwards); other sources come back as stored.

    Raises:
        ModelNotFoundError: the folder, registered model, version or alias does not exist, or holds no chat model.
        ConfigError: neither a URI nor a folder was given.
        UnsupportedModelError: the model is not a Llama-style decoder.
    """
    if model_dir is not None:
        directory = Path(model_dir)
        if not directory.is_dir():
            raise ModelNotFoundError(f"model folder {directory} does not exist")
        weights, tokenizer = _weights_from_directory(directory, normalize_scheme(quantization))
        return weights, tokenizer, directory.resolve().name, None, str(directory)
    if not model_uri:
        raise ConfigError("give a model URI (models:/<name>@<alias>) or a model folder")
    parsed = parse_model_uri(model_uri)
    if parsed is None:  # runs:/..., a local MLflow model folder...
        weights, tokenizer = _weights_from_registry(model_uri)
        return weights, tokenizer, model_uri, None, model_uri
    version = resolve_version(model_uri)
    weights, tokenizer = _weights_from_registry(uris.model_uri(parsed[0], version))
    return weights, tokenizer, parsed[0], version, model_uri


def load_model(model_uri: str | None = None, model_dir: str | Path | None = None, quantization: str = "fp32",
               max_batch_size: int = 32, max_seq_len: int | None = None, speculative_tokens: int = 8,
               kv_cache_mb: float = 0.0, kv_cache_dtype: str = "float32") -> LoadedModel:
    """Load, quantize (``fp32`` sources only) and warm up an engine.

    A source that is already quantized is served in its own scheme; asking for another one is an error.

    Args:
        model_uri: as ``load_weights``.
        model_dir: as ``load_weights``.
        quantization: ``fp32``/``none``, ``int8`` or ``int4``.
        max_batch_size: most KV-cache rows (sequences decoded together).
        max_seq_len: the serving context in tokens (default: the model's positions).
        speculative_tokens: most drafted tokens checked per step (0: off).
        kv_cache_mb: KV-cache budget in MiB (2**20 bytes); 0: no bound but rows x context.
        kv_cache_dtype: ``float32`` or ``bfloat16``.

    Raises:
        ConfigError: an unknown scheme or KV-cache dtype, a quantized source asked for another scheme, or a
            KV-cache budget below one sequence.
        ModelNotFoundError: as ``load_weights``.
    """
    scheme = normalize_scheme(quantization)
    weights, tokenizer, model_id, version, source = load_weights(model_uri, model_dir, quantization=scheme)
    if weights.scheme != "fp32":
        if scheme not in ("fp32", weights.scheme):
            raise ConfigError(f"{source} is already quantized ({weights.scheme}); cannot serve it as {scheme}")
        scheme = weights.scheme
    else:
        weights = quantize_decoder(weights, scheme, consume=True)
    # Peak memory at load: one copy of the weights plus one layer in transit (each step consumes its source).
    engine = GenerationEngine.from_weights(weights, tokenizer, max_batch_size=max_batch_size, max_seq_len=max_seq_len,
                                           speculative_tokens=speculative_tokens, kv_cache_mb=kv_cache_mb,
                                           kv_cache_dtype=kv_cache_dtype, consume_weights=True)
    del weights  # the engine holds its own fused copies: hand the source tensors' memory back
    gc.collect()
    return_freed_memory()
    return LoadedModel(engine=engine, model_id=model_id, source=source, version=version, quantization=scheme,
                       loaded_at=time.time())
