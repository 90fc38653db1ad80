"""The training entry point across processes: exact resume after SIGKILL, and 2-process DDP (gloo) on CPU.

Both run ``python -m compactlm.training.launch`` in fresh processes, as a user (or torchrun) would.
Every process gets one torch thread so the floating-point reduction order is the same in every run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# 40 steps over 12 rows cross an epoch boundary; dropout makes the RNG state part of what must be restored.
COMMON = ["--set", "model.preset=decoder-tiny", "--set", "model.vocab_size=300", "--set", "model.max_seq_len=32",
          "--set", "finetune.enabled=false", "--set", "train.device=cpu", "--set", "train.logging_steps=3",
          "--set", "train.system_metrics_interval=0"]
RESUME = [*COMMON, "--set", "model.dropout=0.1", "--set", "train.max_steps=40", "--set", "train.batch_size=4",
          "--set", "train.save_steps=5", "--set", "train.eval_steps=10"]


@pytest.fixture(scope="module")
def data_dir(tiny_frame, tmp_path_factory):
    folder = tmp_path_factory.mktemp("launch-data")
    tiny_frame.iloc[:12].to_parquet(folder / "train.parquet")
    tiny_frame.iloc[500:532].to_parquet(folder / "val.parquet")
    return folder


def _command(data_dir: Path, output: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "compactlm.training.launch", "--data", str(data_dir), "--output", str(output),
            "--summary", str(output / "summary.json"), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _run(command: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on timeout the whole group (torchrun's workers too) is killed."""
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _summary(output: Path) -> dict:
    return json.loads((output / "summary.json").read_text())["pretrain"]


def test_a_run_killed_mid_training_resumes_to_the_same_final_metrics(data_dir, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _run(_command(data_dir, reference, *RESUME)).returncode == 0

    process = subprocess.Popen(_command(data_dir, killed, *RESUME), env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoints = killed / "base" / "checkpoints"
    deadline = time.monotonic() + 240
    # Kill once a checkpoint past the epoch boundary is complete (its trainer state is written last).
    while not (checkpoints / "checkpoint-30" / "trainer_state.json").is_file() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "summary.json").exists() and not (killed / "base" / "model.safetensors").exists()

    assert _run(_command(data_dir, killed, *RESUME, "--set", "train.resume_from_checkpoint=last")).returncode == 0
    uninterrupted, resumed = _summary(reference), _summary(killed)
    assert resumed["resumed_from"] is not None and int(resumed["resumed_from"].rsplit("-", 1)[1]) >= 30
    assert resumed["steps"] == uninterrupted["steps"] == 40
    assert resumed["train_loss"] == pytest.approx(uninterrupted["train_loss"], rel=1e-6, abs=1e-6)
    assert resumed["eval_loss"] == pytest.approx(uninterrupted["eval_loss"], rel=1e-6, abs=1e-6)


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun is not installed")
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(data_dir, tiny_frame, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    tiny_frame.iloc[:160].to_parquet(folder / "train.parquet")
    tiny_frame.iloc[500:540].to_parquet(folder / "val.parquet")
    steps = [*COMMON, "--set", "train.max_steps=6"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert _run(_command(folder, single, *steps, "--set", "train.batch_size=8")).returncode == 0
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    launch = _command(folder, ddp, *steps, "--set", "train.batch_size=4")
    done = _run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", *launch[2:]])
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = _summary(single), _summary(ddp)
    assert two["processes"] == 2 and one["processes"] == 1 and two["steps"] == one["steps"] == 6
    assert two["train_tokens"] == one["train_tokens"]  # the same global batch: 2 x 4 = 8 blocks per step
    # Gradients are averaged over the 2 processes instead of summed in one: only float rounding differs.
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-6)  # measured: 3e-8
    # The last evaluation batch is uneven across 2 processes (padded with repeated blocks): looser.
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4)  # measured: 1.4e-5
    assert (ddp / "base" / "model.safetensors").is_file()  # saved once, by the main process
