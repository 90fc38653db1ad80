"""Make a pretrained encoder compact before fine-tuning: prune its vocabulary to the task's text, keep fewer layers.

A pretrained BERT-style encoder spends most of its parameters on a 30,000-token embedding table that a
support team's vocabulary never touches: all-MiniLM-L6-v2 holds 11.7M of its 22.7M parameters there.
``prune_vocabulary`` keeps the tokens the training texts use (plus the special tokens and every ASCII
character and ``##``-character, so unseen words still split into known pieces), with their pretrained
embeddings; ``keep_layers`` drops transformer layers, keeping the first and the last and spreading the
rest evenly (layer dropping as in Sajjad et al. 2023, "On the effect of dropping layers of pre-trained
transformer models"). The result is a plain transformers model with a matching fast tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from compactlm.errors import ConfigError


def _kept_tokens(tokenizer: Any, texts: Iterable[str]) -> list[str]:
    """The vocabulary to keep, in the original id order: used tokens, specials, ASCII characters."""
    used: set[int] = set()
    for text in texts:
        used.update(tokenizer(str(text), add_special_tokens=False, verbose=False)["input_ids"])
    specials = set(tokenizer.all_special_tokens)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return [token for token, index in vocab if index in used or token in specials or _ascii_piece(token)]


def _ascii_piece(token: str) -> bool:
    """A single ASCII character, alone or as a ``##`` continuation: any word can still be spelt with these."""
    return token.isascii() and (len(token) == 1 or (len(token) == 3 and token.startswith("##")))


def _pruned_tokenizer(tokenizer: Any, tokens: list[str]) -> Any:
    """A fast tokenizer with the same normalizer, pre-tokenizer and templates over ``tokens`` (ids renumbered)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "WordPiece":
        raise ConfigError(f"model.prune_vocab needs a WordPiece tokenizer (BERT-style), got {spec['model']['type']}")
    ids = {token: index for index, token in enumerate(tokens)}
    spec["model"]["vocab"] = ids
    processor = spec.get("post_processor") or {}
    for special in (processor.get("special_tokens") or {}).values():  # TemplateProcessing
        special["ids"] = [ids[token] for token in special["tokens"]]
    for key in ("cls", "sep"):  # BertProcessing: [token, id]
        if isinstance(processor.get(key), list):
            processor[key][1] = ids[processor[key][0]]
    for added in spec.get("added_tokens", []):
        added["id"] = ids[added["content"]]
    special_map = {name: getattr(tokenizer, name) for name in ("pad_token", "unk_token", "cls_token", "sep_token",
                                                               "mask_token") if getattr(tokenizer, name, None)}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), **special_map,
                                   model_max_length=tokenizer.model_max_length, padding_side="right",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def prune_vocabulary(model: Any, tokenizer: Any, texts: Iterable[str]) -> tuple[Any, Any]:
    """Keep only the vocabulary ``texts`` use (see the module docstring), with the pretrained embeddings.

    Args:
        model: a BERT-style transformers model (its input embeddings are resized in place).
        tokenizer: its fast WordPiece tokenizer.
        texts: the training texts (the train split only, so the test split cannot leak into the vocabulary).

    Returns:
        ``(model, tokenizer)``: the same model object with a smaller embedding table, and a new tokenizer.

    Raises:
        ConfigError: a tokenizer that is not WordPiece.
    """
    import torch

    tokens = _kept_tokens(tokenizer, texts)
    old_ids = torch.tensor([tokenizer.convert_tokens_to_ids(token) for token in tokens])
    new_tokenizer = _pruned_tokenizer(tokenizer, tokens)
    old = model.get_input_embeddings()
    table = torch.nn.Embedding(len(tokens), old.weight.shape[1], padding_idx=new_tokenizer.pad_token_id)
    with torch.no_grad():
        table.weight.copy_(old.weight[old_ids])
    model.set_input_embeddings(table)
    model.config.vocab_size = len(tokens)
    model.config.pad_token_id = new_tokenizer.pad_token_id
    return model, new_tokenizer


def layers_to_keep(total: int, keep: int) -> list[int]:
    """Which of ``total`` layers to keep: the first, the last, and the rest spread evenly (0-based indices).

    Raises:
        ConfigError: ``keep`` outside ``[1, total]``.
    """
    if not 1 <= keep <= total:
        raise ConfigError(f"model.keep_layers must be in [1, {total}] (the base's layers), got {keep}")
    if keep == 1:
        return [0]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def keep_layers(model: Any, keep: int) -> Any:
    """Drop transformer layers of a BERT-style model in place, keeping ``keep`` of them (``layers_to_keep``).

    Raises:
        ConfigError: ``keep`` outside ``[1, layers]``, or a model without ``<base>.encoder.layer``.
    """
    import torch

    base = getattr(model, model.base_model_prefix, model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None:
        raise ConfigError(f"model.keep_layers: {type(model).__name__} has no encoder layers to drop")
    indices = layers_to_keep(len(layers), keep)
    base.encoder.layer = torch.nn.ModuleList([layers[i] for i in indices])
    model.config.num_hidden_layers = len(indices)
    return model


def trim_positions(model: Any, length: int) -> Any:
    """Keep the first ``length`` learned position embeddings of a BERT-style model (the longest input it gets).

    Raises:
        ConfigError: a model without learned absolute positions, or ``length`` beyond them.
    """
    import torch

    embeddings = getattr(getattr(model, model.base_model_prefix, model), "embeddings", None)
    positions = getattr(embeddings, "position_embeddings", None)
    if positions is None:
        raise ConfigError(f"model.prune_vocab: {type(model).__name__} has no learned position embeddings to trim")
    if length > positions.num_embeddings:
        raise ConfigError(f"model.max_seq_len must be at most {positions.num_embeddings} (the base's positions), "
                          f"got {length}")
    table = torch.nn.Embedding(length, positions.embedding_dim)
    with torch.no_grad():
        table.weight.copy_(positions.weight[:length])
    embeddings.position_embeddings = table
    for name in ("position_ids", "token_type_ids"):  # buffers sized to the positions
        if hasattr(embeddings, name):
            setattr(embeddings, name, getattr(embeddings, name)[:, :length].clone())
    model.config.max_position_embeddings = length
    return model


def compact_encoder(model: Any, tokenizer: Any, texts: Iterable[str], prune_vocab: bool, keep: int,
                    max_seq_len: int) -> tuple[Any, Any]:
    """Apply the configured compaction (``model.prune_vocab``, ``model.keep_layers``) to a loaded encoder.

    ``prune_vocab`` also cuts the position table to ``max_seq_len`` (positions past it are never used).

    Returns:
        ``(model, tokenizer)``, unchanged when neither is configured.

    Raises:
        ConfigError: see ``prune_vocabulary``, ``keep_layers`` and ``trim_positions``.
    """
    if prune_vocab:
        model, tokenizer = prune_vocabulary(model, tokenizer, texts)
        model = trim_positions(model, max_seq_len)
        tokenizer.model_max_length = max_seq_len
    if keep:
        model = keep_layers(model, keep)
    return model, tokenizer
