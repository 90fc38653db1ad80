"""Batched generation and reference log-likelihood, for causal LMs and seq2seq (T5-style) models.

Inputs are the rows' rendered prompts and reference completions (``compactlm.training.encoding.
supervised_pairs``): instruction/response, chat turns or document/summary alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from compactlm.models.tokenizer import prompt_start_ids, render_prompt
from compactlm.training.encoding import (
    IGNORE_INDEX,
    encode_prompt_completion,
    source_target_pairs,
    supervised_pairs,
)


@dataclass
class LikelihoodResult:
    """Summed negative log-likelihood of the reference responses and what it was summed over.

    Attributes:
        nll: total negative log-likelihood in nats (natural log), summed over every scored token.
        tokens: how many target tokens were scored (completion tokens and EOS; prompts and padding excluded).
        words: whitespace-separated words of the references, plus one per reference for its end.
    """

    nll: float
    tokens: int
    words: int

    @property
    def perplexity(self) -> float:
        """Per-token perplexity ``exp(nll / tokens)``, the standard definition (Jelinek et al. 1977).

        It depends on the tokenizer: compare only models that share one.
        """
        return math.exp(self.nll / max(self.tokens, 1))

    @property
    def word_perplexity(self) -> float:
        """Per-word perplexity ``exp(nll / words)``: the same NLL spread over whitespace words.

        Comparable across tokenizers; the definition of lm-evaluation-harness's ``word_perplexity``
        (EleutherAI, https://github.com/EleutherAI/lm-evaluation-harness).
        """
        return math.exp(self.nll / max(self.words, 1))


def is_seq2seq(model) -> bool:
    """Whether ``model`` is an encoder-decoder (T5, BART...): its config's ``is_encoder_decoder``."""
    return bool(getattr(model.config, "is_encoder_decoder", False))


def _pad(rows: Sequence[Sequence[int]], value: int, left: bool = False):
    import torch

    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if left:
            out[i, width - len(r):], mask[i, width - len(r):] = torch.tensor(list(r)), 1
        else:
            out[i, :len(r)], mask[i, :len(r)] = torch.tensor(list(r)), 1
    return out, mask


def eval_pairs(frame: pd.DataFrame, model, tokenizer=None) -> tuple[list[str], list[str]]:
    """(model inputs, reference outputs) of the rows: rendered prompts, or ``summarize:`` sources for seq2seq.

    Returns:
        Two lists of strings of ``len(frame)`` each (see ``supervised_pairs``, ``source_target_pairs``).

    Raises:
        DataError: the frame has no supervised columns.
    """
    return source_target_pairs(frame) if is_seq2seq(model) else supervised_pairs(frame, tokenizer=tokenizer)


def response_likelihood(model, tokenizer, frame: pd.DataFrame, max_length: int, batch_size: int = 32,
                        keep_completion: bool = False, engine=None) -> LikelihoodResult:
    """Sum the NLL of each reference completion (and its EOS) given its prompt, teacher-forced.

    Args:
        model: a causal or seq2seq transformers model; inputs go to the device of its parameters.
        tokenizer: its tokenizer (``pad_token_id`` set).
        frame: supervised rows (see ``eval_pairs``).
        max_length: tokens per pair for a causal LM (prompt + completion); for seq2seq, per source
            and per target.
        batch_size: rows per forward pass.
        keep_completion: causal LM: cut long prompts in the middle rather than the pair at the end
            (see ``encode_prompt_completion``).
        engine: a ``fast_engine`` over this causal model: the same sums from its decoder, with logits
            only at the completion tokens.

    Returns:
        The summed NLL (nats) with its token and word counts, from which both perplexities follow.

    Raises:
        DataError: the frame has no supervised columns.
    """
    import torch
    import torch.nn.functional as F

    prompts, completions = eval_pairs(frame, model, tokenizer)
    device = next(model.parameters()).device
    model.eval()
    nll, tokens = 0.0, 0
    with torch.inference_mode():
        if is_seq2seq(model):
            sources = tokenizer(prompts, verbose=False, truncation=True, max_length=max_length)["input_ids"]
            targets = tokenizer(text_target=completions, verbose=False, truncation=True,
                                max_length=max_length)["input_ids"]
            for start in range(0, len(sources), batch_size):
                ids, mask = _pad(sources[start:start + batch_size], tokenizer.pad_token_id)
                labels, _ = _pad(targets[start:start + batch_size], IGNORE_INDEX)
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                               labels=labels.to(device)).logits.float()
                flat = labels.reshape(-1).to(device)
                nll += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), flat, ignore_index=IGNORE_INDEX,
                                             reduction="sum"))
                tokens += int((flat != IGNORE_INDEX).sum())
        elif engine is not None:
            encoded = encode_prompt_completion(prompts, completions, tokenizer, max_length, keep_completion)
            scored = [(ids, next((t for t, label in enumerate(labels) if label != IGNORE_INDEX and t > 0), len(ids)))
                      for ids, labels in zip(encoded["input_ids"], encoded["labels"])]
            scored = [(ids, first) for ids, first in scored if first < len(ids)]  # a pair cut inside its prompt
            for start in range(0, len(scored), batch_size):
                batch = scored[start:start + batch_size]
                spans = engine.decoder.span_logprobs([ids for ids, _ in batch], [first for _, first in batch])
                nll -= float(sum(span.sum() for span in spans))
                tokens += sum(len(span) for span in spans)
        else:
            encoded = encode_prompt_completion(prompts, completions, tokenizer, max_length, keep_completion)
            for start in range(0, len(encoded["input_ids"]), batch_size):
                ids, attention = _pad(encoded["input_ids"][start:start + batch_size], tokenizer.pad_token_id)
                labels, _ = _pad(encoded["labels"][start:start + batch_size], IGNORE_INDEX)
                logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float()
                # Position t predicts token t+1.
                shift_logits = logits[:, :-1].reshape(-1, logits.size(-1))
                shift_labels = labels[:, 1:].reshape(-1).to(device)
                nll += float(F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum"))
                tokens += int((shift_labels != IGNORE_INDEX).sum())
    words = int(sum(len(c.split()) + 1 for c in completions))  # +1: the end of the answer
    return LikelihoodResult(nll=nll, tokens=tokens, words=words)


def fast_engine(model, tokenizer, batch_size: int):
    """The batched serving engine over ``model``'s weights, for evaluation's many greedy generations.

    A Llama-style causal LM on the CPU gets ``compactlm.serving.engine.GenerationEngine`` (continuous
    batching, a KV cache, ~10x ``model.generate`` on a 135M model); anything else (seq2seq, other
    architectures, a GPU model, whose ``generate`` is fast already) gets None.

    Args:
        model, tokenizer: a transformers model and its tokenizer.
        batch_size: sequences decoded together. Its context is the model's positions (the KV cache
            grows by need); callers cut prompts to their own ``max_length`` as for ``model.generate``.

    Returns:
        A ``GenerationEngine`` (weights copied: later changes to ``model`` are not seen), or None.
    """
    from compactlm.errors import UnsupportedModelError
    from compactlm.serving.engine.generation import GenerationEngine
    from compactlm.serving.engine.weights import check_supported

    if is_seq2seq(model) or next(model.parameters()).device.type != "cpu":
        return None
    try:
        check_supported(model.config)
    except UnsupportedModelError:
        return None
    if hasattr(model, "peft_config"):  # an unmerged adapter model: its weights are not the engine's
        return None
    return GenerationEngine.from_hf(model, tokenizer, max_batch_size=batch_size, speculative_tokens=0)


def _engine_generate(engine, tokenizer, prompts: Sequence[str], max_new_tokens: int, keep: int) -> list[str]:
    from compactlm.serving.engine.sampling import SamplingParams

    encoded = tokenizer(list(prompts), add_special_tokens=False, verbose=False)["input_ids"]
    start = prompt_start_ids(tokenizer)
    completions = engine.generate([[*start, *p][-keep:] for p in encoded],
                                  SamplingParams(temperature=0.0, max_tokens=max_new_tokens))
    return [tokenizer.decode(c.token_ids, skip_special_tokens=True).strip() for c in completions]


def generate_from_prompts(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 32,
                          max_length: int | None = None, engine=None) -> list[str]:
    """Greedy completions of already-rendered prompts, decoded without the prompt and special tokens.

    Args:
        model: a causal or seq2seq transformers model; inputs go to the device of its parameters.
        tokenizer: its tokenizer (``pad_token_id`` set; BOS and EOS for a causal LM).
        prompts: rendered prompts (``format_prompt``), or prefixed sources for seq2seq.
        max_new_tokens: most tokens generated per prompt.
        batch_size: prompts per ``generate`` call.
        max_length: the context in tokens (default: the model's ``max_position_embeddings``, else 2048).
            A causal LM keeps the last ``max_length - max_new_tokens`` prompt tokens (the question and
            the response marker are at the end; left padding); a seq2seq source is cut at ``max_length``.
        engine: a ``fast_engine`` over this model: greedy decoding through it instead of ``model.generate``
            (the same answers up to floating-point order, several times faster on a CPU).

    Returns:
        One stripped answer per prompt, in order.
    """
    import torch

    device = next(model.parameters()).device
    model.eval()
    limit = max_length or getattr(model.config, "max_position_embeddings", 2048)
    outputs: list[str] = []
    with torch.inference_mode():
        if is_seq2seq(model):
            for start in range(0, len(prompts), batch_size):
                batch = tokenizer(list(prompts[start:start + batch_size]), padding=True, truncation=True,
                                  max_length=limit, return_tensors="pt").to(device)
                generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
                outputs += [tokenizer.decode(row, skip_special_tokens=True).strip() for row in generated]
            return outputs
        encoded = tokenizer(list(prompts), add_special_tokens=False, verbose=False)["input_ids"]
        # Keep the end of over-long prompts: the question and the response marker are at the end. At least
        # one token stays (``[-0:]`` would keep everything when the answer alone fills the context).
        keep = max(limit - max_new_tokens, 1)
        if engine is not None:
            keep = min(keep, engine.max_seq_len - max_new_tokens)
            return _engine_generate(engine, tokenizer, prompts, max_new_tokens, keep)
        for start in range(0, len(encoded), batch_size):
            batch = [[*prompt_start_ids(tokenizer), *p][-keep:] for p in encoded[start:start + batch_size]]
            # Left padding keeps every prompt's last token at the same position for generation.
            input_ids, attention = _pad(batch, tokenizer.pad_token_id, left=True)
            generated = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), max_new_tokens=max_new_tokens,
                do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            width = input_ids.shape[1]
            outputs += [tokenizer.decode(row, skip_special_tokens=True).strip() for row in generated[:, width:]]
    return outputs


def generate_responses(model, tokenizer, instructions: Sequence[str], max_new_tokens: int, batch_size: int = 32,
                       max_length: int | None = None, engine=None) -> list[str]:
    """Greedy responses to raw customer messages, rendered in the model's format first (``render_prompt``).

    Arguments and return value as ``generate_from_prompts`` (``max_new_tokens`` and ``max_length`` in tokens).
    """
    return generate_from_prompts(model, tokenizer, [render_prompt(i, tokenizer) for i in instructions], max_new_tokens,
                                 batch_size, max_length, engine)
