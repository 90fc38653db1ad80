"""MLflow registry helpers against a real SQLite tracking store: register, tags, aliases, promote, list."""

from __future__ import annotations

import pytest

from compactlm.models.presets import build_decoder
from compactlm.models.tokenizer import train_bpe_tokenizer
from compactlm.registry import store
from compactlm.registry.pyfunc import load_chat_model, log_chat_model
from compactlm.state import state_paths

NAME = "unit-model"


@pytest.fixture
def tracked(home, tmp_path):
    import mlflow

    paths = state_paths()
    experiment = store.setup_tracking(paths, "unit")
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


def test_register_tag_alias_and_load_back(tracked, capfd):
    version = store.register_version(tracked, NAME, {"data_version": "abc", "gate_verdict": "passed"})
    assert version == "1"
    printed = capfd.readouterr().err
    assert "already exists" not in printed and f"Created version '1' of model '{NAME}'" in printed
    store.set_alias(NAME, store.CHALLENGER, version)
    assert store.alias_version(NAME, "challenger") == "1"
    assert store.alias_version(NAME, "champion") is None
    assert store.alias_version("no-such-model", "champion") is None
    info = store.list_versions(NAME)[0]
    assert info.aliases == ["challenger"] and info.tags["data_version"] == "abc"
    model, tok = load_chat_model(f"models:/{NAME}@challenger")
    assert model.config.model_type == "llama" and tok.eos_token == "<|eos|>"
