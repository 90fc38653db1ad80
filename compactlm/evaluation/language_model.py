"""Base language models (pretraining corpora): bits per character on held-out text, and sample continuations.

Bits per character is the tokenizer-independent measure of a language model on raw text (Graves 2013,
"Generating Sequences With Recurrent Neural Networks", https://arxiv.org/abs/1308.0850; the unit of
nanoGPT's character-level Shakespeare and of enwik8/text8 results): the text's total negative
log-likelihood in bits divided by its characters. Two models with different tokenizers (a BPE of 2,048
or 8,192 tokens, a character-level model) are compared on it directly, which per-token perplexity
cannot do. For scale: a character-unigram model of English text is about 4.1 bits per character
(Shannon 1951), nanoGPT's 4-layer character model reaches about 2.7 on Shakespeare in minutes on a
CPU, and large models go below 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from compactlm.errors import DataError
from compactlm.evaluation.generate import generate_from_prompts
from compactlm.evaluation.result import EvalResult
from compactlm.training.encoding import boundary_ids

LN2 = math.log(2.0)


@dataclass(frozen=True)
class TextLikelihood:
    """Summed negative log-likelihood of a text and what it was summed over.

    Attributes:
        nll: total negative log-likelihood in nats, over every scored token.
        tokens: tokens scored (each document's text and end-of-document token; start tokens excluded).
        characters: characters of the documents (Python ``str`` length) plus one per document for its end.
    """

    nll: float
    tokens: int
    characters: int

    @property
    def bits_per_character(self) -> float:
        """``nll / ln 2 / characters``: bits per character (Graves 2013)."""
        return self.nll / LN2 / max(self.characters, 1)

    @property
    def perplexity(self) -> float:
        """Per-token perplexity ``exp(nll / tokens)`` (depends on the tokenizer)."""
        return math.exp(self.nll / max(self.tokens, 1))

    @property
    def tokens_per_character(self) -> float:
        """How finely the tokenizer cuts this text (1.0 for a character-level model)."""
        return self.tokens / max(self.characters, 1)


def text_likelihood(model, tokenizer, documents: Sequence[str], max_length: int, batch_size: int = 16
                    ) -> TextLikelihood:
    """Negative log-likelihood of documents under a causal LM, every token scored once.

    The documents are encoded as ``BOS + text + EOS`` and concatenated (as pretraining packs them), then
    read in windows of ``max_length`` tokens that overlap by one token, so each token after the first is
    predicted exactly once, from the earlier tokens of its window (non-overlapping evaluation: a token
    early in a window sees less context than the model could use). Start-of-document tokens are not
    scored (they always follow an end-of-document token); each end-of-document token is, and counts as
    one character (the separator between documents).

    Args:
        model: a causal transformers model; inputs go to the device of its parameters.
        tokenizer: its tokenizer (BOS and EOS, or CLS and SEP, frame each document).
        documents: plain-text documents, e.g. the chunks of a test split.
        max_length: tokens per window (the model's context length), at least 2.
        batch_size: windows per forward pass.

    Raises:
        DataError: no document has any text.
    """
    import torch
    import torch.nn.functional as F

    documents = [str(d) for d in documents if str(d)]
    if not documents:
        raise DataError("no text to score: every document is empty")
    start, end = boundary_ids(tokenizer)
    stream: list[int] = []
    scored: list[bool] = []
    for ids in tokenizer(documents, add_special_tokens=False, verbose=False)["input_ids"]:
        stream += start + ids + end
        scored += [False] * len(start) + [True] * (len(ids) + len(end))
    step = max(max_length, 2) - 1
    windows = [(s, min(s + step + 1, len(stream))) for s in range(0, len(stream) - 1, step)]
    device = next(model.parameters()).device
    model.eval()
    nll, tokens = 0.0, 0
    with torch.inference_mode():
        for first in range(0, len(windows), batch_size):
            batch = windows[first:first + batch_size]
            width = max(b - a for a, b in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id or 0, dtype=torch.long)
            targets = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (a, b) in enumerate(batch):
                ids[row, :b - a] = torch.tensor(stream[a:b])
                mask[row, :b - a] = 1
                # Position 0 of a window is context only: it was the last target of the previous window.
                targets[row, 1:b - a] = torch.tensor([t if keep else -100 for t, keep in
                                                      zip(stream[a + 1:b], scored[a + 1:b])])
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            shifted = targets[:, 1:].reshape(-1).to(device)
            nll += float(F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), shifted,
                                         ignore_index=-100, reduction="sum"))
            tokens += int((shifted != -100).sum())
    characters = sum(len(d) for d in documents) + len(documents) * len(end)
    return TextLikelihood(nll=nll, tokens=tokens, characters=characters)


def evaluate_language_model(model, tokenizer, test: pd.DataFrame, max_length: int, batch_size: int = 16,
                            samples: int = 3, max_new_tokens: int = 48, model_size_mb: float | None = None):
    """Bits per character of a base LM on the test split, with a few greedy continuations for the report.

    Args:
        model, tokenizer: a causal LM and its tokenizer.
        test: rows with a ``text`` column (the chunks of a pretraining corpus, in corpus order).
        max_length: the context length in tokens.
        batch_size: windows per forward pass.
        samples: test chunks whose first words are continued greedily (shown in the report, not scored).
        max_new_tokens: tokens generated per continuation.
        model_size_mb: the weight files' size in MB (10^6 bytes), reported as ``model_size_mb``.

    Returns:
        An ``EvalResult`` with ``bits_per_character``, ``perplexity`` (per token), ``tokens_per_character``
        and, when given, ``model_size_mb``.

    Raises:
        DataError: the split has no ``text`` column or no text.
    """
    if "text" not in test.columns:
        raise DataError(f"the test split has no 'text' column (columns: {', '.join(map(str, test.columns))})")
    begin = time.perf_counter()
    documents = [str(t) for t in test["text"]]
    likelihood = text_likelihood(model, tokenizer, documents, max_length, batch_size)
    metrics = {"bits_per_character": likelihood.bits_per_character, "perplexity": likelihood.perplexity,
               "tokens_per_character": likelihood.tokens_per_character}
    if model_size_mb is not None:
        metrics["model_size_mb"] = model_size_mb
    heads = [" ".join(d.split()[:12]) for d in documents[:samples]]
    continuations = generate_from_prompts(model, tokenizer, heads, max_new_tokens, batch_size, max_length) \
        if heads else []
    examples = [{"instruction": h, "reference": " ".join(d.split()[12:40]), "generated": c}
                for h, d, c in zip(heads, documents, continuations)]
    report = (f"# Language model\n\n{likelihood.bits_per_character:.4f} bits per character over "
              f"{likelihood.characters:,} characters ({likelihood.tokens:,} tokens, "
              f"{likelihood.tokens_per_character:.3f} tokens per character) of the test split; per-token "
              f"perplexity {likelihood.perplexity:.2f} (comparable only between models sharing a tokenizer).")
    return EvalResult(metrics=metrics, n_rows=len(documents), n_generated=len(examples),
                      seconds=time.perf_counter() - begin, examples=examples, reports={"language-model": report})
