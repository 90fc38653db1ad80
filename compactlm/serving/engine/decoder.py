"""The fast decoder: a Llama-style forward pass on extracted weights with a KV cache allocated by need.

Why it is fast on a CPU with a ~1M-parameter model: the arithmetic per token is a few MFLOP, so the
time goes to per-op overhead, not math. A batch's decode step here is ~15 torch ops per layer (fused QKV
and gate/up GEMMs, residual adds fused into ``addmm``, RoPE as two multiplies and an add, one SDPA call
over the cache), with no module hooks, no cache objects, no per-step allocation beyond the activations,
and the whole batch of concurrent sequences in the same ops. A single sequence's step goes further: where
the compiled glue builds (``compactlm.serving.engine.native``, x86-64 with AVX2 and a C compiler), the
norms, RoPE, cache writes, attention and SiLU run as three C calls per layer around torch's four GEMMs
(SmolLM2-135M: ~4,300 dispatched ops per step down to ~600; int8 step 31 -> 20.5 ms on one core).

The KV cache (``kv_cache.KVCache``) is one tensor ``[rows, kv_heads, length, head_dim]`` per layer; a
sequence owns a row. It grows in chunks of rows and positions as sequences need them (each step grows it
first when it is too small), up to ``max_batch_size`` rows of ``max_seq_len`` positions and a memory
budget. Active sequences always occupy rows ``0..B-1`` (the engine compacts rows when one finishes), so
a step reads the cache through plain views. Rows of different lengths share a step: positions past a
row's own length are masked, so stale values of an earlier occupant are never attended to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from compactlm.serving.engine import native
from compactlm.serving.engine.kernels import DenseLinear, Linear, make_linear
from compactlm.serving.engine.kv_cache import DEFAULT_CHUNK, MIB, KVCache, kv_dtype
from compactlm.serving.engine.quantize import concat_rows, dequantize, rotate_rows, slice_rows, take_rows
from compactlm.serving.engine.rope import rope_tables
from compactlm.serving.engine.weights import DecoderWeights

FOLD_ROTARY_MAX_ELEMENTS = 65_536  # q+k rows x hidden per layer: ~256 KB in fp32, ~25 us of reading per step


class _Layer:
    __slots__ = ("qkv", "o", "gate_up", "down")

    def __init__(self, qkv: Linear, o: Linear, gate_up: Linear, down: Linear):
        self.qkv, self.o, self.gate_up, self.down = qkv, o, gate_up, down


class FastDecoder:
    """Prefill and decode steps for up to ``max_batch_size`` sequences of up to ``max_seq_len`` tokens.

    Args:
        weights: extracted (optionally quantized) weights.
        max_batch_size: most KV-cache rows, i.e. sequences decoded together.
        max_seq_len: most positions per row (prompt + generated tokens), the serving context; default and
            maximum: the model's positions.
        kv_cache_mb: most KV-cache memory, in MiB (2**20 bytes); 0: no bound but rows x context.
        cache_chunk: positions are allocated in multiples of this many tokens.
        kv_cache_dtype: ``float32`` or ``bfloat16``: the cache's element type. In bf16 a decode step's
            attention runs in bf16 over the cache (PyTorch's CPU kernel accumulates in fp32), half the
            memory and a little faster; outputs differ from fp32 by bf16 rounding (~1e-3).
        fold_rotary: append ``rotate_half`` copies of the q/k rows to the fused projection (RoPE becomes two
            multiplies and an add, no per-step slicing) instead of rotating the output each step. It saves ~3
            ops per layer and costs the extra rows' bytes on every step; None folds only while those rows are
            at most ``FOLD_ROTARY_MAX_ELEMENTS`` per layer (the demo model: yes; SmolLM2-135M: no, the copies
            would add 53 MB, 9 %, to the weights a batch-1 step reads).
        consume_weights: drop each of ``weights``' layers (and its embedding) once this decoder holds its own
            copy, so building it needs one extra layer of memory, not a second model; ``weights`` is emptied.
        native_glue: run a single sequence's decode step through the compiled glue
            (``compactlm.serving.engine.native``: norms, RoPE, KV-cache writes, attention and SiLU in three C
            calls per layer; the GEMMs stay torch's). None: when it builds on this machine (then RoPE is not
            folded, whatever the model's size); False: torch ops only.

    Raises:
        ConfigError: a budget below one chunk of one sequence, ``cache_chunk`` below 1, or another dtype.
    """

    def __init__(self, weights: DecoderWeights, max_batch_size: int = 32, max_seq_len: int | None = None,
                 kv_cache_mb: float = 0.0, cache_chunk: int = DEFAULT_CHUNK, kv_cache_dtype: str = "float32",
                 fold_rotary: bool | None = None, consume_weights: bool = False, native_glue: bool | None = None):
        shape = weights.shape
        self.shape, self.scheme = shape, weights.scheme
        self.max_batch_size = max_batch_size
        self.max_seq_len = min(max_seq_len or shape.max_positions, shape.max_positions)
        heads, kv_heads, dim = shape.num_heads, shape.num_kv_heads, shape.head_dim
        self._q, self._rope = shape.q_size, shape.q_size + shape.kv_size  # q columns; q+k columns (rotated)
        self._groups = heads // kv_heads
        self._inter = shape.intermediate_size
        self._eps = shape.rms_norm_eps
        self.cache = KVCache(shape.num_layers, kv_heads, dim, max_batch_size, self.max_seq_len,
                             int(kv_cache_mb * MIB), cache_chunk, kv_dtype(kv_cache_dtype))
        self._cos = self._sin = torch.zeros(0, (heads + kv_heads) * dim)  # RoPE tables grow with the positions used
        self._arange = torch.arange(self.max_seq_len)
        self._final_norm: torch.Tensor | None = weights.final_norm.float()  # the weight of the last rms_norm
        self._embed_t: torch.Tensor | None = None  # the tied fp32 table as [hidden, vocab] (also the LM head)
        if weights.lm_head is None and isinstance(weights.embed, torch.Tensor):
            # fp32, tied: one table for the lookup and the head, in the head's fast layout (a second, folded
            # [vocab, hidden] copy cost 113 MB on SmolLM2); the final norm's weight goes into its rms_norm.
            self._embed_t = weights.embed.float().t().contiguous()
            self.embed = None
            self._head: Linear = DenseLinear.transposed(self._embed_t)
        else:
            # Quantized tables stay quantized: a step dequantizes only the rows it looks up (an fp32 copy of
            # SmolLM2's table would add 113 MB to an int8 server that is ~700 MB in all).
            table = weights.embed
            self.embed = table.float().contiguous() if isinstance(table, torch.Tensor) else table
            head = weights.lm_head if weights.lm_head is not None else weights.embed
            if isinstance(head, torch.Tensor):  # fp32, untied: fold the final norm into the LM head's copy
                self._head, self._final_norm = DenseLinear(head.float() * weights.final_norm), None
            else:
                self._head = make_linear(head)
        self.layers: list[_Layer] = []
        self._native_glue = native_glue
        glue = native.library() if native_glue is not False else None
        if fold_rotary is None:  # the compiled glue does RoPE itself: folding would only add weight rows to read
            fold_rotary = glue is None and self._rope * shape.hidden_size <= FOLD_ROTARY_MAX_ELEMENTS
        self.fold_rotary = fold_rotary
        self._glue = None if fold_rotary else glue
        if self._glue is not None:  # the glue's buffers, reused by every batch-1 step
            self._xn, self._att = torch.empty(1, shape.hidden_size), torch.empty(1, self._q)
            self._act, self._qrot = torch.empty(1, self._inter), torch.empty(self._rope)
            self._scores = torch.empty(self.max_seq_len)
        self._v = 2 * self._rope if fold_rotary else self._rope  # where v's columns start
        for layer in weights.layers:
            qkv = layer.qkv
            if fold_rotary:
                q = slice_rows(layer.qkv, 0, self._q)
                k = slice_rows(layer.qkv, self._q, self._rope)
                v = slice_rows(layer.qkv, self._rope, self._rope + shape.kv_size)
                # Output columns: [q, k | R q, R k | v]; RoPE is then qk * cos + (R qk) * sin.
                qkv = concat_rows([q, k, rotate_rows(q, heads, dim), rotate_rows(k, kv_heads, dim), v])
            self.layers.append(_Layer(make_linear(qkv), make_linear(layer.o), make_linear(layer.gate_up),
                                      make_linear(layer.down)))
            if consume_weights:
                weights.layers[len(self.layers) - 1] = None
        if consume_weights:
            weights.embed = weights.lm_head = None
        self._rows = torch.arange(max_batch_size)

    @property
    def glue_status(self) -> str:
        """How a one-sequence decode step runs: ``compiled glue (<.so path>)`` or ``torch ops (<why>)``."""
        if self._glue is not None:
            return "compiled glue " + native.status().removeprefix("on ")
        if self._native_glue is False:
            return "torch ops (native_glue=False)"
        if native.library() is not None:  # built, but this decoder folded RoPE into its weights
            return "torch ops (RoPE folded into the weights)"
        return f"torch ops ({native.status()})"

    def _positions(self, length: int) -> None:
        """Extend the RoPE tables to cover positions ``< length`` (in chunks, up to ``max_seq_len``)."""
        if length > self._cos.shape[0]:
            shape = self.shape
            self._cos, self._sin = rope_tables(shape.head_dim, shape.rope_theta, shape.num_heads + shape.num_kv_heads,
                                               max(length, self.cache.rounded(length)))
            if not self.fold_rotary:  # rotate_half(x) * sin == flip_halves(x) * [-sin1, sin2]: the sign goes here
                halves = self._sin.unflatten(-1, (-1, 2, shape.head_dim // 2))
                self._sin = halves.mul(torch.tensor([[-1.0], [1.0]])).flatten(-3)

    def _rotary(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """RoPE on the q and k columns of a fused projection's output ``[..., columns]`` -> ``[..., q + k]``."""
        end = self._rope
        if self.fold_rotary:  # the rotated copies are columns end..2*end of the output
            return torch.addcmul(qkv[..., :end] * cos, qkv[..., end:2 * end], sin)
        qk = qkv[..., :end]
        # the halves of every head swapped ([x2, x1]); ``sin`` carries rotate_half's minus on its first halves
        swapped = qk.unflatten(-1, (-1, 2, self.shape.head_dim // 2)).flip(-2).flatten(-3)
        return torch.addcmul(qk * cos, swapped, sin)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), None, self._eps)  # weights are folded into the next matmul

    def _embedding(self, ids: torch.Tensor) -> torch.Tensor:
        """The embedding rows ``[n, hidden]`` of token ids ``[n]``."""
        if self._embed_t is not None:  # a column gather from the [hidden, vocab] table (~0.1 ms at batch 32)
            return self._embed_t.index_select(1, ids).t().contiguous()
        if isinstance(self.embed, torch.Tensor):
            return self.embed[ids]
        return dequantize(take_rows(self.embed, ids))

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return self._head(F.rms_norm(h, (h.shape[-1],), self._final_norm, self._eps))

    def _mlp(self, layer: _Layer, h: torch.Tensor) -> torch.Tensor:
        gate_up = layer.gate_up(self._norm(h))
        return layer.down.add_to(h, F.silu(gate_up[:, :self._inter]) * gate_up[:, self._inter:])

    @torch.inference_mode()
    def decode(self, tokens: list[int] | list[list[int]], positions: list[int]) -> torch.Tensor:
        """Extend rows ``0..B-1``: row ``r`` feeds ``tokens[r]`` starting at ``positions[r]``.

        Writes each fed token's key and value at its position; a token at position ``p`` attends to its
        row's positions ``<= p``. One token per row (a flat list) is the plain decode step and returns
        ``[B, vocab]``; ``T`` tokens per row (speculative verification) return ``[B, T, vocab]``. The
        caller keeps ``positions[r] + T <= max_seq_len``; the cache grows first when it is too small.

        Args:
            tokens: ``B`` token ids, or ``B`` lists of ``T`` ids (same ``T`` for every row).
            positions: ``B`` cache positions of each row's first fed token.

        Returns:
            fp32 logits, ``[B, vocab]`` or ``[B, T, vocab]``.
        """
        batch = len(tokens)
        multi = isinstance(tokens[0], list)
        if batch == 1 and not multi and self._glue is not None:
            return self._decode_one(tokens[0], positions[0])
        width = len(tokens[0]) if multi else 1
        heads, kv_heads, dim = self.shape.num_heads, self.shape.num_kv_heads, self.shape.head_dim
        start = torch.tensor(positions)
        pos = (start[:, None] + self._arange[:width]).view(-1) if multi else start  # [B * T]
        length = max(positions) + width
        self.cache.reserve(batch, length)
        self._positions(length)
        h = self._embedding(torch.tensor(tokens).view(-1))
        cos, sin = self._cos[pos], self._sin[pos]
        cast = self.cache.dtype  # attention runs in the cache's type (bf16: no fp32 copy of the cache per step)
        if batch == 1 and not multi:
            bias = None  # one row at its last position: every cached position up to it is attended, no mask
        else:
            # An additive 0/-inf mask (measured ~10 % faster in SDPA than a boolean one at batch 32).
            bias = torch.where(self._arange[:length] <= pos[:, None], 0.0, float("-inf")).view(batch, 1, width, length)
            bias = bias.to(cast)
        rows = self._rows[:batch].repeat_interleave(width) if multi else self._rows[:batch]
        q_end, v_start = self._q, self._v
        for i, layer in enumerate(self.layers):
            qkv = layer.qkv(self._norm(h))
            qk = self._rotary(qkv, cos, sin)
            k_cache, v_cache = self.cache.keys[i], self.cache.values[i]
            k_cache[rows, :, pos] = qk[:, q_end:].view(-1, kv_heads, dim).to(cast)
            v_cache[rows, :, pos] = qkv[:, v_start:].view(-1, kv_heads, dim).to(cast)
            keys, values = k_cache[:batch, :, :length], v_cache[:batch, :, :length]
            if multi:
                q = qk[:, :q_end].view(batch, width, heads, dim).transpose(1, 2).to(cast)
                att = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias, scale=1.0,
                                                     enable_gqa=heads != kv_heads)
                att = att.transpose(1, 2).float()
            else:
                # GQA without copies: the query heads of one KV head form the "query length" axis.
                q = qk[:, :q_end].view(batch, kv_heads, self._groups, dim).to(cast)
                att = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias, scale=1.0).float()
            h = layer.o.add_to(h, att.reshape(-1, q_end))
            h = self._mlp(layer, h)
        logits = self._logits(h)
        return logits.view(batch, width, -1) if multi else logits

    def _decode_one(self, token: int, position: int) -> torch.Tensor:
        """``decode([token], [position])`` for cache row 0 through the compiled glue: fp32 logits ``[1, vocab]``."""
        glue, shape, cache = self._glue, self.shape, self.cache
        length = position + 1
        cache.reserve(1, length)
        self._positions(length)
        h = self._embedding(torch.tensor([token])).contiguous()
        columns = self._cos.shape[1]
        cos = self._cos.data_ptr() + position * columns * 4  # this position's rows of the fp32 tables
        sin = self._sin.data_ptr() + position * columns * 4
        bf16 = int(cache.dtype == torch.bfloat16)
        xn, att, act = self._xn, self._att, self._act
        xn_p, att_p, act_p, qrot_p, scores_p = (xn.data_ptr(), att.data_ptr(), act.data_ptr(), self._qrot.data_ptr(),
                                                self._scores.data_ptr())
        hidden, eps, inter = shape.hidden_size, self._eps, self._inter
        heads, kv_heads, dim = shape.num_heads, shape.num_kv_heads, shape.head_dim
        for layer, keys, values in zip(self.layers, cache.keys, cache.values):
            glue.compactlm_rms_norm(h.data_ptr(), hidden, eps, xn_p)
            qkv = layer.qkv(xn).contiguous()
            glue.compactlm_attention_step(qkv.data_ptr(), heads, kv_heads, dim, cos, sin, keys.data_ptr(),
                                          values.data_ptr(), cache.length, position, bf16, 1.0, qrot_p, scores_p,
                                          att_p)
            h = layer.o.add_to(h, att)
            glue.compactlm_rms_norm(h.data_ptr(), hidden, eps, xn_p)
            gate_up = layer.gate_up(xn).contiguous()
            glue.compactlm_silu_mul(gate_up.data_ptr(), inter, act_p)
            h = layer.down.add_to(h, act)
        return self._logits(h)

    @torch.inference_mode()
    def forward(self, prompts: list[list[int]], first_row: int | None = None,
                all_logits: bool = False) -> torch.Tensor:
        """Run whole prompts (right-padded into one batch) through the model.

        Args:
            prompts: token ids, one list per sequence (each at most ``max_seq_len`` long).
            first_row: write the keys and values of prompt ``j`` to cache row ``first_row + j``
                (prefill; the cache grows first when it is too small); None writes nothing (scoring).
            all_logits: return ``[n, T, vocab]`` for every position; otherwise ``[n, vocab]`` at each
                prompt's last token.

        Returns:
            fp32 logits, ``[n, vocab]`` or ``[n, T, vocab]`` (``T`` the longest prompt).
        """
        n, width = len(prompts), max(len(p) for p in prompts)
        h = self._hidden(prompts, first_row)
        if all_logits:
            return self._logits(h).view(n, width, -1)
        last = torch.tensor([j * width + len(p) - 1 for j, p in enumerate(prompts)])
        return self._logits(h[last])

    @torch.inference_mode()
    def span_logprobs(self, sequences: list[list[int]], starts: list[int]) -> list[torch.Tensor]:
        """Teacher-forced log-probabilities of each sequence's tokens from ``starts[j]`` on (scoring, no cache).

        Logits are computed only at the scored positions, so scoring a short answer after a long prompt
        costs the forward pass, not a ``[T, vocab]`` matrix per row.

        Args:
            sequences: token ids, one list per sequence (each at most ``max_seq_len`` long).
            starts: per sequence, the first scored position (>= 1): token ``t`` is scored given tokens ``< t``.

        Raises:
            ValueError: a start outside ``[1, len(sequence)]``.

        Returns:
            One fp32 tensor per sequence, ``[len - start]``: natural-log probabilities of its scored tokens.
        """
        if any(not 1 <= start <= len(seq) for seq, start in zip(sequences, starts)):
            raise ValueError(f"every start must be in [1, len(sequence)]; got starts={starts}")
        width = max(len(s) for s in sequences)
        h = self._hidden(sequences, None)
        rows = [torch.arange(j * width + start - 1, j * width + len(seq) - 1)
                for j, (seq, start) in enumerate(zip(sequences, starts))]
        logprobs = torch.log_softmax(self._logits(h[torch.cat(rows)]), dim=-1)
        targets = torch.tensor([t for seq, start in zip(sequences, starts) for t in seq[start:]])
        picked = logprobs.gather(-1, targets[:, None]).squeeze(-1)
        return list(picked.split([len(r) for r in rows]))

    def _hidden(self, prompts: list[list[int]], first_row: int | None) -> torch.Tensor:
        """The last layer's hidden states ``[n * T, hidden]`` of right-padded prompts (prefill when ``first_row``)."""
        n, width = len(prompts), max(len(p) for p in prompts)
        heads, kv_heads, dim = self.shape.num_heads, self.shape.num_kv_heads, self.shape.head_dim
        ids = torch.tensor([p + [0] * (width - len(p)) for p in prompts])
        if first_row is not None:
            self.cache.reserve(first_row + n, width)
        self._positions(width)
        h = self._embedding(ids.view(-1))
        cos, sin = self._cos[:width], self._sin[:width]
        q_end, v_start = self._q, self._v
        for i, layer in enumerate(self.layers):
            qkv = layer.qkv(self._norm(h)).view(n, width, -1)
            qk = self._rotary(qkv, cos, sin)
            q = qk[..., :q_end].view(n, width, heads, dim).transpose(1, 2)
            k = qk[..., q_end:].reshape(n, width, kv_heads, dim).transpose(1, 2)
            v = qkv[..., v_start:].reshape(n, width, kv_heads, dim).transpose(1, 2)
            if first_row is not None:
                # Padding positions get written too; they sit past the row's length, so they stay masked
                # until the row's own decode steps overwrite them.
                self.cache.keys[i][first_row:first_row + n, :, :width] = k
                self.cache.values[i][first_row:first_row + n, :, :width] = v
            # Causal masking alone is right for right-padded rows: real tokens never look past themselves.
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0, enable_gqa=heads != kv_heads)
            h = layer.o.add_to(h, att.transpose(1, 2).reshape(n * width, q_end))
            h = self._mlp(layer, h)
        return h

    def move_row(self, src: int, dst: int, length: int) -> None:
        """Copy the first ``length`` cached positions of row ``src`` to row ``dst`` (all layers)."""
        self.cache.move_row(src, dst, length)

    def warmup(self) -> None:
        """Run every code path once (the first call of some CPU kernels pays seconds of one-time set-up), then
        free the cache again."""
        self.forward([[0, 1, 2]], first_row=0)
        self.decode([3], [3])
        self.decode([[4, 5]], [4])
        self.forward([[0, 1], [2]], all_logits=True)
        self.cache.release()
