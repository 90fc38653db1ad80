"""The GPU benchmark and smoke test refuse to run without CUDA, in one line (they cannot run here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: run the scripts themselves")
@pytest.mark.parametrize("script", ["gpu_bench.py", "gpu_smoke.py"])
def test_gpu_scripts_exit_2_with_one_line_on_a_cpu_machine(script):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {script[:-3]} needs a CUDA GPU and none is visible")
    assert done.stdout == ""


def test_mfu_arithmetic_and_gpu_peaks():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu_bench
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert gpu_bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_bench.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_bench.peak_tflops("NVIDIA L40S") == 362.0 and gpu_bench.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_bench.peak_tflops("Some Future GPU") is None
    # 6 FLOPs per parameter per token, plus 12 * layers * width * context for the attention scores.
    assert gpu_bench.flops_per_token(80_000_000, 12, 768, 1024) == 6 * 80e6 + 12 * 12 * 768 * 1024
