"""Bad configuration fails before any compute, with one line naming the field and the value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compactlm.config import ModelConfig, load_config
from compactlm.errors import ConfigError
from compactlm.training.causal import finetune_causal

CI_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ci.yaml"


@pytest.mark.parametrize(("override", "message"), [
    ("model.preset=decoder-huge", r"model.preset must be one of \[.*\], got 'decoder-huge'"),
    ("model.max_seq_len=4096", r"model.max_seq_len must be in \[8, 256\] \(the preset's positions\), got 4096"),
    ("train.batch_size=0", r"train.batch_size must be >= 1, got 0"),
    ("finetune.batch_size=0", r"finetune.batch_size must be >= 1, got 0"),
    ("train.learning_rate=0", r"train.learning_rate must be in \(0, 1\], got 0.0"),
    ("train.learning_rate=2", r"train.learning_rate must be in \(0, 1\], got 2.0"),
    ("finetune.learning_rate=-0.001", r"finetune.learning_rate must be in \(0, 1\], got -0.001"),
    ("finetune.mode=half", r"finetune.mode must be lora or full, got 'half'"),
    ("train.precision=fp8", r"train.precision must be auto, bf16, fp16, fp32, got 'fp8'"),
    ("distill.alpha=1.5", r"distill.alpha must be in \[0, 1\], got 1.5"),
    ("classifier.loss=hinge", r"classifier.loss must be cross_entropy or focal, got 'hinge'"),
    ("sweep.space={lr: [0.1]}", r"sweep.space.lr must be a section.field name .*, got 'lr'"),
])
def test_each_bad_value_fails_in_one_line_naming_field_and_value(override, message):
    with pytest.raises(ConfigError, match=f"^{message}$") as error:
        load_config(CI_CONFIG, [override])
    assert "\n" not in str(error.value)


def test_model_level_errors_fail_before_any_output_is_written(base_dir, splits, tiny_config, tmp_path):
    config = tiny_config("finetune.target_modules=[q_proj,attn_c]")
    with pytest.raises(ConfigError, match=r"^finetune.target_modules \['attn_c'\] are not modules of the model"):
        finetune_causal(base_dir, *splits, tmp_path / "a", config.model, config.finetune, config.train,
                        report_to_mlflow=False)
    long = ModelConfig(base=str(base_dir), max_seq_len=512)
    with pytest.raises(ConfigError, match=r"^model.max_seq_len must be in \[8, 256\] \(the base's positions\), "
                                          r"got 512$"):
        finetune_causal(base_dir, *splits, tmp_path / "b", long, config.finetune, config.train, report_to_mlflow=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_training_entry_point_prints_one_error_line_and_exits_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "compactlm.training.launch", "--data", str(tmp_path), "--output",
                           str(tmp_path / "out"), "--set", "train.batch_size=0"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: train.batch_size must be >= 1, got 0"
    assert not (tmp_path / "out").exists()
