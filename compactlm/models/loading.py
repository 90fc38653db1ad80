"""Loading any Hugging Face model as a base: a local folder, a GGUF file, a hub id or a registry version.

``load_base`` gives the model with the head a task needs (causal LM, seq2seq LM, masked LM or
sequence classification) and its tokenizer. Offline (``HF_HUB_OFFLINE=1``, the embedded default) a hub
id is only found in the local cache; anything else fails with one line naming ``model.base``. A GGUF
file is converted once to a cached model folder (``compactlm.models.gguf``) and loads from there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from compactlm.errors import ConfigError
from compactlm.models import bundled, gguf

Kind = Literal["causal", "seq2seq", "encoder", "classifier"]
KINDS: tuple[str, ...] = ("causal", "seq2seq", "encoder", "classifier")
_AUTO_CLASSES = {"causal": "AutoModelForCausalLM", "seq2seq": "AutoModelForSeq2SeqLM",
                 "encoder": "AutoModelForMaskedLM", "classifier": "AutoModelForSequenceClassification"}


def hub_offline() -> bool:
    """Whether the Hugging Face hub may not be contacted (HF_HUB_OFFLINE set to a true value)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or ref.count("/") > 1


def _download_registry_model(uri: str) -> Path:
    """Download a registered version (``models:/name@alias`` or ``models:/name/3``) and find its model folder."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except MlflowException as exc:
        raise ConfigError(f"model reference {uri!r}: {str(exc).splitlines()[0]}") from None
    configs = sorted(local.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise ConfigError(f"model reference {uri!r} holds no saved transformers model (no config.json)")
    return configs[0].parent


def resolve_model_ref(ref: str, field: str = "model.base") -> str:
    """A local folder for a folder, GGUF file or registry URI; a hub id is returned as is (checked when loaded).

    Args:
        ref: a model folder; a GGUF file (``path/to/model.Q4_1.gguf``, or a folder without ``config.json``
            holding exactly one ``.gguf`` file); a ``models:/name@alias`` / ``models:/name/3`` /
            ``runs:/`` URI; a ``bundled:<name>`` model (``compactlm.models.bundled``); or a hub id.
        field: the config field named in error messages.

    Returns:
        The folder path (a registry version is downloaded first, a GGUF file converted once to a
        cached folder, see ``compactlm.models.gguf``), or the hub id unchanged.

    Raises:
        ConfigError: a path that does not exist, a folder with neither a transformers ``config.json``
            nor a ``.gguf`` file, a file that is not GGUF or that transformers cannot read, a registry
            URI MLflow cannot resolve, or a bundled model that is not installed.
    """
    ref = str(ref).strip()
    if ref.startswith(("models:/", "runs:/")):
        return str(_download_registry_model(ref))
    if ref.startswith(bundled.PREFIX):
        return bundled.bundled_path(ref, field)
    path = Path(ref).expanduser()
    if path.suffix.lower() == gguf.SUFFIX or gguf.is_gguf_file(path):
        return str(gguf.convert_gguf(path, field=field, ref=ref))
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path)
        if any(path.glob(f"*{gguf.SUFFIX}")):
            return str(gguf.convert_gguf(path, field=field, ref=ref))
        raise ConfigError(f"{field} {ref!r}: the folder holds no saved transformers model (no config.json) "
                          f"and no {gguf.SUFFIX} file")
    if path.is_file():
        raise ConfigError(f"{field} {ref!r}: a file that is neither a model folder nor a GGUF file")
    if _looks_like_path(ref):
        raise ConfigError(f"{field} {ref!r}: no such model folder")
    return ref


def gguf_provenance(ref: str | None) -> dict[str, Any] | None:
    """Where a base came from when it is a converted GGUF file (``compactlm.models.gguf.provenance``), else None.

    Never converts or downloads anything: a hub id, a registry URI, a plain model folder, a missing
    path or a GGUF file not converted yet (a run converts its base before this is asked) give None.

    Args:
        ref: a ``model.base`` (or ``distill.teacher``) value: a GGUF file, a folder holding one, a
            ``bundled:<name>`` GGUF model or a converted folder; or None.
    """
    if not ref:
        return None
    ref = str(ref).strip()
    if ref.startswith(bundled.PREFIX):
        known = bundled.BUNDLED.get(ref.removeprefix(bundled.PREFIX))
        path = known.path() if known is not None and known.gguf is not None else None
    else:
        path = Path(ref).expanduser()
    if path is None or not path.exists():
        return None
    if path.is_dir() and (path / "config.json").is_file():
        return gguf.provenance(path)
    try:
        folder = gguf.cached_folder(path)
        file = gguf.locate(path)
    except ConfigError:
        return None
    record = gguf.provenance(folder) if folder is not None else None
    if record is not None and record.get("source") != str(file):
        # The cache is keyed by content: it may have been converted from the same bytes elsewhere (another
        # checkout's environment). The lineage names the file this run read, and where it was converted from.
        record = {**record, "source": str(file), "converted_from": record.get("source")}
    return record


def load_model_config(ref: str, field: str = "model.base"):
    """The transformers config of a folder, registry URI or hub id (the hub only when online).

    Returns:
        A ``transformers.PretrainedConfig``.

    Raises:
        ConfigError: one line: a missing folder, an uncached hub id while offline, or an unknown id.
    """
    return _auto_config(resolve_model_ref(ref, field), ref, field)


def _auto_config(source: str, ref: str, field: str):
    """The transformers config at ``source`` (what ``ref`` resolved to); errors name ``ref``."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, local_files_only=hub_offline())
    except (OSError, ValueError) as exc:
        raise _unreachable(ref, source, field, exc) from None


def _unreachable(ref: str, source: str, field: str, exc: Exception) -> ConfigError:
    """One line for a model that cannot be read: offline hub, unknown id, broken folder."""
    if not Path(source).is_dir() and hub_offline():
        return ConfigError(f"{field} {ref!r}: not a local folder and the Hugging Face hub is offline "
                           "(HF_HUB_OFFLINE=1); download it once with the hub online, or point "
                           f"{field} at a saved model folder")
    return ConfigError(f"{field} {ref!r}: {str(exc).strip().splitlines()[0]}")


def detect_kind(config: Any) -> Kind:
    """``seq2seq`` for encoder-decoders, ``causal`` for decoders, ``encoder`` for BERT-like models.

    Decided by ``is_encoder_decoder``, then the saved ``architectures`` names, then whether transformers
    maps the ``model_type`` to a causal LM.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if "CausalLM" in architectures or "LMHead" in architectures:
        return "causal"
    if "MaskedLM" in architectures or "SequenceClassification" in architectures:
        return "encoder"
    return "causal" if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else "encoder"


def max_positions(config: Any) -> int | None:
    """The longest sequence, in tokens, a model's position embeddings cover (None: relative positions, e.g. T5)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_seq_len(config: Any, max_seq_len: int, field: str = "model.max_seq_len") -> None:
    """Fail before any compute when ``max_seq_len`` exceeds the model's positions.

    Args:
        config: a transformers config (see ``max_positions``).
        max_seq_len: the requested context length, in tokens.
        field: the config field named in the error.

    Raises:
        ConfigError: ``max_seq_len`` is larger than the base's position embeddings (a model with
            relative positions accepts any length).
    """
    positions = max_positions(config)
    if positions is not None and max_seq_len > positions:
        raise ConfigError(f"{field} must be in [8, {positions}] (the base's positions), got {max_seq_len}")


def load_tokenizer_for(ref: str, field: str = "model.base"):
    """The tokenizer of a folder, registry URI or hub id, with a pad token (EOS when it defines none).

    Args:
        ref: as ``resolve_model_ref``.
        field: the config field named in error messages.

    Raises:
        ConfigError: the tokenizer cannot be read (see ``load_model_config``), or has no pad/EOS token.
    """
    from transformers import AutoTokenizer

    source = resolve_model_ref(ref, field)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=hub_offline())
    except (OSError, ValueError) as exc:
        raise _unreachable(ref, source, field, exc) from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"{field} {ref!r}: its tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out of the loss and attention
    return tokenizer


def load_base(name_or_path: str, kind: Kind, num_labels: int | None = None,
              id2label: dict[int, str] | None = None, max_seq_len: int | None = None,
              field: str = "model.base", **model_kwargs: Any):
    """Load a Hugging Face model with the head ``kind`` needs, and its tokenizer.

    Args:
        name_or_path: a saved model folder, a ``models:/`` registry URI or a hub id.
        kind: ``causal``, ``seq2seq``, ``encoder`` (masked LM) or ``classifier`` (sequence classification).
        num_labels: classifier only (default 2); ``id2label`` also names them (saved in the model's config).
        id2label: classifier only: label id -> label string; overrides ``num_labels``.
        max_seq_len: in tokens; checked against the base's positions before the weights are read.
        field: the config field named in error messages.
        **model_kwargs: passed to ``from_pretrained`` (``quantization_config``, ``dtype``...).

    Returns:
        ``(model, tokenizer)``.

    Raises:
        ConfigError: an unknown or unreachable base, a head the architecture does not have, or a
            sequence length beyond the base's positions.
    """
    import transformers

    if kind not in KINDS:
        raise ConfigError(f"model kind must be one of {', '.join(KINDS)}, got {kind!r}")
    source = resolve_model_ref(name_or_path, field)  # a registry version is downloaded once, here
    config = _auto_config(source, name_or_path, field)
    if max_seq_len is not None:
        check_seq_len(config, max_seq_len)
    auto = getattr(transformers, _AUTO_CLASSES[kind])
    if kind == "classifier":
        labels = id2label or {i: f"LABEL_{i}" for i in range(num_labels or 2)}
        model_kwargs.update(num_labels=len(labels), id2label=dict(labels),
                            label2id={v: k for k, v in labels.items()})
    try:
        model = auto.from_pretrained(source, local_files_only=hub_offline(), **model_kwargs)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise ConfigError(f"{field} {name_or_path!r} is a {config.model_type} model, which has no {kind} "
                              "head") from None
        raise
    return model, load_tokenizer_for(source, field)


def load_trained(model_dir: str | Path, task: str):
    """A model this project trained, from its ``save_pretrained`` folder, with the head its task needs.

    Args:
        model_dir: the folder with ``config.json``, weights and tokenizer.
        task: the data shape; ``classification`` loads a sequence classifier (its saved labels kept),
            anything else a seq2seq or causal LM by the saved config.

    Returns:
        ``(model, tokenizer)``, on the CPU.
    """
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(model_dir))
    if task == "classification":
        auto = transformers.AutoModelForSequenceClassification
    elif getattr(config, "is_encoder_decoder", False):
        auto = transformers.AutoModelForSeq2SeqLM
    else:
        auto = transformers.AutoModelForCausalLM
    return auto.from_pretrained(str(model_dir)), transformers.AutoTokenizer.from_pretrained(str(model_dir))
