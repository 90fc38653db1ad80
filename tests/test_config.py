"""Typed configuration: defaults, shipped files, overrides and one-line errors naming field and value."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from compactlm.config import (
    GateCheckConfig,
    GateConfig,
    PipelineConfig,
    config_from_dict,
    default_gate_checks,
    load_config,
)
from compactlm.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_defaults_are_valid_and_hash_is_stable():
    a, b = load_config(), PipelineConfig()
    assert a.config_hash() == b.config_hash()
    assert len(a.config_hash()) == 12


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_starts_with_its_command(path: Path):
    config = load_config(path)
    assert isinstance(config, PipelineConfig)
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("# compactlm ") and f"configs/{path.name}" in first_line


def test_overrides_apply_and_coerce_types():
    config = load_config(overrides=["train.epochs=3", "data.n_rows=500", "finetune.enabled=false",
                                    "finetune.target_modules=[q_proj,v_proj]", "data.allowed_intents=a,b"])
    assert config.train.epochs == 3.0 and isinstance(config.train.epochs, float)
    assert config.data.n_rows == 500
    assert config.finetune.enabled is False
    assert config.finetune.target_modules == ["q_proj", "v_proj"]
    assert config.data.allowed_intents == ["a", "b"]


def test_hash_changes_with_a_value_but_not_with_the_state_folder():
    base = load_config()
    assert load_config(overrides=["train.learning_rate=0.001"]).config_hash() != base.config_hash()
    assert load_config(overrides=["home=/elsewhere"]).config_hash() == base.config_hash()


def test_round_trip_through_dict():
    config = load_config(overrides=["model.preset=decoder-tiny", "model.max_seq_len=64"])
    assert config_from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.batch_size=0", "train.batch_size must be >= 1, got 0"),
        ("train.learning_rate=5", "train.learning_rate must be in (0, 1], got 5.0"),
        ("model.preset=decoder-giant", "model.preset must be one of"),
        ("model.max_seq_len=4096", "model.max_seq_len must be in [8, 256]"),
        ("finetune.r=0", "finetune.r must be >= 1, got 0"),
        ("data.val_fraction=0.7", "data.val_fraction must be in (0, 0.5), got 0.7"),
        ("train.device=tpu", "train.device must be auto, cpu or cuda, got 'tpu'"),
        ("train.epochs=abc", "train.epochs must be a number, got 'abc'"),
        ("data.n_rows=1.5", "data.n_rows must be an integer, got 1.5"),
        ("finetune.enabled=maybe", "finetune.enabled must be true or false, got 'maybe'"),
        ("train.colour=blue", "unknown config field 'train.colour'"),
        ("gate=3", "gate must be a mapping"),
        ("noequals", "must look like section.field=value"),
    ],
)
def test_invalid_values_fail_with_one_line_naming_the_field(override: str, expected: str):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=[override])
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listy)


def test_missing_source_file_fails_early(tmp_path: Path):
    config = load_config(overrides=[f"data.source={tmp_path / 'absent.csv'}"])
    with pytest.raises(ConfigError, match="data.source: file .*absent.csv does not exist"):
        config.data.check_source()
    load_config().data.check_source()  # the generator needs no file


def test_each_task_shape_gets_its_gate_and_a_named_check_keeps_its_other_bounds():
    classification = load_config(overrides=["data.task=classification", "gate.checks.accuracy.min=0.9"])
    assert set(classification.gate.checks) == set(default_gate_checks("classification"))
    assert classification.gate.checks["accuracy"] == GateCheckConfig(min=0.9, max_drop=0.02, beat_baseline=True)
    summarization = load_config(overrides=["data.task=summarization", "gate.checks.extra.max=1"])
    assert set(summarization.gate.checks) == {*default_gate_checks("summarization"), "extra"}
    assert load_config().gate == GateConfig(checks=default_gate_checks("instruction"))


def test_empty_sections_are_defaults_and_lists_take_comma_separated_text(tmp_path: Path):
    path = tmp_path / "partial.yaml"
    path.write_text("data:\ngate:\n  checks:\n    rouge_l:\nbias:\n  protected_attributes: {age_band: '65+, 45-64'}\n")
    config = load_config(path)
    assert config.data == load_config().data and config.gate == load_config().gate
    assert config.bias.protected_attributes == {"age_band": ["65+", "45-64"]}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("gate.checks.rouge_l.minimum=0.3",
         "unknown config field 'gate.checks.rouge_l.minimum' "
         "(known: beat_base, beat_baseline, higher_is_better, max, max_drop, min, relative)"),
        ("colour=blue",
         "unknown config field 'colour' (known: bias, classifier, data, distill, eval, finetune, gate, home, "),
        ("gate.checks=3", "gate.checks must be a mapping, got 3"),
        ("gate.checks.rouge_l=3", "gate.checks.rouge_l must be a mapping, got 3"),
        ("data.columns=[a]", "data.columns must be a mapping, got ['a']"),
        ("sweep.space={finetune.r: 4}", "sweep.space.finetune.r must be a list, got 4"),
        ("finetune.target_modules=[{}]", "finetune.target_modules must be a string, got {}"),
        ("home=null", "home must be a string, got None"),
    ],
)
def test_type_errors_name_the_dotted_field(override: str, expected: str):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=[override])
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_sections_stay_picklable_dataclasses():
    config = load_config(overrides=["data.task=classification"])
    assert pickle.loads(pickle.dumps(config)) == config
    assert [f.name for f in dataclasses.fields(config)][:3] == ["home", "data", "bias"]
    assert dataclasses.replace(config.train, epochs=3).epochs == 3.0
    with pytest.raises(ConfigError, match="^train.batch_size must be >= 1, got 0$"):
        dataclasses.replace(config.train, batch_size=0)


def test_the_config_package_imports_no_evaluation_gate_nor_heavy_library():
    code = ("import sys, compactlm.config; print(sorted(m for m in ('compactlm.evaluation.gate', 'torch', "
            "'transformers', 'mlflow', 'prefect') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("override", ["train.epochs=yes", "gate.checks.rouge_l.min=true", "finetune.r=false"])
def test_a_boolean_is_not_a_number(override):
    field = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{field} must be a number, got (True|False)$"):
        load_config(overrides=[override])


def test_the_former_lora_section_name_says_what_it_is_called_now():
    with pytest.raises(ConfigError, match=r"^config section 'lora' is now called 'finetune'"):
        load_config(overrides=["lora.r=8"])
    assert load_config(overrides=["finetune.r=8", "finetune.weight_decay=0.01"]).finetune.r == 8


def test_keep_layers_null_means_every_layer_like_zero():
    from compactlm.config import load_config

    assert load_config(overrides=["model.keep_layers=null"]).model.keep_layers == 0
