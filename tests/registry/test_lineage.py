"""Lineage of a registered version: tags that trace it to data, code, config and the reports that judged it."""

from __future__ import annotations

from compactlm.registry.lineage import lineage_tags


def test_lineage_tags_cover_data_code_config_quality_bias_and_gate():
    from types import SimpleNamespace

    quality = SimpleNamespace(summary=lambda: "suite: 10/10 expectations passed", success=True)
    bias = SimpleNamespace(audited=True, disparate_impact=0.95, statistical_parity_difference=-0.01, passed=True)
    gate = SimpleNamespace(verdict="passed")
    tags = lineage_tags(data_version="d" * 32, data_remote="/r", config_hash="c" * 12, quality=quality,
                        bias=bias, gate=gate, metrics={"rouge_l": 0.41234}, extra={"k": "v"})
    assert tags["data_version"] == "d" * 32 and tags["config_hash"] == "c" * 12
    assert tags["git_commit"] and tags["ge_success"] == "True"
    assert tags["bias_disparate_impact"] == "0.9500" and tags["gate_verdict"] == "passed"
    assert tags["metric.rouge_l"] == "0.4123" and tags["k"] == "v"
