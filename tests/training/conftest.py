"""Shared pieces of the training tests: a tiny config and one small pretrained decoder for the session."""

from __future__ import annotations

import pytest

from compactlm.config import load_config

TINY = ["model.preset=decoder-tiny", "model.vocab_size=400", "model.max_seq_len=64", "train.max_steps=4",
        "train.batch_size=8", "train.logging_steps=2", "train.device=cpu", "train.system_metrics_interval=0",
        "finetune.max_steps=4", "finetune.batch_size=8", "finetune.r=4", "finetune.alpha=8"]


def _tiny_config(*overrides: str):
    return load_config(overrides=[*TINY, *overrides])


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(*overrides)``: the tiny test config with extra ``section.field=value`` overrides."""
    return _tiny_config


@pytest.fixture(scope="session")
def splits(tiny_frame):
    """Train and validation rows of the generated support data."""
    return tiny_frame.iloc[:480].reset_index(drop=True), tiny_frame.iloc[480:].reset_index(drop=True)


@pytest.fixture(scope="session")
def base_dir(splits, tmp_path_factory):
    """A decoder-tiny pretrained for 4 steps (the base every fine-tuning test starts from)."""
    from compactlm.training.causal import pretrain_decoder

    folder = tmp_path_factory.mktemp("base") / "base"
    config = _tiny_config()
    pretrain_decoder(*splits, folder, config.model, config.train, report_to_mlflow=False)
    return folder
