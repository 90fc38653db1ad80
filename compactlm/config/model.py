"""The ``model`` section: which network is trained (a CompactLM preset or any Hugging Face base)."""

from __future__ import annotations

from pydantic.dataclasses import dataclass

from compactlm.config.validation import SECTION, check
from compactlm.models.presets import PRESETS


@dataclass(config=SECTION)
class ModelConfig:
    """Which model to train: a CompactLM preset (built here, its tokenizer trained here) or any HF base.

    ``base`` is a local Hugging Face model folder, a hub id, a registry URI or a ``bundled:<name>`` model
    (causal, seq2seq such as T5, or an encoder); when set, the preset and ``vocab_size`` are not used and
    ``max_seq_len`` is checked against the base's positions when it is loaded. ``prune_vocab`` and
    ``keep_layers`` compact a pretrained encoder base before it is fine-tuned as a classifier.

    Raises:
        ConfigError: an unknown preset, a vocabulary outside [256, 256000], a blank base, a dropout
            outside [0, 1), or a ``max_seq_len`` beyond the preset's positions (or below 8).
    """

    preset: str = "decoder-micro"
    vocab_size: int = 2048
    max_seq_len: int = 128
    base: str | None = None  # a HF model folder, hub id, models:/ URI or bundled:<name> instead of a preset
    dropout: float | None = None  # preset dropout (Llama attention, BERT hidden+attention); None: the architecture's
    # Compacting a pretrained encoder base (classification, finetune.mode: full; see compactlm.models.compress):
    prune_vocab: bool = False  # keep the tokens the train split uses (+ specials, ASCII characters), positions cut
    keep_layers: int | None = 0  # 0 or null: every layer of the base; N: keep N (first, last, the rest spread evenly)

    def __post_init__(self) -> None:
        check(self.preset in PRESETS, "model.preset", self.preset, f"one of {sorted(PRESETS)}")
        check(256 <= self.vocab_size <= 256_000, "model.vocab_size", self.vocab_size, "in [256, 256000]")
        check(self.base is None or bool(str(self.base).strip()), "model.base", self.base,
              "a model folder or hub id (or null for the preset)")
        check(self.dropout is None or 0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "in [0, 1) or null")
        self.keep_layers = self.keep_layers or 0  # null reads as "every layer", like 0
        check(self.keep_layers >= 0, "model.keep_layers", self.keep_layers, ">= 0 (0: every layer)")
        for name in ("prune_vocab", "keep_layers"):
            check(not getattr(self, name) or self.base is not None, f"model.{name}", getattr(self, name),
                  "unset without model.base (it compacts a pretrained base)")
        if self.base is None:  # a base's positions are only known once its config is read (models.loading)
            max_pos = PRESETS[self.preset].max_position_embeddings
            check(8 <= self.max_seq_len <= max_pos, "model.max_seq_len", self.max_seq_len,
                  f"in [8, {max_pos}] (the preset's positions)")
        else:
            check(self.max_seq_len >= 8, "model.max_seq_len", self.max_seq_len, ">= 8")
