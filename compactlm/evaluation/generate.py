"""Batched generation and response-only log-likelihood for a causal LM and its tokenizer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from compactlm.models.tokenizer import format_prompt
from compactlm.training.data import IGNORE_INDEX, encode_instruction_pairs


@dataclass
class LikelihoodResult:
    """Summed negative log-likelihood of the reference responses and what it was summed over."""

    nll: float
    tokens: int
    words: int

    @property
    def perplexity(self) -> float:
        """Per-token perplexity (depends on the tokenizer: compare only models sharing one)."""
        return math.exp(self.nll / max(self.tokens, 1))

    @property
    def word_perplexity(self) -> float:
        """Per-word perplexity: the same NLL spread over whitespace words, comparable across tokenizers."""
        return math.exp(self.nll / max(self.words, 1))


def response_likelihood(model, tokenizer, frame: pd.DataFrame, max_length: int,
                        batch_size: int = 32) -> LikelihoodResult:
    """Sum the NLL of each reference response (and its EOS) given its prompt, teacher-forced."""
    import torch
    import torch.nn.functional as F

    encoded = encode_instruction_pairs(frame, tokenizer, max_length)
    device = next(model.parameters()).device
    model.eval()
    nll, tokens = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(encoded["input_ids"]), batch_size):
            ids = encoded["input_ids"][start:start + batch_size]
            labels = encoded["labels"][start:start + batch_size]
            width = max(len(x) for x in ids)
            input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
            label_ids = torch.full((len(ids), width), IGNORE_INDEX, dtype=torch.long)
            attention = torch.zeros((len(ids), width), dtype=torch.long)
            for row, (x, y) in enumerate(zip(ids, labels)):
                input_ids[row, :len(x)] = torch.tensor(x)
                label_ids[row, :len(y)] = torch.tensor(y)
                attention[row, :len(x)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
            # Position t predicts token t+1.
            shift_logits = logits[:, :-1].reshape(-1, logits.size(-1))
            shift_labels = label_ids[:, 1:].reshape(-1).to(device)
            nll += float(F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum"))
            tokens += int((shift_labels != IGNORE_INDEX).sum())
    words = int(sum(len(r.split()) + 1 for r in frame["response"]))  # +1: the end of the answer
    return LikelihoodResult(nll=nll, tokens=tokens, words=words)


def generate_responses(model, tokenizer, instructions: Sequence[str], max_new_tokens: int, batch_size: int = 32,
                       max_length: int | None = None) -> list[str]:
    """Greedy responses to ``instructions``, decoded without the prompt and special tokens."""
    import torch

    device = next(model.parameters()).device
    model.eval()
    limit = max_length or getattr(model.config, "max_position_embeddings", 2048)
    prompts = tokenizer([format_prompt(i) for i in instructions], add_special_tokens=False, verbose=False)["input_ids"]
    outputs: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            # Keep the end of over-long prompts: the question is usually at the end.
            batch = [[tokenizer.bos_token_id, *p][-(limit - max_new_tokens):]
                     for p in prompts[start:start + batch_size]]
            width = max(len(p) for p in batch)
            # Left padding keeps every prompt's last token at the same position for generation.
            input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, p in enumerate(batch):
                input_ids[row, width - len(p):] = torch.tensor(p)
                attention[row, width - len(p):] = 1
            generated = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), max_new_tokens=max_new_tokens,
                do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            for row in generated[:, width:]:
                outputs.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return outputs
