"""Tokenizer training with Hugging Face ``tokenizers`` and the instruction prompt format.

The decoder tokenizer is byte-level BPE (no unknown characters, ever). It ships a chat template, so
``tokenizer.apply_chat_template([{"role": "user", "content": ...}])`` yields the prompt format the
model was fine-tuned on; ``render_chat`` renders the same format with user turns normalised, as the
training data, the evaluation and the serving engine use it. The encoder tokenizer is BERT-style WordPiece (lower-cased,
``[CLS] text [SEP]``, a ``[MASK]`` token for masked-LM pretraining).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from compactlm.errors import ConfigError

PAD, BOS, EOS, UNK = "<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
WORDPIECE_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# The prompt the decoder is fine-tuned on; the response follows directly and ends with EOS.
PROMPT_TEMPLATE = "### Instruction:\n{instruction}\n### Response:\n"
_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}### Instruction:\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}### Response:\n{{ message['content'] }}" + EOS + "\n"
    "{% else %}### System:\n{{ message['content'] }}\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)
# What marks a chat template as CompactLM's own format (also in models saved before system turns were in it).
CHAT_FORMAT_MARKER = "### Instruction:"


def normalize_message(text: str) -> str:
    """A customer message as the training data holds it.

    Runs of spaces are collapsed and lines stripped, as the data cleaning does to training text, so a
    message typed with stray spaces reaches the model the way the training data did. A message
    typed in capitals is lower-cased (placeholders kept): byte-level BPE turns shouted words into
    rare tokens a compact model has barely seen, and the casing carries no meaning the reply needs.
    "In capitals" means at least 4 letters outside ``{{placeholders}}``, 70% or more of them upper-case.
    """
    lines = (" ".join(line.split()) for line in text.strip().splitlines())
    return _unshout("\n".join(lines))


def render_chat(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """The chat format CompactLM decoders are fine-tuned on: what ``CHAT_TEMPLATE`` renders, user turns normalised.

    Training rows (``compactlm.data.chat``), evaluation and the serving engine all render conversations
    here, so the model sees at inference exactly the text it was trained on.

    Args:
        messages: ``{"role": "system" | "user" | "assistant", "content": str}`` dicts, in order.
        add_generation_prompt: end with the response marker the model completes.

    Returns:
        ``### System:`` / ``### Instruction:`` / ``### Response:`` blocks; each assistant turn ends with EOS.
    """
    parts = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "user":
            parts.append(f"### Instruction:\n{normalize_message(content)}\n")
        elif role == "assistant":
            parts.append(f"### Response:\n{content}{EOS}\n")
        else:
            parts.append(f"### System:\n{content}\n")
    if add_generation_prompt:
        parts.append("### Response:\n")
    return "".join(parts)


_BLOCK = re.compile(r"### (Instruction|Response|System):\n")
_BLOCK_ROLES = {"Instruction": "user", "Response": "assistant", "System": "system"}


def parse_chat(text: str) -> list[dict[str, str]]:
    """The turns of a conversation rendered by ``render_chat`` (the ``context`` column of chat rows).

    The inverse of ``render_chat`` without a generation prompt: every ``### Instruction:`` /
    ``### Response:`` / ``### System:`` block becomes one message (its trailing newline, and EOS after a
    response, removed). A model with its own chat template re-renders earlier turns from these.

    Args:
        text: ``render_chat`` output; empty or blank for no earlier turns.

    Returns:
        ``{"role", "content"}`` dicts in order (``[]`` for blank text).

    Raises:
        ValueError: non-blank text that does not start with a block header.
    """
    if not text.strip():
        return []
    headers = list(_BLOCK.finditer(text))
    if not headers or headers[0].start() != 0:
        raise ValueError(f"not a CompactLM-rendered conversation (it starts with {text[:40]!r})")
    messages = []
    for header, following in zip(headers, [*headers[1:], None]):
        content = text[header.end():following.start() if following else len(text)]
        role = _BLOCK_ROLES[header.group(1)]
        content = content.removesuffix("\n")
        if role == "assistant":
            content = content.removesuffix(EOS)
        messages.append({"role": role, "content": content})
    return messages


def format_prompt(instruction: str) -> str:
    """The model's input for one customer message: ``PROMPT_TEMPLATE`` around the normalised message.

    Args:
        instruction: the raw customer message (see ``normalize_message``).

    Returns:
        ``### Instruction:\n<message>\n### Response:\n``; the response follows it directly.
    """
    return render_chat([{"role": "user", "content": instruction}], add_generation_prompt=True)


def has_own_chat_template(tokenizer) -> bool:
    """Whether ``tokenizer`` carries a pretrained model's own chat template (not CompactLM's format).

    Such a model (SmolLM2, Qwen, Llama 3...) is fine-tuned, evaluated and served in its own format, so
    a fine-tuned model and its zero-shot base read the same prompts.
    """
    template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    return bool(template) and CHAT_FORMAT_MARKER not in template


def render_prompt(instruction: str, tokenizer=None, context: str = "") -> str:
    """The generation prompt for one customer message, in the format of the model that reads it.

    Args:
        instruction: the raw customer message (or a task prompt such as a summarization request).
        tokenizer: the model's tokenizer; None or a CompactLM tokenizer gives ``format_prompt``.
        context: the earlier turns of the conversation as ``render_chat`` wrote them (chat rows'
            ``context``); empty for a single turn.

    Returns:
        ``context + format_prompt(instruction)``, or the tokenizer's own chat template applied to the
        earlier turns (``parse_chat(context)``) and the user turn with the generation prompt added
        (``apply_chat_template(..., add_generation_prompt=True)``), which includes whatever default system
        turn that template adds.

    Raises:
        ValueError: a ``context`` that is not a ``render_chat`` conversation (own-template models only).
    """
    if has_own_chat_template(tokenizer):
        messages = [*parse_chat(context), {"role": "user", "content": normalize_message(instruction)}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return context + format_prompt(instruction)


def prompt_start_ids(tokenizer) -> list[int]:
    """The token ids put before an encoded prompt: BOS, unless the model's own chat template writes its
    special tokens itself (SmolLM2's BOS is ``<|im_start|>``, which its template already opens with).

    Returns:
        ``[bos_token_id]``, or ``[]`` (no BOS, or a model with its own chat template).
    """
    if has_own_chat_template(tokenizer) or tokenizer.bos_token_id is None:
        return []
    return [tokenizer.bos_token_id]


def _unshout(text: str) -> str:
    outside = _PLACEHOLDER.sub("", text)
    letters = [c for c in outside if c.isalpha()]
    if len(letters) < 4 or sum(c.isupper() for c in letters) < 0.7 * len(letters):
        return text
    parts = _PLACEHOLDER.split(text)
    placeholders = _PLACEHOLDER.findall(text)
    out = [parts[0].lower()]
    for placeholder, part in zip(placeholders, parts[1:]):
        out += [placeholder, part.lower()]
    return "".join(out)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int):
    """Train a byte-level BPE tokenizer on ``texts``.

    Byte-level BPE as in GPT-2 (Radford et al. 2019): the 256 byte symbols are the initial alphabet,
    so any text encodes without unknown tokens. No BOS/EOS is added on encoding: callers add them.

    Args:
        texts: the training corpus (the train split only, never validation or test).
        vocab_size: target vocabulary in tokens, special tokens included (at least 260: 256 bytes + 4
            special tokens); the result can be smaller on a small corpus.
        model_max_length: the model's context length in tokens, stored on the tokenizer.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` with pad/bos/eos/unk and the chat template set.

    Raises:
        ConfigError: ``vocab_size`` below 260 (``model.vocab_size``).
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


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int):
    """Train a BERT-style WordPiece tokenizer on ``texts`` (for the encoder presets).

    BERT's recipe (Devlin et al. 2019): lower-cased ``BertNormalizer``, ``BertPreTokenizer``,
    ``##`` continuation pieces, ``[CLS] A [SEP]`` / ``[CLS] A [SEP] B [SEP]`` templates.

    Args:
        texts: the training corpus (the train split only).
        vocab_size: target vocabulary in tokens, special tokens included (at least 69: 64 + the 5
            special tokens).
        model_max_length: the model's context length in tokens, stored on the tokenizer.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` that adds ``[CLS]``/``[SEP]`` and has ``[MASK]``.

    Raises:
        ConfigError: ``vocab_size`` below 69 (``model.vocab_size``).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 64 + len(WORDPIECE_SPECIAL_TOKENS):
        raise ConfigError(f"model.vocab_size must be >= {64 + len(WORDPIECE_SPECIAL_TOKENS)}, got {vocab_size}")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=WORDPIECE_SPECIAL_TOKENS,
                                        show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=model_max_length, padding_side="right",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def load_tokenizer(path: str | Path):
    """Load a tokenizer saved with ``save_pretrained`` (a folder path)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
