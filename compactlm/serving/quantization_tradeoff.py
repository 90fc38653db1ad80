"""The quantization trade-off table: size on disk, decode speed and quality of each scheme against fp32.

Every scheme runs on the same fast engine, so the table isolates what quantization changes:

* size — the engine weights file of each scheme, against the fp32 one;
* speed — generated tokens per second at batch 1 (latency) and at a full batch (throughput);
* quality — per-token perplexity of the reference responses (teacher-forced, every row) and ROUGE-L
  of greedy generations on a seeded sample, each with its relative change against fp32.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from compactlm.evaluation.metrics import rouge_l
from compactlm.serving.engine.artifact import save_engine_weights, weights_bytes
from compactlm.serving.engine.decoder import FastDecoder
from compactlm.serving.engine.generation import GenerationEngine
from compactlm.serving.engine.sampling import SamplingParams
from compactlm.serving.engine.weights import DecoderWeights, quantize_decoder
from compactlm.training.encoding import IGNORE_INDEX, encode_instruction_pairs


@dataclass
class SchemeResult:
    """One row of the table."""

    scheme: str
    size_bytes: int
    size_ratio: float  # against fp32
    tokens_per_s_batch1: float
    tokens_per_s_batched: float
    perplexity: float
    perplexity_change_pct: float  # + is worse
    rouge_l: float
    rouge_l_change_pct: float  # - is worse
    directory: str = ""


@dataclass
class TradeoffReport:
    """The table, and what it was measured on."""

    results: list[SchemeResult]
    eval_rows: int
    generated_rows: int
    max_new_tokens: int
    batch_size: int
    threads: int
    notes: list[str] = field(default_factory=list)

    def by_scheme(self) -> dict[str, SchemeResult]:
        """The rows keyed by scheme name."""
        return {r.scheme: r for r in self.results}

    def to_dict(self) -> dict:
        """Everything as plain data (what ``tradeoff.json`` holds)."""
        return asdict(self)

    def to_json(self) -> str:
        """``to_dict`` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        """The table in Markdown with a note on what it was measured on (``tradeoff.md``)."""
        lines = ["| scheme | size (MB) | size vs fp32 | tokens/s (batch 1) | tokens/s (batch "
                 f"{self.batch_size}) | perplexity | Δ perplexity | ROUGE-L | Δ ROUGE-L |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.results:
            lines.append(f"| {r.scheme} | {r.size_bytes / 1e6:.2f} | {r.size_ratio:.1%} | {r.tokens_per_s_batch1:,.0f} "
                         f"| {r.tokens_per_s_batched:,.0f} | {r.perplexity:.4f} | {r.perplexity_change_pct:+.2f} % "
                         f"| {r.rouge_l:.4f} | {r.rouge_l_change_pct:+.2f} % |")
        lines.append("")
        lines.append(f"Perplexity on {self.eval_rows} rows (teacher-forced responses), ROUGE-L on "
                     f"{self.generated_rows} greedy generations of up to {self.max_new_tokens} tokens; speed with "
                     f"{self.threads} torch thread(s), 100 tokens per sequence, no speculative decoding.")
        lines.extend(self.notes)
        return "\n".join(lines)


def response_perplexity(decoder: FastDecoder, tokenizer, frame: pd.DataFrame, batch_size: int = 32) -> float:
    """Per-token perplexity of each row's response (and EOS) given its prompt, as the evaluation step defines it.

    ``exp(sum of token negative log-likelihoods / number of response tokens)`` over all rows, teacher-forced
    (prompt tokens are not scored).

    Args:
        decoder: the engine's decoder (any scheme).
        tokenizer: the model's tokenizer.
        frame: rows with ``instruction`` and ``response``.
        batch_size: rows per forward pass.
    """
    encoded = encode_instruction_pairs(frame, tokenizer, decoder.max_seq_len)
    nll, count = 0.0, 0
    for start in range(0, len(encoded["input_ids"]), batch_size):
        ids = encoded["input_ids"][start:start + batch_size]
        labels = encoded["labels"][start:start + batch_size]
        logits = decoder.forward(ids, all_logits=True)
        width = logits.shape[1]
        target = torch.tensor([lab[1:] + [IGNORE_INDEX] * (width - len(lab)) for lab in labels])
        nll += float(F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1),
                                     ignore_index=IGNORE_INDEX, reduction="sum"))
        count += int((target != IGNORE_INDEX).sum())
    return math.exp(nll / max(count, 1))


def decode_speed(engine: GenerationEngine, batch: int, new_tokens: int = 100) -> float:
    """Generated tokens per second (wall clock) for ``batch`` identical requests of exactly ``new_tokens`` tokens.

    One untimed warm-up run of the same shapes comes first.
    """
    prompt = engine.encode(engine.instruction_prompt("Where is my order?"))
    params = SamplingParams(max_tokens=new_tokens, min_tokens=new_tokens)
    engine.generate([prompt] * batch, params)  # warm the shapes of this batch size
    start = time.perf_counter()
    done = engine.generate([prompt] * batch, params)
    return sum(c.completion_tokens for c in done) / (time.perf_counter() - start)


def _pct(value: float, base: float) -> float:
    return 0.0 if base == 0 else 100.0 * (value - base) / base


def measure_tradeoff(weights: DecoderWeights, tokenizer, frame: pd.DataFrame, out_dir: str | Path,
                     schemes: tuple[str, ...] = ("fp32", "int8", "int4"), generate_rows: int = 200,
                     max_new_tokens: int = 64, batch_size: int = 32, seed: int = 0,
                     source: dict | None = None) -> TradeoffReport:
    """Quantize ``weights`` (fp32) to each scheme, save each under ``out_dir/<scheme>``, and measure it.

    Args:
        weights: the fp32 weights of the source model.
        tokenizer: its tokenizer (saved with every scheme).
        frame: evaluation rows with ``instruction`` and ``response`` (the frozen test split, ideally).
        out_dir: where the engine folders go (``out_dir/fp32``, ``out_dir/int8``...).
        schemes: fp32 is always measured first, as the baseline.
        generate_rows: rows sampled (seeded) for ROUGE-L.
        max_new_tokens: the generation budget of each ROUGE-L row.
        batch_size: KV-cache rows, and the batch of the throughput figure.
        seed: the sampling seed of the ROUGE-L rows.
        source: where the weights came from, kept in each engine folder's manifest.

    Returns:
        One ``SchemeResult`` per scheme (sizes in bytes, speeds in tokens/s, changes in % of fp32).

    Raises:
        ConfigError: an unknown scheme, or a shape int4 cannot group.
    """
    out_dir = Path(out_dir)
    ordered = ["fp32", *[s for s in schemes if s != "fp32"]]
    sample = frame.sample(n=min(generate_rows, len(frame)), random_state=seed)
    references = list(sample["response"])
    results: list[SchemeResult] = []
    progress = tqdm(total=4 * len(ordered), desc="quantize", unit="step", file=sys.stderr)
    for scheme in ordered:
        progress.set_postfix_str(f"{scheme}: quantizing")
        quantized = quantize_decoder(weights, scheme)
        directory = out_dir / scheme
        save_engine_weights(quantized, tokenizer, directory, source={**(source or {}), "scheme": scheme})
        # No speculation: the table compares the schemes' arithmetic, not how repetitive the prompts are.
        engine = GenerationEngine.from_weights(quantized, tokenizer, max_batch_size=batch_size, speculative_tokens=0)
        progress.update()
        progress.set_postfix_str(f"{scheme}: perplexity on {len(frame)} rows")
        perplexity = response_perplexity(engine.decoder, tokenizer, frame, batch_size)
        progress.update()
        progress.set_postfix_str(f"{scheme}: {len(sample)} answers for ROUGE-L")
        done = engine.complete(list(sample["instruction"]), SamplingParams(max_tokens=max_new_tokens))
        predictions = [c.text.strip() for c in done]
        rouge = rouge_l(predictions, references)
        progress.update()
        progress.set_postfix_str(f"{scheme}: tokens/s")
        base = results[0] if results else None
        size = weights_bytes(directory)
        results.append(SchemeResult(
            scheme=scheme, size_bytes=size, size_ratio=size / base.size_bytes if base else 1.0,
            tokens_per_s_batch1=decode_speed(engine, 1), tokens_per_s_batched=decode_speed(engine, batch_size),
            perplexity=perplexity, perplexity_change_pct=_pct(perplexity, base.perplexity) if base else 0.0,
            rouge_l=rouge, rouge_l_change_pct=_pct(rouge, base.rouge_l) if base else 0.0, directory=str(directory)))
        progress.update()
    progress.close()
    return TradeoffReport(results=results, eval_rows=len(frame), generated_rows=len(sample),
                          max_new_tokens=max_new_tokens, batch_size=batch_size, threads=torch.get_num_threads())
