"""One sequence being decoded (``Sequence``) and its result (``Completion``), as ``GenerationEngine`` keeps them."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from compactlm.serving.engine.sampling import SamplingParams, TextTracker


@dataclass
class Completion:
    """The result of one sequence."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string), "length", or "cancelled"

    @property
    def completion_tokens(self) -> int:
        """Tokens generated (EOS not counted)."""
        return len(self.token_ids)


class Sequence:
    """One prompt being decoded: its parameters, tokens so far, cache row and streaming state.

    Args:
        prompt_ids: BOS-prefixed token ids.
        params: how to decode it.
        tokenizer: decodes the generated ids into text.
        stream: track text deltas for streaming (``delta()``).
    """

    def __init__(self, prompt_ids: list[int], params: SamplingParams, tokenizer, stream: bool = False):
        self.prompt_ids = prompt_ids
        self.params = params
        self.stream = stream
        self.generated: list[int] = []
        self.row = -1
        self.finish_reason: str | None = None
        self.cancelled = False  # set from any thread; the engine drops the sequence at its next step
        self.generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        self.tracker = TextTracker(tokenizer, params.stop) if (stream or params.stop) else None
        self.tokenizer = tokenizer
        self.created = time.perf_counter()
        self.first_token_at: float | None = None
        self.tag: object = None  # the caller's handle (request, index...)

    @property
    def finished(self) -> bool:
        """True once a finish reason is set."""
        return self.finish_reason is not None

    @property
    def reserved_tokens(self) -> int:
        """Positions the sequence may use at most: its prompt plus ``max_tokens``."""
        return len(self.prompt_ids) + self.params.max_tokens

    @property
    def cached(self) -> int:
        """Positions in the KV cache: the prompt and every generated token but the newest."""
        return len(self.prompt_ids) + len(self.generated) - 1

    def delta(self) -> str:
        """New streamable text since the last call (everything left once finished)."""
        return self.tracker.delta(final=self.finished) if self.tracker is not None else ""

    def completion(self) -> Completion:
        """The text, tokens and finish reason so far (the final result once ``finished``)."""
        if self.tracker is not None:
            text = self.tracker.text
        else:
            text = self.tokenizer.decode(self.generated, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return Completion(text=text, token_ids=list(self.generated), prompt_tokens=len(self.prompt_ids),
                          finish_reason=self.finish_reason or "cancelled")
