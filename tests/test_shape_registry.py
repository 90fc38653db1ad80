"""The task-shape registry: every shape is complete, and the facts per shape are where the pipeline reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from compactlm.config import load_config
from compactlm.errors import ConfigError
from compactlm.shapes import SHAPES, get_shape

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_has_a_schema_a_suite_file_a_gate_and_card_text(name):
    shape = SHAPES[name]
    assert shape.schema.name == name
    assert (REPO_ROOT / "expectations" / f"{shape.suite}.json").is_file()
    assert shape.gate_checks and shape.card.intended_use and shape.card.limitations
    assert load_config(overrides=[f"data.task={name}"]).data.expectation_suite == shape.suite


def test_an_unknown_shape_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"data.task must be one of instruction, chat, .*got 'poetry'"):
        get_shape("poetry")


def test_only_conversational_shapes_get_the_mcq_set_and_probes():
    assert {n for n, s in SHAPES.items() if s.conversational} == {"instruction", "chat"}
    assert get_shape("summarization").keep_completion and get_shape("summarization").serve_prompt
    assert get_shape("classification").evaluation == "classification"
