"""Continuous batching of many sequences over one ``FastDecoder``: prompts in, text and finish reasons out.

Each ``step()`` prefills the sequences added since the last step (one right-padded batch) and decodes
one token for every active sequence (one batched decode), so a request that arrives while others are
half-way joins them at the next step instead of waiting for the batch to drain. A finished sequence
frees its cache row at once: the last active row moves into the hole, keeping rows ``0..B-1`` dense.

Memory: the KV cache grows with what the sequences in flight use (``kv_cache.KVCache``). A sequence is
admitted (``can_admit``) only while every sequence in flight and it, each reserving its prompt plus
``max_tokens``, fit the cache budget as ``rows x longest reservation``; otherwise it waits for rows to
finish. One that cannot fit even alone is refused by ``sequence`` with the numbers.

The engine is single-threaded by design; ``compactlm.serving.engine.scheduler`` drives it from one thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Sequence as SequenceOf

import torch

from compactlm.errors import InvalidRequestError
from compactlm.models.tokenizer import CHAT_FORMAT_MARKER, format_prompt, prompt_start_ids, render_chat, render_prompt
from compactlm.serving.engine.decoder import FastDecoder
from compactlm.serving.engine.sampling import SamplingParams, select_tokens
from compactlm.serving.engine.sequence import Completion, Sequence
from compactlm.serving.engine.speculative import SuffixDrafter
from compactlm.serving.engine.weights import DecoderWeights, quantize_decoder


class GenerationEngine:
    """Tokenizes prompts and runs sequences through a ``FastDecoder`` with continuous batching.

    Speculative decoding: each step feeds every greedy row its last token plus up to
    ``speculative_tokens`` drafted ones (from ``SuffixDrafter``) and keeps the drafted tokens the model
    confirms, plus one; sampled rows take one token as usual. This is the greedy case of speculative
    decoding (Leviathan et al., "Fast Inference from Transformers via Speculative Decoding", ICML 2023):
    at temperature 0 its acceptance test reduces to "the drafted token is the argmax", so greedy output is
    token for token that of plain decoding. It pays at every batch size here: a step is bound by per-op
    overhead at batch 1 and by reading the KV cache at batch 32, and extra query positions add little to
    either (measured on the demo champion: batch-1 latency ~3x lower, batch-32 throughput ~1.3x higher).

    Args:
        decoder: the fast decoder (owns the KV cache).
        tokenizer: the model's tokenizer (BOS/EOS ids, chat template, decoding).
        seed: seed of the generator shared by sampled sequences without their own seed.
        speculative_tokens: most drafted tokens checked per step (0 turns speculation off).
    """

    def __init__(self, decoder: FastDecoder, tokenizer, seed: int = 0, speculative_tokens: int = 8):
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.eos_id = tokenizer.eos_token_id
        start = prompt_start_ids(tokenizer)  # no BOS for a model whose own chat template writes its specials
        self.bos_id = start[0] if start else None
        self.max_seq_len = decoder.max_seq_len
        self.max_batch_size = decoder.max_batch_size
        self.active: list[Sequence] = []  # active[r] owns cache row r
        self.pending: list[Sequence] = []  # added, not yet prefilled
        self._generator = torch.Generator().manual_seed(seed)
        self.speculative_tokens = speculative_tokens
        self.drafter = SuffixDrafter() if speculative_tokens > 0 else None
        self.stats = {"steps": 0, "verify_steps": 0, "drafted": 0, "accepted": 0}

    @classmethod
    def from_hf(cls, model, tokenizer, quantization: str = "fp32", max_batch_size: int = 32,
                max_seq_len: int | None = None, group_size: int = 32, speculative_tokens: int = 8,
                kv_cache_mb: float = 0.0, kv_cache_dtype: str = "float32") -> GenerationEngine:
        """Build from a ``transformers`` causal LM (weights are copied; the model can be dropped).

        Args:
            model: a ``LlamaForCausalLM``.
            tokenizer: its tokenizer.
            quantization: ``fp32``/``none``, ``int8`` or ``int4``.
            max_batch_size: most KV-cache rows (sequences decoded together).
            max_seq_len: the serving context in tokens (default: the model's positions).
            group_size: int4 input columns per group.
            speculative_tokens: most drafted tokens checked per step (0: off).
            kv_cache_mb: KV-cache budget in MiB (2**20 bytes); 0: no bound but rows x context.
            kv_cache_dtype: ``float32`` or ``bfloat16`` (half the cache's memory; see ``FastDecoder``).

        Raises:
            UnsupportedModelError: not a Llama-style decoder.
            ConfigError: an unknown scheme or KV-cache dtype, a shape int4 cannot group, or a budget below one
                sequence.
        """
        weights = quantize_decoder(DecoderWeights.from_hf(model), quantization, group_size)
        return cls.from_weights(weights, tokenizer, max_batch_size, max_seq_len, speculative_tokens, kv_cache_mb,
                                kv_cache_dtype)

    @classmethod
    def from_weights(cls, weights: DecoderWeights, tokenizer, max_batch_size: int = 32, max_seq_len: int | None = None,
                     speculative_tokens: int = 8, kv_cache_mb: float = 0.0,
                     kv_cache_dtype: str = "float32", consume_weights: bool = False) -> GenerationEngine:
        """Build a decoder on extracted (optionally quantized) weights and warm it up; arguments as ``from_hf``
        (``consume_weights``: see ``FastDecoder``; ``weights`` is emptied)."""
        decoder = FastDecoder(weights, max_batch_size=max_batch_size, max_seq_len=max_seq_len, kv_cache_mb=kv_cache_mb,
                              kv_cache_dtype=kv_cache_dtype, consume_weights=consume_weights)
        decoder.warmup()
        return cls(decoder, tokenizer, speculative_tokens=speculative_tokens)

    # --- prompts ---------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """BOS + the tokens of ``text`` (already formatted as the model expects)."""
        ids = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        return [self.bos_id, *ids] if self.bos_id is not None else list(ids)

    def instruction_prompt(self, instruction: str) -> str:
        """The fine-tuning prompt around one customer message."""
        return render_prompt(instruction, self.tokenizer)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """Render chat messages as the model was fine-tuned on them (the generation prompt added).

        A CompactLM model (its template is ``CHAT_TEMPLATE``) goes through ``render_chat``, which also
        normalises user turns like the training data; any other model through its own chat template.
        Without a template, the last user message in the fine-tuning format.
        """
        template = getattr(self.tokenizer, "chat_template", None)
        if template and CHAT_FORMAT_MARKER not in template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if template:
            return render_chat(messages, add_generation_prompt=True)
        users = [m["content"] for m in messages if m.get("role") == "user"]
        return format_prompt(users[-1] if users else "")

    @property
    def max_sequence_tokens(self) -> int:
        """The longest sequence (prompt + ``max_tokens``) served: the context, or less when the budget says so."""
        return self.decoder.cache.max_tokens

    def sequence(self, prompt_ids: list[int], params: SamplingParams, stream: bool = False) -> Sequence:
        """A new sequence, checked against the context length and the KV-cache budget.

        Raises:
            InvalidRequestError: the prompt plus ``max_tokens`` does not fit in the context, or needs more KV
                cache than the whole budget (the message names the tokens, MiB and setting to raise).
        """
        room = self.max_seq_len - len(prompt_ids)
        model = self.decoder.shape.max_positions
        setting = f"; serve.max_seq_len sets it (the model's own is {model})" if self.max_seq_len < model else ""
        if room < 1:
            raise InvalidRequestError(f"the prompt has {len(prompt_ids)} tokens; this model's context is "
                                      f"{self.max_seq_len} tokens, so at most {self.max_seq_len - 1} fit{setting}",
                                      "prompt")
        if params.max_tokens > room:
            raise InvalidRequestError(f"max_tokens={params.max_tokens} plus the prompt's {len(prompt_ids)} tokens "
                                      f"exceeds the context of {self.max_seq_len} tokens (at most {room} here"
                                      f"{setting})", "max_tokens")
        if len(prompt_ids) + params.max_tokens > self.max_sequence_tokens:
            raise InvalidRequestError(self.decoder.cache.refusal(len(prompt_ids), params.max_tokens),
                                      "max_tokens" if len(prompt_ids) < self.max_sequence_tokens else "prompt")
        return Sequence(prompt_ids, params, self.tokenizer, stream)

    # --- scheduling --------------------------------------------------------------------------------------

    @property
    def free_rows(self) -> int:
        """KV-cache rows neither active nor reserved by a pending sequence."""
        return self.max_batch_size - len(self.active) - len(self.pending)

    @property
    def busy(self) -> bool:
        """True while any sequence is active or waiting for its prefill."""
        return bool(self.active or self.pending)

    def can_admit(self, seq: Sequence) -> bool:
        """True when ``seq`` can join now: a free row, and the KV cache of every sequence in flight plus ``seq``
        (rows x the longest prompt + ``max_tokens``) within the budget. An idle engine takes any sequence."""
        held = self.active + self.pending
        if self.free_rows < 1:
            return False
        longest = max(s.reserved_tokens for s in (*held, seq))
        return not held or self.decoder.cache.fits(len(held) + 1, longest)

    def add(self, seq: Sequence) -> None:
        """Queue a sequence for the next step (the caller checks ``can_admit`` first).

        Raises:
            RuntimeError: no free cache row, or no room in the KV-cache budget.
        """
        if not self.can_admit(seq):
            raise RuntimeError("no free cache row or KV-cache budget: check can_admit() before add()")
        self.pending.append(seq)

    def release_cache(self) -> None:
        """Free the KV cache while nothing is in flight (it grows again with the next sequence)."""
        if not self.busy:
            self.decoder.cache.release()

    @torch.inference_mode()
    def step(self) -> list[Sequence]:
        """Prefill new sequences, decode one token for every active one; returns the sequences that changed.

        A returned sequence has new streamable text (``delta()``) and/or has finished (its row is freed).
        """
        touched: list[Sequence] = []
        self._drop_cancelled(touched)
        if self.pending:
            fresh, self.pending = self.pending, []
            first_row = len(self.active)
            self.decoder.cache.fit(first_row + len(fresh), 1 + max([len(s.prompt_ids) for s in fresh]
                                                                   + [s.cached for s in self.active]))
            for j, seq in enumerate(fresh):
                seq.row = first_row + j
            self.active.extend(fresh)
            logits = self.decoder.forward([s.prompt_ids for s in fresh], first_row=first_row)
            self._advance(fresh, logits, touched)
            self._release([s for s in fresh if s.finished])
        if self.active:
            # Sequences prefilled just above decode in the same step: their first token enters the cache now.
            batch = self.active
            drafts = self._drafts(batch)
            width = 1 + max(len(d) for d in drafts) if drafts is not None else 1
            self.decoder.cache.fit(len(batch), max(s.cached for s in batch) + width)
            if drafts is not None:
                self._verify(batch, drafts, touched)
            else:
                logits = self.decoder.decode([s.generated[-1] for s in batch], [s.cached for s in batch])
                self._advance(batch, logits, touched)
            self.stats["steps"] += 1
            self._release([s for s in batch if s.finished])
        return list(dict.fromkeys(touched))  # a sequence prefilled and decoded in one step appears once

    def _drafts(self, batch: list[Sequence]) -> list[list[int]] | None:
        """Drafted tokens per row, or None when this step should not speculate."""
        if self.drafter is None or not len(self.drafter):
            return None
        # Every fed position must fit in the cache the batch reserved (within the budget and the context):
        # cached + 1 + draft <= the longest reservation, rounded to the chunk, for all rows at once.
        limit = self.decoder.cache.rounded(max(s.reserved_tokens for s in batch))
        cap = min(self.speculative_tokens, limit - 1 - max(s.cached for s in batch))
        drafts = []
        for seq in batch:
            if not seq.params.greedy:  # sampled rows take one (sampled) token per step
                drafts.append([])
                continue
            room = min(cap, seq.params.max_tokens - len(seq.generated) - 1)  # the step adds one token anyway
            context = seq.generated[-self.drafter.max_ngram:]
            if len(context) < self.drafter.max_ngram:
                context = seq.prompt_ids[len(context) - self.drafter.max_ngram:] + context
            drafts.append(self.drafter.draft(context, room) if room > 0 else [])
        return drafts if any(drafts) else None

    def _verify(self, batch: list[Sequence], drafts: list[list[int]], touched: list[Sequence]) -> None:
        """Feed each row its last token and its draft; keep the draft prefix greedy decoding agrees with, +1."""
        width = 1 + max(len(d) for d in drafts)
        fed = [[s.generated[-1], *d, *[0] * (width - 1 - len(d))] for s, d in zip(batch, drafts)]
        logits = self.decoder.decode(fed, [s.cached for s in batch])  # [B, width, vocab]
        for r, seq in enumerate(batch):
            early = seq.params.min_tokens - len(seq.generated)  # positions before min_tokens: no EOS
            if early > 0:
                logits[r, :early, self.eos_id] = float("-inf")
        choices = logits.argmax(dim=-1).tolist()
        sampled = [r for r, s in enumerate(batch) if not s.params.greedy]
        if sampled:  # their first position is an ordinary decode step
            picks = select_tokens(logits[sampled, 0], [batch[r].params for r in sampled],
                                  [batch[r].generator for r in sampled], None, self._generator)
            for r, token in zip(sampled, picks):
                choices[r][0] = token
        self.stats["verify_steps"] += 1
        for seq, draft, chosen in zip(batch, drafts, choices):
            self.stats["drafted"] += len(draft)
            for j in range(len(draft) + 1):
                self._take(seq, chosen[j], touched)
                if seq.finished or j == len(draft) or chosen[j] != draft[j]:
                    break
                self.stats["accepted"] += 1

    def _advance(self, seqs: list[Sequence], logits: torch.Tensor, touched: list[Sequence]) -> None:
        suppress = [self.eos_id if len(s.generated) < s.params.min_tokens else -1 for s in seqs]
        tokens = select_tokens(logits, [s.params for s in seqs], [s.generator for s in seqs],
                               suppress if any(t >= 0 for t in suppress) else None, self._generator)
        for seq, token in zip(seqs, tokens):
            self._take(seq, token, touched)

    def _take(self, seq: Sequence, token: int, touched: list[Sequence]) -> None:
        """Append one chosen token to ``seq`` (or finish it on EOS, a stop string, or a length limit)."""
        if seq.first_token_at is None:
            seq.first_token_at = time.perf_counter()
        if token == self.eos_id:
            seq.finish_reason = "stop"
        else:
            seq.generated.append(token)
            if seq.tracker is not None:
                seq.tracker.update(seq.generated)
                if seq.tracker.stopped:
                    seq.finish_reason = "stop"
            if seq.finish_reason is None and (len(seq.generated) >= seq.params.max_tokens
                                              or len(seq.prompt_ids) + len(seq.generated) >= self.max_seq_len):
                seq.finish_reason = "length"
        if seq.stream or seq.finished:
            touched.append(seq)

    def _drop_cancelled(self, touched: list[Sequence]) -> None:
        for seq in [s for s in self.pending if s.cancelled]:
            self.pending.remove(seq)
            seq.finish_reason = "cancelled"
            touched.append(seq)
        gone = [s for s in self.active if s.cancelled and not s.finished]
        for seq in gone:
            seq.finish_reason = "cancelled"
            touched.append(seq)
        self._release(gone)

    def _release(self, done: list[Sequence]) -> None:
        """Free the rows of finished sequences, moving the last active row into each hole."""
        for seq in done:
            if self.drafter is not None and seq.finish_reason != "cancelled":
                self.drafter.add(seq.prompt_ids, seq.generated)
        for seq in sorted(done, key=lambda s: s.row, reverse=True):
            last = self.active.pop()
            if last is not seq:
                self.decoder.move_row(last.row, seq.row, last.cached)
                last.row = seq.row
                self.active[seq.row] = last
            seq.row = -1

    # --- offline use -----------------------------------------------------------------------------------

    def generate(self, prompts: SequenceOf[list[int]], params: SamplingParams | SequenceOf[SamplingParams],
                 on_done: Callable[[int, Completion], None] | None = None) -> list[Completion]:
        """Run token-id prompts to completion with continuous batching (not while a scheduler drives the engine).

        Args:
            prompts: BOS-prefixed token ids (see ``encode``).
            params: one ``SamplingParams`` for all prompts, or one per prompt.
            on_done: called with (index, completion) as each sequence finishes (progress bars).

        Returns:
            One completion per prompt, in input order.

        Raises:
            ValueError: the number of parameters differs from the number of prompts.
            InvalidRequestError: a prompt plus its ``max_tokens`` does not fit in the context or the KV-cache budget.
        """
        per_prompt = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
        if len(per_prompt) != len(prompts):
            raise ValueError(f"{len(per_prompt)} sampling parameters for {len(prompts)} prompts")
        todo = list(range(len(prompts)))[::-1]
        results: list[Completion | None] = [None] * len(prompts)
        waiting: Sequence | None = None
        while todo or self.busy:
            while todo:  # admit in order while rows and the KV-cache budget allow
                if waiting is None:
                    waiting = self.sequence(list(prompts[todo[-1]]), per_prompt[todo[-1]])
                    waiting.tag = todo[-1]
                if not self.can_admit(waiting):
                    break
                self.add(waiting)
                todo.pop()
                waiting = None
            for seq in self.step():
                if seq.finished:
                    results[seq.tag] = seq.completion()
                    if on_done is not None:
                        on_done(seq.tag, results[seq.tag])
        self.release_cache()
        return results  # type: ignore[return-value]

    def complete(self, texts: SequenceOf[str], params: SamplingParams | SequenceOf[SamplingParams],
                 instruction: bool = True, on_done: Callable[[int, Completion], None] | None = None,
                 ) -> list[Completion]:
        """``generate`` over text: customer messages in the fine-tuning format (``instruction``) or raw prompts.

        A prompt too long for the context (or the KV-cache budget) keeps its end (the question), leaving room
        for ``max_tokens``, as evaluation's ``generate_responses`` does.
        """
        each = [params] * len(texts) if isinstance(params, SamplingParams) else list(params)
        keep = self.max_sequence_tokens
        prompts = [self.encode(self.instruction_prompt(t) if instruction else t)[-(keep - p.max_tokens):]
                   for t, p in zip(texts, each)]
        return self.generate(prompts, params, on_done)
