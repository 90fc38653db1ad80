"""The bad-input corpus through a real ingest (files dropped into a folder source that already has a version).

Each malformed input gives a one-line error naming the file (and line/column where it can) or a
quarantine with reasons; never a traceback, never a silent drop, and never a partial dataset version:
after an error the index, the manifest and the dataset folder are exactly as before.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from compactlm.config import DataConfig
from compactlm.data.ingest import ingest_version
from compactlm.data.prepare import allowed_intents
from compactlm.data.splits import combined_splits
from compactlm.data.versioning import read_split, version_records
from compactlm.errors import CompactLMError
from compactlm.quality.expectations import validate_frame
from compactlm.quality.suites import suite_parameters

GOOD = "good.csv"


def snapshot(root: Path, name: str) -> dict[str, bytes]:
    """Every byte that makes up the recorded state: the dataset folder, its .dvc file, index and manifest."""
    paths = [*sorted((root / "datasets" / name).iterdir()), root / "datasets" / f"{name}.dvc",
             root / "versions" / name / "index.json", root / "manifests" / f"{name}.json"]
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


@pytest.fixture
def state(tmp_path, tiny_frame, monkeypatch):
    """A folder source with one good file, ingested once: (folder, config, root, remote, first outcome)."""
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    folder = tmp_path / "incoming"
    folder.mkdir()
    tiny_frame.to_csv(folder / GOOD, index=False)
    config = DataConfig(source=str(folder))
    root, remote = tmp_path / "repo", str(tmp_path / "remote")
    first = ingest_version(config, root, remote)
    return folder, config, root, remote, first


def _write(folder: Path, name: str, content: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _truncated_parquet(folder: Path) -> Path:
    path = folder / "rows.parquet"
    pd.DataFrame({"instruction": ["where is it"] * 50, "response": ["soon"] * 50,
                  "intent": ["track_order"] * 50}).to_parquet(path)
    path.write_bytes(path.read_bytes()[:300])
    return path


HEADER = "instruction,response,intent\n"
ERRORS = {
    "empty file": (lambda f: _write(f, "empty.csv", b""), ["the file is empty"]),
    "header only": (lambda f: _write(f, "header.csv", HEADER), ["no data rows"]),
    "wrong delimiter": (lambda f: _write(f, "semi.csv", "instruction;response;intent\nwhere;soon;track_order\n"),
                        ["missing required column(s)", "wrong delimiter?"]),
    "missing required column": (lambda f: _write(f, "cols.csv", "instruction,response\nwhere is it,soon\n"),
                                ["missing required column(s) 'intent'", "found: instruction, response"]),
    "non-UTF-8 bytes": (lambda f: _write(f, "latin1.csv", HEADER.encode() + b"caf\xe9 order,ok,track_order\n"),
                        ["not UTF-8", "line 2", "0xe9"]),
    "truncated Parquet": (_truncated_parquet, ["not a readable Parquet file"]),
    "JSONL line that is not JSON": (lambda f: _write(f, "rows.jsonl", '{"instruction": "a", "response": "b", '
                                                     '"intent": "c"}\nnot json at all\n'),
                                    ["line 2", "not valid JSON"]),
    "ragged CSV row": (lambda f: _write(f, "ragged.csv", HEADER + "a,b,c\na,b,c,d\n"), ["line 3", "not a valid CSV"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_a_malformed_file_fails_with_one_line_and_leaves_no_partial_version(state, case):
    folder, config, root, remote, _ = state
    make, fragments = ERRORS[case]
    bad = make(folder)
    before = snapshot(root, config.dataset_name)
    with pytest.raises(CompactLMError) as excinfo:
        ingest_version(config, root, remote)
    message = str(excinfo.value)
    assert "\n" not in message and str(bad) in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert snapshot(root, config.dataset_name) == before


def test_a_path_that_does_not_exist(state):
    _, config, root, remote, _ = state
    missing = DataConfig(source=str(Path(config.source) / "nowhere"))
    with pytest.raises(CompactLMError) as excinfo:
        ingest_version(missing, root, remote)
    assert "does not exist" in str(excinfo.value) and "nowhere" in str(excinfo.value)


QUARANTINED = {
    "blank or null text": (HEADER + ',"an answer",track_order\n"   ",an answer,track_order\n"a question",,x\n',
                           {"blank or null instruction": 2, "blank or null response": 1}),
    "a 1 MB single field": (HEADER + f"{'x' * 1_000_000},fine answer,track_order\n",
                            {"instruction longer than 2000 characters": 1}),
    "duplicates only": (HEADER + "dup question,dup answer,track_order\n" * 4, {"exact duplicate of an earlier row": 3}),
}


@pytest.mark.parametrize("case", list(QUARANTINED))
def test_unusable_rows_are_quarantined_with_their_reason(state, case):
    folder, config, root, remote, first = state
    content, expected = QUARANTINED[case]
    _write(folder, "extra.csv", content)
    outcome = ingest_version(config, root, remote)
    assert not outcome.reused and outcome.version.md5 != first.version.md5
    quarantine = read_split(outcome.version.path, "quarantine")
    reasons = quarantine["reason"].value_counts().to_dict()
    already = first.result.quarantine["reason"].value_counts().to_dict()  # the good file's own rejects
    for reason, count in expected.items():
        assert reasons.get(reason, 0) - already.get(reason, 0) == count, reasons
        assert outcome.result.counts[f"quarantined: {reason}"] == reasons[reason]
    n_in = len(pd.read_csv(folder / GOOD)) + content.count("\n") - 1
    kept = sum(len(read_split(outcome.version.path, s)) for s in ("train", "val", "test"))
    assert n_in == outcome.result.counts["rows_in"] == kept + len(quarantine)  # nothing dropped silently
    assert [r["md5"] for r in version_records(root, config.dataset_name)] == [first.version.md5,
                                                                               outcome.version.md5]


def test_unknown_labels_are_versioned_but_fail_the_quality_suite_naming_rows(state, tiny_frame):
    folder, config, root, remote, _ = state
    extra = tiny_frame.head(30).assign(instruction=lambda f: f["instruction"] + " (again)", intent="refund_plz",
                                       id=lambda f: f["id"] + "-x")
    extra.to_csv(folder / "labels.csv", index=False)
    strict = DataConfig(source=config.source, allowed_intents=allowed_intents(DataConfig(), tiny_frame))
    outcome = ingest_version(strict, root, remote)
    frame = combined_splits({s: read_split(outcome.version.path, s) for s in ("train", "val", "test")})
    report = validate_frame(frame, strict.expectation_suite, suite_parameters(strict, frame, None))
    assert not report.success
    failure = report.critical_failures[0]
    assert (failure.expectation, failure.column, failure.unexpected_count) == (
        "expect_column_values_to_be_in_set", "intent", 30)
    assert all(s["id"].endswith("-x") for s in failure.sample)
