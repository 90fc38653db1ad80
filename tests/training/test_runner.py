"""The shared machinery without training: precision, evaluation/checkpoint cadence, resume, final losses."""

from __future__ import annotations

import json

import pytest

from compactlm.config import TrainConfig, load_config
from compactlm.errors import ConfigError
from compactlm.training.checkpoints import last_checkpoint, resolve_resume
from compactlm.training.runner import StageOptim, final_losses, resolve_precision, training_arguments


def _args(tmp_path, **machinery):
    cfg = TrainConfig(**machinery)
    return training_arguments(tmp_path, StageOptim.from_train(cfg), cfg, "cpu", "t", report_to_mlflow=False)


def test_precision_is_fp32_on_cpu_and_fp16_needs_cuda():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"  # asked for explicitly: CPU autocast
    with pytest.raises(ConfigError, match="train.precision 'fp16' needs a CUDA device"):
        resolve_precision("fp16", "cpu")


def test_keeping_the_best_checkpoint_saves_where_it_evaluates(tmp_path):
    plain = _args(tmp_path)
    assert (plain.eval_strategy, plain.save_strategy, plain.load_best_model_at_end) == ("epoch", "no", False)
    periodic = _args(tmp_path, save_steps=5, save_total_limit=3)
    assert (periodic.save_strategy, periodic.save_steps, periodic.save_total_limit) == ("steps", 5, 3)
    best = _args(tmp_path, save_steps=6, early_stopping_patience=2)
    assert (best.eval_strategy, best.eval_steps, best.save_strategy, best.save_steps) == ("steps", 6, "steps", 6)
    assert best.load_best_model_at_end and best.metric_for_best_model == "eval_loss" and not best.greater_is_better
    per_epoch = _args(tmp_path, load_best_model_at_end=True)
    assert (per_epoch.eval_strategy, per_epoch.save_strategy) == ("epoch", "epoch")
    assert _args(tmp_path, gradient_checkpointing=True).activation_checkpointing
    with pytest.raises(ConfigError, match=r"train.save_steps must be a multiple of train.eval_steps \(4\)"):
        load_config(overrides=["train.eval_steps=4", "train.save_steps=6", "train.load_best_model_at_end=true"])


def _checkpoint(folder, step: int, complete: bool = True):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}) if complete else '{"global_st')
    return path


def test_resume_last_picks_the_latest_complete_checkpoint(tmp_path):
    assert last_checkpoint(tmp_path / "none") is None and resolve_resume("last", tmp_path) is None  # fresh start
    _checkpoint(tmp_path, 5)
    ten = _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 15, complete=False)  # killed while saving
    (tmp_path / "checkpoint-final").mkdir()
    assert last_checkpoint(tmp_path) == ten
    assert resolve_resume("last", tmp_path) == str(ten)
    assert resolve_resume(str(ten), tmp_path) == str(ten) and resolve_resume(None, tmp_path) is None
    with pytest.raises(ConfigError, match="train.resume_from_checkpoint .*checkpoint-15.* is not a complete"):
        resolve_resume(str(tmp_path / "checkpoint-15"), tmp_path)


def test_final_losses_rebuild_the_run_mean_from_logged_windows():
    history = [{"loss": 4.0, "step": 2}, {"eval_loss": 3.5, "step": 4}, {"loss": 3.0, "step": 5},
               {"loss": 2.0, "step": 6}, {"eval_loss": 2.5, "step": 6}, {"train_loss": 9.9, "step": 6}]
    train, evaluation = final_losses(history)
    assert train == pytest.approx((4.0 * 2 + 3.0 * 3 + 2.0 * 1) / 6)  # windows of 2, 3 and 1 steps
    assert evaluation == 2.5
    assert final_losses(history, best_metric=2.1)[1] == 2.1
    assert final_losses([{"train_loss": 1.5, "step": 1}]) == (1.5, None)  # nothing logged: the Trainer's mean
