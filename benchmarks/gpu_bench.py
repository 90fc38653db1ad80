"""GPU training throughput and MFU of the ~100M preset through the project's training path; last line JSON.

    python benchmarks/gpu_bench.py [--preset decoder-base --seq-len 1024 --batch-size 16 --steps 60]

Trains ``decoder-base`` (88.9M parameters at an 8,192-token vocabulary; the generator's text yields a
smaller BPE vocabulary, so the JSON reports the parameters actually trained) with
``compactlm.training.runner.fit_stage`` (the HF Trainer path every stage uses) in bf16 (``train.precision:
auto``), with SDPA attention and fused AdamW, on packed blocks of the bundled generator's data. The first
``--warmup`` steps (CUDA context, kernel autotuning, allocator growth) are excluded from the timing.

MFU = achieved FLOP/s / peak dense bf16 FLOP/s, with FLOPs per token = 6 N + 12 L H T (the
parameter matmuls forward and backward, plus attention scores; N excludes the embedding matrix that
is only looked up, L layers, H width, T sequence length). The peak comes from the GPU's name
(``--peak-tflops`` overrides it). Without CUDA it exits with one line and status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
                    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 125.0, "A10": 125.0, "RTX 4090": 165.0}


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU by name (None when unknown)."""
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None


def flops_per_token(non_embedding_params: int, layers: int, width: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the weight matmuls (forward + backward) plus attention scores."""
    return 6.0 * non_embedding_params + 12.0 * layers * width * seq_len


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="decoder-base")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (TFLOP/s)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("error: gpu_bench needs a CUDA GPU and none is visible (run it on a GPU machine; "
              "benchmarks/train_bench.py measures the CPU path)", file=sys.stderr)
        return 2

    from transformers import TrainerCallback, set_seed

    from compactlm.config import TrainConfig
    from compactlm.data.sources.generator import generate_support_dataset
    from compactlm.models.presets import build_decoder, get_preset
    from compactlm.models.tokenizer import train_bpe_tokenizer
    from compactlm.training.encoding import corpus_texts, pack_documents
    from compactlm.training.runner import StageOptim, fit_stage, resolve_precision

    class StepTimer(TrainerCallback):
        """Wall time from the end of the warm-up steps to the end of the last step (synchronised)."""

        def __init__(self, warmup: int) -> None:
            self.warmup, self.start, self.end = warmup, 0.0, 0.0

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (self.warmup, state.max_steps):
                torch.cuda.synchronize()
                if state.global_step == self.warmup:
                    self.start = time.perf_counter()
                else:
                    self.end = time.perf_counter()
            return control

    set_seed(0)
    frame = generate_support_dataset(n_rows=args.rows, seed=0)
    documents = corpus_texts(frame)
    tokenizer = train_bpe_tokenizer(documents, args.vocab_size, args.seq_len)
    model = build_decoder(args.preset, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                          tokenizer.eos_token_id)
    dataset = pack_documents(documents, tokenizer, args.seq_len)
    needed = args.steps * args.batch_size
    if len(dataset) < needed:  # repeat the corpus rather than run past an epoch boundary mid-measurement
        from datasets import concatenate_datasets

        dataset = concatenate_datasets([dataset] * (needed // len(dataset) + 1))
    cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, learning_rate=3e-4, warmup_ratio=0.05,
                      logging_steps=max(args.steps // 4, 1), device="cuda", precision="auto",
                      gradient_checkpointing=args.gradient_checkpointing, system_metrics_interval=0)
    timer = StepTimer(args.warmup)
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as work:
        _, result = fit_stage(model, tokenizer, dataset, None, Path(work), StageOptim.from_train(cfg), cfg, "cuda",
                              "gpu-bench", report_to_mlflow=False, extra_callbacks=[timer])
    preset = get_preset(args.preset)
    params = sum(p.numel() for p in model.parameters())
    non_embedding = params - model.get_input_embeddings().weight.numel()
    measured_steps = args.steps - args.warmup
    tokens_per_s = measured_steps * args.batch_size * args.seq_len / (timer.end - timer.start)
    flops = flops_per_token(non_embedding, preset.num_layers, preset.hidden_size, args.seq_len)
    name = torch.cuda.get_device_name()
    peak = args.peak_tflops or peak_tflops(name)
    mfu = tokens_per_s * flops / (peak * 1e12) if peak else None
    print(json.dumps({
        "device": name, "preset": args.preset, "parameters": params, "non_embedding_parameters": non_embedding,
        "precision": resolve_precision("auto", "cuda"), "seq_len": args.seq_len, "batch_size": args.batch_size,
        "steps_measured": measured_steps, "tokens_per_s": round(tokens_per_s, 1),
        "model_tflops_per_s": round(tokens_per_s * flops / 1e12, 2), "peak_bf16_tflops": peak,
        "mfu": round(mfu, 4) if mfu is not None else None, "final_train_loss": round(result.train_loss, 4),
        "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "gradient_checkpointing": args.gradient_checkpointing,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
