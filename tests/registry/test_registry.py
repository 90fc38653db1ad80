"""MLflow registry helpers against a real SQLite tracking store: register, tags, aliases, promote, list."""

from __future__ import annotations

import pytest

from compactlm.models.presets import build_decoder
from compactlm.models.tokenizer import train_bpe_tokenizer
from compactlm.registry import registry
from compactlm.registry.pyfunc import load_chat_model, log_chat_model
from compactlm.state import state_paths

NAME = "unit-model"


@pytest.fixture
def tracked(home, tmp_path):
    import mlflow

    paths = state_paths()
    experiment = registry.setup_tracking(paths, "unit")
    tok = train_bpe_tokenizer(["hello there, where is my order?"] * 30, 300, 32)
    model = build_decoder("decoder-tiny", len(tok), tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    with mlflow.start_run(experiment_id=experiment):
        uri = log_chat_model(tmp_path / "m").model_uri
    yield uri
    mlflow.set_tracking_uri(None)


def test_local_tracking_lives_in_the_state_folder(tracked, home):
    import mlflow

    assert (home / "mlflow.db").is_file()
    assert mlflow.get_experiment_by_name("unit").artifact_location.startswith((home / "mlartifacts").as_uri())


def test_register_tag_alias_and_load_back(tracked):
    version = registry.register_version(tracked, NAME, {"data_version": "abc", "gate_verdict": "passed"})
    assert version == "1"
    registry.set_alias(NAME, registry.CHALLENGER, version)
    assert registry.alias_version(NAME, "challenger") == "1"
    assert registry.alias_version(NAME, "champion") is None
    assert registry.alias_version("no-such-model", "champion") is None
    info = registry.list_versions(NAME)[0]
    assert info.aliases == ["challenger"] and info.tags["data_version"] == "abc"
    model, tok = load_chat_model(f"models:/{NAME}@challenger")
    assert model.config.model_type == "llama" and tok.eos_token == "<|eos|>"


def test_lineage_tags_cover_data_code_config_quality_bias_and_gate():
    from types import SimpleNamespace

    quality = SimpleNamespace(summary=lambda: "suite: 10/10 expectations passed", success=True)
    bias = SimpleNamespace(audited=True, disparate_impact=0.95, statistical_parity_difference=-0.01, passed=True)
    gate = SimpleNamespace(verdict="passed")
    tags = registry.lineage_tags(data_version="d" * 32, data_remote="/r", config_hash="c" * 12, quality=quality,
                                 bias=bias, gate=gate, metrics={"rouge_l": 0.41234}, extra={"k": "v"})
    assert tags["data_version"] == "d" * 32 and tags["config_hash"] == "c" * 12
    assert tags["git_commit"] and tags["ge_success"] == "True"
    assert tags["bias_disparate_impact"] == "0.9500" and tags["gate_verdict"] == "passed"
    assert tags["metric.rouge_l"] == "0.4123" and tags["k"] == "v"
