"""Draft tokens for speculative decoding, looked up in the server's own recent answers.

Support answers are templated: two customers asking about a late parcel get answers that share long
spans. The drafter indexes every n-gram (n = 2..``max_ngram``) of recent completions — with the last
few prompt tokens in front, so the very first step can draft the opening of an answer — and proposes
what followed the longest n-gram matching the end of a sequence. This is retrieval-based drafting (He
et al., "REST: Retrieval-Based Speculative Decoding", NAACL 2024), close to prompt lookup decoding
(Saxena 2023, github.com/apoorvumang/prompt-lookup-decoding), which looks in the prompt instead. The
engine then checks up to ``k`` drafted tokens in one forward pass and keeps the prefix the model itself
would have chosen greedily, so the output is exactly plain greedy decoding's (only faster when drafts
are right); see ``GenerationEngine`` for when it speculates. Measured on the demo champion: about 4
tokens accepted per verification step on test-split prompts.

The index holds generated token ids only (never prompts beyond their last few tokens), in memory,
bounded by ``max_tokens``; drafts never change an answer, only how fast it is computed.
"""

from __future__ import annotations

SEPARATOR = -1  # between indexed sequences: a draft never runs from one answer into the next


class SuffixDrafter:
    """An n-gram index over recent token sequences.

    Args:
        max_ngram: longest context matched (longer matches are tried first).
        min_ngram: shortest context matched.
        max_tokens: indexed tokens kept; past it the older half is forgotten.
        prompt_tail: prompt tokens indexed in front of each completion.
    """

    def __init__(self, max_ngram: int = 6, min_ngram: int = 2, max_tokens: int = 200_000, prompt_tail: int = 8):
        self.max_ngram, self.min_ngram = max_ngram, min_ngram
        self.max_tokens, self.prompt_tail = max_tokens, prompt_tail
        self._tokens: list[int] = []
        self._next: dict[tuple[int, ...], int] = {}  # n-gram -> index of the token that followed it (latest)

    def __len__(self) -> int:
        return len(self._tokens)

    def add(self, prompt: list[int], completion: list[int]) -> None:
        """Index one finished sequence (the tail of its prompt, then its completion).

        Args:
            prompt: the sequence's prompt token ids (only the last ``prompt_tail`` are indexed).
            completion: its generated token ids (nothing is indexed when empty).
        """
        if not completion:
            return
        if len(self._tokens) + len(completion) + self.prompt_tail > self.max_tokens:
            self._forget_older_half()
        self._index(prompt[-self.prompt_tail:] + completion)

    def draft(self, context: list[int], k: int) -> list[int]:
        """Up to ``k`` tokens that followed the longest indexed n-gram ending ``context`` ([] when none).

        Args:
            context: the latest token ids of a sequence (at least ``min_ngram`` to match anything).
            k: most tokens drafted.
        """
        tokens = self._tokens
        for n in range(min(self.max_ngram, len(context)), self.min_ngram - 1, -1):
            start = self._next.get(tuple(context[-n:]))
            if start is not None:
                out = []
                for token in tokens[start:start + k]:
                    if token == SEPARATOR:
                        break
                    out.append(token)
                return out
        return []

    def _index(self, sequence: list[int]) -> None:
        base = len(self._tokens)
        self._tokens.extend(sequence)
        self._tokens.append(SEPARATOR)
        index = self._next
        for end in range(1, len(sequence)):  # the n-gram sequence[end - n:end] is followed by sequence[end]
            for n in range(self.min_ngram, min(self.max_ngram, end) + 1):
                index[tuple(sequence[end - n:end])] = base + end

    def _forget_older_half(self) -> None:
        sequences, current = [], []
        for token in self._tokens[len(self._tokens) // 2:]:
            if token == SEPARATOR:
                if current:
                    sequences.append(current)
                current = []
            else:
                current.append(token)
        self._tokens, self._next = [], {}
        for sequence in sequences[1:]:  # the first one may have been cut in half
            self._index(sequence)
