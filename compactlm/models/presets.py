"""CompactLM presets: compact configs of standard transformers architectures.

Decoders are Llama-style (RMSNorm, SwiGLU, RoPE) for chat and summarization; encoders are BERT-style
for masked-LM pretraining and classification. Every preset is a plain ``transformers`` config, so a
saved CompactLM model loads with ``AutoModelForCausalLM.from_pretrained`` anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from compactlm.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """Shape of one preset; the vocabulary size comes from the trained tokenizer.

    Attributes:
        kind: ``decoder`` (Llama-style causal LM) or ``encoder`` (BERT-style).
        hidden_size: width of the residual stream (model dimension).
        num_layers: transformer blocks.
        num_heads: attention heads; the head size is ``hidden_size // num_heads``.
        intermediate_size: width of the feed-forward layer (SwiGLU for decoders, GELU for encoders).
        max_position_embeddings: the longest sequence, in tokens (RoPE range for decoders, learned
            positions for encoders).
        num_kv_heads: key/value heads for grouped-query attention (Ainslie et al. 2023); None: one per head.
    """

    kind: Literal["decoder", "encoder"]
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int
    num_kv_heads: int | None = None  # grouped-query attention for the larger decoders

    def approx_params(self, vocab_size: int) -> int:
        """Parameters for a vocabulary (embeddings tied for decoders), to within a few percent.

        Decoder layer: Q/O ``2h^2``, K/V ``2h * kv`` (``kv`` = key/value width), SwiGLU ``3hi``, two
        RMSNorms ``2h``; plus the tied embedding and the final norm. Encoder layer: Q/K/V/O ``4h^2``, FFN
        ``2hi``, biases and LayerNorms ``9h + i``; plus word, position and two token-type embeddings
        (the embedding LayerNorm, pooler and heads are left out).

        Args:
            vocab_size: tokens in the vocabulary.
        """
        h, i, n = self.hidden_size, self.intermediate_size, self.num_layers
        kv = (self.num_kv_heads or self.num_heads) * (h // self.num_heads)
        if self.kind == "decoder":
            per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
            return n * per_layer + vocab_size * h + h
        per_layer = 4 * h * h + 2 * h * i + 9 * h + i
        return n * per_layer + (vocab_size + self.max_position_embeddings + 2) * h


PRESETS: dict[str, Preset] = {
    # Test-sized: trains in seconds on one CPU core.
    "decoder-tiny": Preset("decoder", 64, 2, 4, 128, 256),
    # The embedded demo: ~1M parameters, a few minutes on 2 CPU cores.
    "decoder-micro": Preset("decoder", 128, 4, 4, 384, 256),
    "decoder-mini": Preset("decoder", 256, 6, 8, 768, 512),
    # ~10M: the training benchmark's model (benchmarks/train_bench.py); head size 64 like the larger ones.
    "decoder-10m": Preset("decoder", 320, 6, 5, 864, 1024),
    # ~13M with a 49,152-token vocabulary (9.4M of it the tied embedding): a student at 10 % of
    # SmolLM2-135M that shares its tokenizer (benchmarks/distill_bench.py); head size 64.
    "decoder-distil": Preset("decoder", 192, 8, 3, 512, 512),
    "decoder-small": Preset("decoder", 512, 8, 8, 1536, 1024, num_kv_heads=4),
    "decoder-base": Preset("decoder", 768, 12, 12, 2304, 2048, num_kv_heads=4),
    "encoder-tiny": Preset("encoder", 64, 2, 4, 128, 256),
    "encoder-mini": Preset("encoder", 256, 4, 4, 1024, 512),
    "encoder-small": Preset("encoder", 512, 8, 8, 2048, 512),
    "encoder-base": Preset("encoder", 768, 12, 12, 3072, 512),  # BERT-base shape
}


def get_preset(name: str) -> Preset:
    """Return a preset by name, or fail naming the choices.

    Raises:
        ConfigError: an unknown name (``model.preset``).
    """
    if name not in PRESETS:
        raise ConfigError(f"model.preset must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]


def build_decoder(name: str, vocab_size: int, pad_token_id: int, bos_token_id: int, eos_token_id: int,
                  dropout: float | None = None):
    """Build a randomly initialised Llama-style causal LM for a decoder preset.

    RMSNorm epsilon 1e-6 and initializer range 0.02 are ``transformers.LlamaConfig``'s defaults,
    written out so the saved config does not depend on the library version.

    Args:
        name: a decoder preset (``decoder-*``).
        vocab_size: the tokenizer's size (``len(tokenizer)``, special tokens included).
        pad_token_id, bos_token_id, eos_token_id: the tokenizer's special token ids.
        dropout: attention dropout probability; None keeps Llama's default (0).

    Returns:
        A ``transformers.LlamaForCausalLM`` with tied input/output embeddings, on the CPU, in fp32.

    Raises:
        ConfigError: an unknown preset, or an encoder preset.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    preset = get_preset(name)
    if preset.kind != "decoder":
        raise ConfigError(f"model.preset {name!r} is an encoder; this step needs a decoder preset")
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads,
        num_key_value_heads=preset.num_kv_heads or preset.num_heads,
        max_position_embeddings=preset.max_position_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
        initializer_range=0.02,
        attention_dropout=dropout or 0.0,
    )
    return LlamaForCausalLM(config)


ENCODER_HEADS = ("mlm", "classification")


def build_encoder(name: str, vocab_size: int, pad_token_id: int, head: str = "mlm",
                  id2label: dict[int, str] | None = None, dropout: float | None = None):
    """Build a randomly initialised BERT-style encoder for an encoder preset.

    Args:
        name: an encoder preset (``encoder-*``; ``encoder-base`` is BERT-base, Devlin et al. 2019).
        vocab_size: the tokenizer's size (``len(tokenizer)``, special tokens included).
        pad_token_id: the tokenizer's pad id.
        head: ``mlm`` (masked-LM pretraining, tied output embeddings) or ``classification``.
        id2label: the classification labels, id -> string (their count is the head's width).
        dropout: hidden and attention dropout probability; None keeps BERT's default (0.1).

    Returns:
        A ``transformers.BertForMaskedLM`` or ``BertForSequenceClassification``, on the CPU, in fp32.

    Raises:
        ConfigError: an unknown preset, a decoder preset, an unknown head, or a classification head
            without labels.
    """
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

    preset = get_preset(name)
    if preset.kind != "encoder":
        raise ConfigError(f"model.preset {name!r} is a decoder; this step needs an encoder preset")
    if head not in ENCODER_HEADS:
        raise ConfigError(f"encoder head must be one of {ENCODER_HEADS}, got {head!r}")
    extra = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    labels = {}
    if head == "classification":
        if not id2label:
            raise ConfigError("a classification encoder needs at least one label (id2label is empty)")
        labels = {"id2label": dict(id2label), "label2id": {v: k for k, v in id2label.items()}}
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=preset.hidden_size,
        num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads,
        intermediate_size=preset.intermediate_size,
        max_position_embeddings=preset.max_position_embeddings,
        type_vocab_size=2,
        pad_token_id=pad_token_id,
        initializer_range=0.02,
        **labels,
        **extra,
    )
    return BertForMaskedLM(config) if head == "mlm" else BertForSequenceClassification(config)
