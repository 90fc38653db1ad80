"""Tokenizer training with Hugging Face ``tokenizers`` and the instruction prompt format.

The decoder tokenizer is byte-level BPE (no unknown characters, ever). It ships a chat template, so
``tokenizer.apply_chat_template([{"role": "user", "content": ...}])`` yields the exact prompt the
model was fine-tuned on.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from compactlm.errors import ConfigError

PAD, BOS, EOS, UNK = "<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]

# The prompt the decoder is fine-tuned on; the response follows directly and ends with EOS.
PROMPT_TEMPLATE = "### Instruction:\n{instruction}\n### Response:\n"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}### Instruction:\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}### Response:\n{{ message['content'] }}" + EOS + "\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)


def format_prompt(instruction: str) -> str:
    """The model's input for one customer message."""
    return PROMPT_TEMPLATE.format(instruction=instruction.strip())


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int):
    """Train a byte-level BPE tokenizer on ``texts``.

    Args:
        texts: the training corpus (the train split only, never validation or test).
        vocab_size: target vocabulary, special tokens included.
        model_max_length: the model's context length, stored on the tokenizer.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` with pad/bos/eos/unk and the chat template set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ConfigError(f"model.vocab_size must be >= {256 + len(SPECIAL_TOKENS)}, got {vocab_size}")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # Byte-level offsets only; BOS is added by our formatting code, not by the post-processor.
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=model_max_length,
        padding_side="right",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def load_tokenizer(path: str | Path):
    """Load a tokenizer saved with ``save_pretrained``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
