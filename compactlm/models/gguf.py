"""GGUF files (llama.cpp's format) as ordinary transformers model folders.

``convert_gguf`` reads a ``.gguf`` file with transformers (the weights dequantized to float32, the
tokenizer and chat template rebuilt from the file's metadata) and saves a plain ``save_pretrained``
folder: ``config.json`` without a ``quantization_config``, ``model.safetensors``, the tokenizer files
and ``gguf_source.json`` (where it came from: file, SHA-256, quantization, parameter count). Everything
that takes a model folder then takes it, with no GGUF code path downstream.

The folder is cached by the file's content hash under ``$COMPACTLM_CACHE_DIR/gguf/<sha256[:16]>/``
(default ``~/.cache/compactlm/gguf/...``): converting the same bytes again, from any path, returns the
cached folder. It is written to a temporary folder beside it and renamed into place when complete,
so a crash or a concurrent conversion never leaves half a model there.

The weights are what the file holds: a quantized file (``Q4_1``...) gives its dequantized values,
with the quantization's rounding error, not the model's original weights (``gguf_source.json`` says so).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from compactlm.errors import ConfigError

SUFFIX = ".gguf"
MAGIC = b"GGUF"
SOURCE_FILE = "gguf_source.json"
_FLOAT_TYPES = {"F32", "F16", "BF16", "F64"}
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> SHA-256, hashed once per process


def cache_dir() -> Path:
    """Where converted folders live: ``$COMPACTLM_CACHE_DIR/gguf`` (default ``~/.cache/compactlm/gguf``)."""
    root = os.environ.get("COMPACTLM_CACHE_DIR", "").strip() or "~/.cache/compactlm"
    return Path(root).expanduser() / "gguf"


def is_gguf_file(path: str | Path) -> bool:
    """Whether ``path`` is a file starting with the GGUF magic bytes (its name does not matter)."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


def locate(path: str | Path, file: str | None = None, field: str = "model.base", ref: str | None = None) -> Path:
    """The GGUF file that ``path`` (and ``file``) name.

    Args:
        path: a ``.gguf`` file, or a folder holding exactly one (or the one ``file`` names).
        file: a file name inside the folder ``path``.
        field: the config field named in error messages; ``ref``: the value it had (default ``path``).

    Returns:
        The absolute path of a file that starts with the GGUF magic bytes.

    Raises:
        ConfigError: one line naming ``field`` and the file: it does not exist, the folder holds no
            ``.gguf`` file or several, or the file is not a GGUF file.
    """
    ref = str(path) if ref is None else ref
    target = Path(path).expanduser()
    if file is not None:
        target = target / file
    elif target.is_dir():
        found = sorted(target.glob(f"*{SUFFIX}"))
        if not found:
            raise ConfigError(f"{field} {ref!r}: the folder holds no {SUFFIX} file (and no config.json)")
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise ConfigError(f"{field} {ref!r}: the folder holds {len(found)} {SUFFIX} files ({names}); "
                              f"name one, e.g. {target / found[0].name}")
        target = found[0]
    if not target.is_file():
        raise ConfigError(f"{field} {ref!r}: no such GGUF file {str(target)!r}")
    if not is_gguf_file(target):
        raise ConfigError(f"{field} {ref!r}: {target.name} is not a GGUF file (it does not start with 'GGUF')")
    return target.resolve()


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's content (hex), computed once per process for an unchanged file."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def cached_folder(path: str | Path, file: str | None = None) -> Path | None:
    """The converted folder of a GGUF file when it is already in the cache, else None (nothing converted).

    Raises:
        ConfigError: as ``locate``.
    """
    source = locate(path, file)
    digest = file_sha256(source)
    folder = cache_dir() / digest[:16]
    return folder if _complete(folder, digest) else None


def convert_gguf(path: str | Path, file: str | None = None, field: str = "model.base",
                 ref: str | None = None) -> Path:
    """A transformers model folder with the weights, tokenizer and chat template of a GGUF file.

    Converted once per file content (SHA-256) into ``cache_dir()``; later calls return the cached folder.

    Args:
        path: a ``.gguf`` file, or a folder holding exactly one (or the one ``file`` names).
        file: a file name inside the folder ``path``.
        field: the config field named in error messages; ``ref``: the value it had (default ``path``).

    Returns:
        The folder: ``config.json`` (no ``quantization_config``), ``model.safetensors`` (float32), the
        tokenizer files with the chat template, and ``gguf_source.json`` (see ``provenance``).

    Raises:
        ConfigError: one line naming ``field`` and the file: a missing file, not a GGUF file, or one
            transformers cannot read as a causal LM (an unsupported architecture or tokenizer).
    """
    ref = str(path) if ref is None else ref
    source = locate(path, file, field, ref)
    digest = file_sha256(source)
    folder = cache_dir() / digest[:16]
    if _complete(folder, digest):
        return folder
    if folder.exists():  # a folder of another file with the same prefix, or edited by hand: rebuild it
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-", suffix=".tmp"))
    try:
        info = read_gguf_info(source)
        _say(f"converting {source.name} ({source.stat().st_size / 1e6:.0f} MB, {info['quantization']}) to a "
             f"transformers folder (once per file; dequantizing to float32) ...")
        started = time.monotonic()
        parameters = _write_folder(source, tmp, field, ref)
        record = {"source": str(source), "file": source.name, "sha256": digest, "size_bytes": source.stat().st_size,
                  **info, "parameters": parameters, "dtype": "float32", "note": _note(info["quantization"])}
        (tmp / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp's 0700 was only for while it was incomplete
        try:
            os.rename(tmp, folder)
        except OSError:
            if not _complete(folder, digest):  # not another process finishing the same conversion first
                raise
        _say(f"converted in {time.monotonic() - started:.0f} s: {folder}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def provenance(folder: str | Path) -> dict[str, Any] | None:
    """What ``convert_gguf`` recorded about a converted folder's GGUF file, or None for any other folder.

    Returns:
        ``source`` (the path converted from), ``file``, ``sha256``, ``size_bytes``, ``architecture``,
        ``name``, ``quantization`` (the file type, e.g. ``Q4_1``), ``tensor_types`` (tensor count per
        type), ``parameters``, ``dtype`` (of the saved weights) and ``note`` (dequantized, not original).
    """
    record = Path(folder) / SOURCE_FILE
    if not record.is_file():
        return None
    return json.loads(record.read_text(encoding="utf-8"))


def read_gguf_info(path: str | Path) -> dict[str, Any]:
    """A GGUF file's architecture, name and quantization, read with the ``gguf`` package's ``GGUFReader``.

    Returns:
        ``{"architecture", "name", "quantization", "tensor_types"}``; ``quantization`` is the file type
        llama.cpp wrote (``general.file_type``: ``Q4_1`` for ``MOSTLY_Q4_1``), else the most common
        type of the matrices.
    """
    from gguf import GGUFReader, LlamaFileType

    reader = GGUFReader(str(path))

    def field(key: str) -> Any:
        value = reader.fields.get(key)
        return None if value is None else value.contents()

    types = Counter(tensor.tensor_type.name for tensor in reader.tensors)
    try:
        quantization = LlamaFileType(int(field("general.file_type"))).name.removeprefix("MOSTLY_")
        quantization = quantization.removeprefix("ALL_")
    except (TypeError, ValueError):
        matrices = Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) > 1)
        quantization = (matrices or types or Counter({"unknown": 1})).most_common(1)[0][0]
    return {"architecture": field("general.architecture"), "name": field("general.name"),
            "quantization": quantization, "tensor_types": dict(types.most_common())}


def _write_folder(source: Path, out: Path, field: str, ref: str) -> int:
    """Load ``source`` with transformers and save it to ``out`` as a plain folder; returns the parameter count."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.parent), source.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except Exception as exc:  # anything transformers cannot make of the file's content is the file's fault
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{field} {ref!r}: transformers cannot read {name} as a causal LM: {first}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the saved weights are plain float32; no GGUF loader needed to read them
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    del loaded
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and 0 < positions < tokenizer.model_max_length:
        tokenizer.model_max_length = positions  # a GGUF states no limit; the model's positions are it
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return sum(p.numel() for p in model.parameters())


def _complete(folder: Path, digest: str) -> bool:
    """Whether ``folder`` is a finished conversion of the file with SHA-256 ``digest``."""
    try:
        return (provenance(folder) or {}).get("sha256") == digest
    except (OSError, ValueError):
        return False


def _note(quantization: str) -> str:
    if quantization in _FLOAT_TYPES:
        return f"weights stored as {quantization} in the GGUF file, converted to float32 without loss"
    return (f"weights dequantized from the GGUF file's {quantization} quantization to float32: they carry its "
            "rounding error and are not the model's original (e.g. bf16) weights")


def _say(message: str) -> None:
    print(f"gguf: {message}", file=sys.stderr, flush=True)
