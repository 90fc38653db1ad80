"""Per-sequence sampling parameters, batched token selection, and streamed text with stop sequences."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from compactlm.errors import InvalidRequestError

MAX_STOP_SEQUENCES = 4  # as in OpenAI's API


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence is decoded.

    Args:
        max_tokens: most tokens to generate (the context length may end it earlier).
        temperature: 0 for greedy decoding; otherwise logits are divided by it before sampling.
        top_p: nucleus sampling (Holtzman et al., "The Curious Case of Neural Text Degeneration", ICLR
            2020): sample from the smallest set of most likely tokens whose probability reaches it.
        stop: strings that end the completion; the text returned stops before the first one found.
        min_tokens: EOS is suppressed until this many tokens are generated (stop strings still apply).
        seed: a per-sequence random generator, for reproducible sampling.

    Raises:
        InvalidRequestError: a value out of range (``param`` names the field).
    """

    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    min_tokens: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        def fail(param: str, expected: str) -> None:
            raise InvalidRequestError(f"{param} must be {expected}, got {getattr(self, param)!r}", param)

        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            fail("max_tokens", "an integer >= 1")
        if not (isinstance(self.temperature, int | float) and math.isfinite(self.temperature)
                and 0.0 <= self.temperature <= 2.0):
            fail("temperature", "in [0, 2]")
        if not (isinstance(self.top_p, int | float) and math.isfinite(self.top_p) and 0.0 < self.top_p <= 1.0):
            fail("top_p", "in (0, 1]")
        if len(self.stop) > MAX_STOP_SEQUENCES or any(not isinstance(s, str) or not s for s in self.stop):
            fail("stop", f"at most {MAX_STOP_SEQUENCES} non-empty strings")
        if isinstance(self.min_tokens, bool) or not isinstance(self.min_tokens, int) \
                or not 0 <= self.min_tokens <= self.max_tokens:
            fail("min_tokens", f"in [0, max_tokens={self.max_tokens}]")
        if self.seed is not None and not (isinstance(self.seed, int) and 0 <= self.seed < 2**63):
            fail("seed", "an integer in [0, 2**63)")

    @property
    def greedy(self) -> bool:
        """True for temperature 0 (argmax decoding)."""
        return self.temperature == 0.0


def select_tokens(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None],
                  suppress: list[int] | None, default_generator: torch.Generator) -> list[int]:
    """Choose the next token of every row of ``logits`` ``[B, vocab]`` under its own parameters.

    Args:
        logits: the last position's logits of each sequence (modified in place).
        params: one ``SamplingParams`` per row.
        generators: a seeded generator per row, or None to share ``default_generator``.
        suppress: per row, a token id to forbid (EOS before ``min_tokens``), or -1.
        default_generator: the engine's generator for unseeded rows.

    Returns:
        ``B`` token ids.
    """
    if suppress is not None:
        rows = [r for r, token in enumerate(suppress) if token >= 0]
        if rows:
            logits[rows, [suppress[r] for r in rows]] = float("-inf")
    choice = logits.argmax(dim=-1)
    sampled = [r for r, p in enumerate(params) if not p.greedy]
    if not sampled:  # the common serving case: one op for the whole batch
        return choice.tolist()
    sub = logits[sampled].float()
    # Clamped: a temperature such as 1e-71 is 0 in float32. Shifting by the max keeps every scaled value
    # <= 0, so a tiny temperature underflows to -inf (the top token keeps probability 1) instead of inf/NaN.
    temps = torch.tensor([params[r].temperature for r in sampled]).clamp(min=1e-6)
    probs = torch.softmax((sub - sub.amax(dim=-1, keepdim=True)) / temps[:, None], dim=-1)
    top_p = torch.tensor([params[r].top_p for r in sampled])
    if bool((top_p < 1.0).any()):
        ordered, order = probs.sort(dim=-1, descending=True)
        # Drop a token when the mass before it already reaches top_p; the most likely token always stays
        # (top_p=5e-324 is 0 in float32).
        drop = (ordered.cumsum(dim=-1) - ordered) >= top_p[:, None]
        drop[:, 0] = False
        probs = torch.zeros_like(probs).scatter_(1, order, ordered.masked_fill(drop, 0.0))
    shared = [i for i, r in enumerate(sampled) if generators[r] is None]
    if shared:
        picks = torch.multinomial(probs[shared], 1, generator=default_generator).view(-1)
        choice[[sampled[i] for i in shared]] = picks
    for i, r in enumerate(sampled):
        if generators[r] is not None:
            choice[r] = torch.multinomial(probs[i], 1, generator=generators[r])[0]
    return choice.tolist()


class TextTracker:
    """Decodes a growing list of token ids into text, cuts it at stop strings, and yields safe deltas.

    A delta never ends inside a multi-byte character (byte-level BPE can split one over tokens) nor with
    a partial stop string that later tokens might complete, so the streamed pieces always concatenate to
    exactly the final text.

    Args:
        tokenizer: decodes ids (``decode(ids, skip_special_tokens=True)``).
        stop: strings that end the text (cut before the first one found).
    """

    def __init__(self, tokenizer, stop: tuple[str, ...] = ()):
        self.tokenizer = tokenizer
        self.stop = stop
        self.text = ""
        self.emitted = 0
        self.stopped = False
        self._checked = 0

    def update(self, token_ids: list[int]) -> None:
        """Re-decode after new tokens; sets ``stopped`` and truncates ``text`` when a stop string appears."""
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if self.stop:
            longest = max(len(s) for s in self.stop)
            start = max(0, self._checked - longest + 1)
            hits = [i for i in (text.find(s, start) for s in self.stop) if i >= 0]
            if hits:
                text, self.stopped = text[:min(hits)], True
            self._checked = len(text)
        self.text = text

    def delta(self, final: bool = False) -> str:
        """Text not yet handed out that can no longer change (all of it when ``final``)."""
        end = len(self.text)
        if not final and not self.stopped:
            end -= self._holdback()
        piece = self.text[self.emitted:end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return piece

    def _holdback(self) -> int:
        text = self.text
        hold = len(text) - len(text.rstrip("\ufffd"))  # an incomplete UTF-8 sequence decodes as U+FFFD
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:size]):
                    hold = max(hold, size)
                    break
        return hold
