"""A minute-long CUDA check of the training path (bf16, gradient checkpointing, LoRA, QLoRA); last line JSON.

    python benchmarks/gpu_smoke.py            # pip install bitsandbytes first for the QLoRA check

Each check trains a tiny preset for a few steps on CUDA and reports ``ok``, ``skipped: why`` or
``failed: error``: causal pretraining in bf16 with gradient checkpointing, LoRA fine-tuning (adapter
and merged model), QLoRA (4-bit NF4 base through bitsandbytes, merged into the full-precision base),
and an encoder classifier. Exit status 0 when nothing failed; without CUDA it exits with one line and
status 2 (the CPU path is covered by ``make test``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("error: gpu_smoke needs a CUDA GPU and none is visible (the CPU path is covered by make test)",
              file=sys.stderr)
        return 2

    from compactlm.config import load_config
    from compactlm.data.sources.generator import generate_support_dataset
    from compactlm.training.causal import finetune_causal, pretrain_decoder
    from compactlm.training.encoder import finetune_classifier

    frame = generate_support_dataset(n_rows=400, seed=0)
    train, val = frame.iloc[:320], frame.iloc[320:]
    tiny = ["model.preset=decoder-tiny", "model.vocab_size=512", "model.max_seq_len=64", "train.max_steps=5",
            "train.batch_size=8", "train.device=cuda", "train.logging_steps=1", "finetune.max_steps=3",
            "finetune.batch_size=8", "finetune.r=4", "finetune.alpha=8"]
    work = Path(tempfile.mkdtemp(prefix="gpu-smoke-"))
    checks: dict[str, str] = {}
    figures: dict[str, float] = {}

    def check(name: str, fn) -> None:
        try:
            summary = fn()
            figures[f"{name}_train_loss"] = round(summary.train_loss, 4)
            checks[name] = "ok" if summary.device == "cuda" else f"failed: ran on {summary.device}"
        except Exception as exc:  # noqa: BLE001 - every failure is reported, the next check still runs
            traceback.print_exc()
            checks[name] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    cfg = load_config(overrides=[*tiny, "train.gradient_checkpointing=true", "train.precision=auto"])
    check("pretrain_bf16_checkpointing", lambda: pretrain_decoder(train, val, work / "base", cfg.model, cfg.train,
                                                                  report_to_mlflow=False))
    check("lora", lambda: finetune_causal(work / "base", train, val, work / "lora", cfg.model, cfg.finetune, cfg.train,
                                          report_to_mlflow=False))
    if importlib.util.find_spec("bitsandbytes") is None:
        checks["qlora"] = "skipped: bitsandbytes is not installed (pip install bitsandbytes)"
    else:
        qlora = load_config(overrides=[*tiny, "finetune.quantize_4bit=true", "train.gradient_checkpointing=true"])
        check("qlora", lambda: finetune_causal(work / "base", train, val, work / "qlora", qlora.model, qlora.finetune,
                                               qlora.train, report_to_mlflow=False))
    classes = frame.assign(text=frame["instruction"], label=frame["category"])
    encoder = load_config(overrides=[*tiny, "model.preset=encoder-tiny", "finetune.mode=full"])
    check("classifier", lambda: finetune_classifier(classes.iloc[:320], classes.iloc[320:], work / "classifier",
                                                    encoder.model, encoder.classifier, encoder.finetune, encoder.train,
                                                    report_to_mlflow=False))
    failed = [name for name, status in checks.items() if status.startswith("failed")]
    print(json.dumps({"device": torch.cuda.get_device_name(), "bf16": torch.cuda.is_bf16_supported(),
                      "checks": checks, **figures, "passed": not failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
