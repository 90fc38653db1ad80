"""Typed configuration: defaults, shipped files, overrides and one-line errors naming field and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from compactlm.config import PipelineConfig, config_from_dict, load_config
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
    config = load_config(overrides=["train.epochs=3", "data.n_rows=500", "lora.enabled=false",
                                    "lora.target_modules=[q_proj,v_proj]", "data.allowed_intents=a,b"])
    assert config.train.epochs == 3.0 and isinstance(config.train.epochs, float)
    assert config.data.n_rows == 500
    assert config.lora.enabled is False
    assert config.lora.target_modules == ["q_proj", "v_proj"]
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
        ("lora.r=0", "lora.r must be >= 1, got 0"),
        ("data.val_fraction=0.7", "data.val_fraction must be in (0, 0.5), got 0.7"),
        ("train.device=tpu", "train.device must be auto, cpu or cuda, got 'tpu'"),
        ("train.epochs=abc", "train.epochs must be a number, got 'abc'"),
        ("data.n_rows=1.5", "data.n_rows must be an integer, got 1.5"),
        ("lora.enabled=maybe", "lora.enabled must be true or false, got 'maybe'"),
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
