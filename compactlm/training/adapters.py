"""PEFT adapters: LoRA target checks, QLoRA (4-bit base through bitsandbytes), adapter and merged saves.

LoRA is Hu et al. 2021 (https://arxiv.org/abs/2106.09685); QLoRA, a LoRA adapter on an NF4-quantized
frozen base, is Dettmers et al. 2023 (https://arxiv.org/abs/2305.14314).

bitsandbytes is optional and only imported when ``finetune.quantize_4bit`` is set; without CUDA or without
the package the run fails before any compute with one line saying so.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from compactlm.config import FinetuneConfig
from compactlm.errors import ConfigError
from compactlm.models.loading import Kind, load_base
from compactlm.training.runner import on_main_process

# PEFT task types per model kind (they decide which head PEFT keeps trainable and how it saves).
TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "classifier": "SEQ_CLS",
              "encoder": "FEATURE_EXTRACTION"}


def linear_module_names(model) -> list[str]:
    """The short names of the model's linear layers (what LoRA can target), sorted and de-duplicated.

    ``torch.nn.Linear`` and GPT-2's ``Conv1D`` count; e.g. ``["down_proj", "gate_proj", "k_proj", ...]``.
    """
    import torch

    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"}
    return sorted(names)


def resolve_target_modules(model, targets: list[str]) -> list[str] | str | None:
    """LoRA targets: ``all-linear``, ``auto`` (PEFT's default for the architecture) or module names.

    Args:
        model: the base model.
        targets: ``finetune.target_modules``: ``["all-linear"]``, ``["auto"]`` or short module names.

    Returns:
        What ``peft.LoraConfig(target_modules=...)`` takes: ``"all-linear"``, None (PEFT picks its
        default for the ``model_type``) or the names.

    Raises:
        ConfigError: a named module the model does not have (the message lists its linear layers),
            or ``auto`` for an architecture PEFT has no default for.
    """
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    if targets == ["all-linear"]:
        return "all-linear"
    if targets == ["auto"]:
        model_type = getattr(model.config, "model_type", "")
        if model_type not in DEFAULTS:
            raise ConfigError(f"finetune.target_modules 'auto' has no default for {model_type!r} models; name them "
                              f"(linear layers: {linear_module_names(model)})")
        return None
    available = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [m for m in targets if m not in available]
    if unknown:
        raise ConfigError(f"finetune.target_modules {unknown} are not modules of the model "
                          f"(linear layers: {linear_module_names(model)})")
    return list(targets)


def apply_lora(model, finetune_cfg: FinetuneConfig, kind: Kind):
    """Wrap ``model`` in a PEFT LoRA adapter (only the adapter, and a classifier's head, train).

    The update is scaled by ``finetune.alpha / finetune.r`` (PEFT's ``LoraConfig``).

    Args:
        model: the base model.
        finetune_cfg: ``r``, ``alpha``, ``dropout`` (probability) and ``target_modules``.
        kind: the model kind; picks PEFT's ``task_type`` (``TASK_TYPES``).

    Returns:
        A ``peft.PeftModel``.

    Raises:
        ConfigError: an unknown target module, or ``auto`` for an architecture PEFT has no default for.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = resolve_target_modules(model, finetune_cfg.target_modules)
    extra: dict[str, Any] = {}
    if kind == "classifier" and any(name.endswith("pooler") for name, _ in model.named_modules()):
        # A BERT pooler is new when the base was MLM-pretrained: train it and save it with the adapter
        # (with the head), or a reloaded adapter would meet a differently initialised pooler.
        extra["modules_to_save"] = ["classifier", "score", "pooler"]
    peft_config = PeftLoraConfig(r=finetune_cfg.r, lora_alpha=finetune_cfg.alpha, lora_dropout=finetune_cfg.dropout,
                                 target_modules=targets, task_type=TASK_TYPES[kind], **extra)
    return get_peft_model(model, peft_config)


def require_4bit_support(device: str) -> None:
    """Fail before any compute unless QLoRA can run here (CUDA and bitsandbytes).

    Raises:
        ConfigError: one line naming ``finetune.quantize_4bit`` and what is missing.
    """
    if device != "cuda":
        raise ConfigError("finetune.quantize_4bit needs a CUDA device with bitsandbytes; this run is on the "
                          f"{device} (set finetune.quantize_4bit=false, or run on a GPU)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("finetune.quantize_4bit needs a CUDA device with bitsandbytes; bitsandbytes is not "
                          "installed (pip install bitsandbytes on the GPU machine)")


def quantized_load_kwargs() -> dict[str, Any]:
    """``from_pretrained`` arguments for an NF4 base with bf16 compute (the QLoRA recipe).

    NF4 weights with double quantization of the scales (Dettmers et al. 2023), compute in bf16 where the
    GPU supports it, else fp16; the whole model on this process's GPU (``LOCAL_RANK`` under torchrun).
    Needs CUDA (see ``require_4bit_support``).
    """
    import torch
    from transformers import BitsAndBytesConfig

    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # Under torchrun each process quantizes its own copy onto its own GPU.
    device = int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))
    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype),
            "dtype": dtype, "device_map": {"": device}}


def load_for_finetuning(base: str | Path, kind: Kind, finetune_cfg: FinetuneConfig, device: str, max_seq_len: int,
                        gradient_checkpointing: bool, **kwargs: Any):
    """Load the base (in 4 bits for QLoRA) and put the adapter on it unless ``finetune.mode`` is ``full``.

    Args:
        base: a model folder, ``models:/`` URI or hub id.
        kind: the head to load (``causal``, ``seq2seq``, ``classifier``...).
        finetune_cfg: mode, ``quantize_4bit`` and the LoRA settings.
        device: the resolved device (``cpu`` or ``cuda``).
        max_seq_len: in tokens; checked against the base's positions before the weights are read.
        gradient_checkpointing: QLoRA only: prepare the 4-bit model for checkpointing.
        **kwargs: passed to ``load_base`` (e.g. ``id2label`` for a classifier).

    Returns:
        ``(model, tokenizer)``.

    Raises:
        ConfigError: QLoRA without CUDA or bitsandbytes, an unknown or unreachable base, a head the
            architecture lacks, a length beyond its positions, or an unknown LoRA target.
    """
    if finetune_cfg.quantize_4bit:
        require_4bit_support(device)
        kwargs.update(quantized_load_kwargs())
    model, tokenizer = load_base(str(base), kind, max_seq_len=max_seq_len, **kwargs)
    if finetune_cfg.quantize_4bit:
        from peft import prepare_model_for_kbit_training

        # Casts norms to fp32 and enables input gradients so checkpointing works through frozen 4-bit layers.
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None)
    if finetune_cfg.mode == "lora":
        model = apply_lora(model, finetune_cfg, kind)
    return model, tokenizer


def merged_model(model, base: str | Path, kind: Kind, finetune_cfg: FinetuneConfig, adapter_dir: Path, **kwargs: Any):
    """The model to ship: the adapter merged into the base (a QLoRA base is reloaded unquantized first).

    Args:
        model: the trained model (a ``PeftModel`` with LoRA; returned as is for ``mode: full``).
        base, kind, **kwargs: how to reload the base for QLoRA (as ``load_base``).
        finetune_cfg: ``mode`` and ``quantize_4bit``.
        adapter_dir: the saved adapter, merged into the reloaded base for QLoRA.

    Returns:
        A plain transformers model (no PEFT wrapper).
    """
    if finetune_cfg.mode == "full":
        return model
    if not finetune_cfg.quantize_4bit:
        return model.merge_and_unload()
    from peft import PeftModel

    # Merging into NF4 weights would round the update away: merge into the full-precision base instead.
    full, _ = load_base(str(base), kind, **kwargs)
    return PeftModel.from_pretrained(full, str(adapter_dir)).merge_and_unload()


def save_finetuned(trainer, model, tokenizer, base: str | Path, kind: Kind, finetune_cfg: FinetuneConfig,
                   output_dir: Path, **kwargs: Any) -> None:
    """Save the adapter (LoRA) and the merged model + tokenizer under ``output_dir``, on the main process only.

    Writes ``output_dir/adapter`` (LoRA only) and ``output_dir/merged``; other processes wait (DDP).
    Arguments as ``merged_model``; ``trainer`` is the stage's Trainer.
    """

    def save() -> None:
        if finetune_cfg.mode == "lora":
            model.save_pretrained(output_dir / "adapter")
        merged = merged_model(model, base, kind, finetune_cfg, output_dir / "adapter", **kwargs)
        merged.save_pretrained(output_dir / "merged")
        tokenizer.save_pretrained(output_dir / "merged")

    on_main_process(trainer, save)
