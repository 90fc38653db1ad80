"""`compactlm data versions` and `compactlm data checkout` as a user runs them (a fresh process each)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compactlm.config import DataConfig
from compactlm.data.ingest import ingest_version

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COMPACTLM_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "compactlm.cli", "data", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """A state folder holding two versions of the default dataset (the second is checked out)."""
    home = tmp_path_factory.mktemp("cli") / "state"
    root, remote = home / "data", str(home / "dvc-remote")
    first = ingest_version(DataConfig(n_rows=200, seed=0), root, remote).version
    files = {p.name: p.read_bytes() for p in Path(first.path).iterdir()}
    second = ingest_version(DataConfig(n_rows=200, seed=1), root, remote).version
    return home, first, files, second


def test_versions_lists_md5_date_and_rows_per_split(two_versions):
    home, first, _, second = two_versions
    done = run_cli("versions", home=home)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "md5" in lines[0] and "train" in lines[0]
    assert lines[1].startswith(f"  {first.md5}") and lines[2].startswith(f"* {second.md5}")  # * = checked out
    as_json = json.loads(run_cli("versions", "--json", home=home).stdout)
    assert [r["md5"] for r in as_json] == [first.md5, second.md5]
    assert set(as_json[0]["rows"]) == {"train", "val", "test"} and as_json[0]["created"]


def test_checkout_by_prefix_restores_byte_for_byte_from_the_remote(two_versions):
    home, first, files, _ = two_versions
    shutil.rmtree(home / "data" / ".dvc" / "cache")  # the bytes must come back from the DVC remote
    done = run_cli("checkout", first.md5[:10], home=home)
    assert done.returncode == 0, done.stderr
    assert f"version {first.md5} restored" in done.stdout
    assert {p.name: p.read_bytes() for p in Path(first.path).iterdir()} == files


def test_checkout_of_an_unknown_version_is_a_one_line_error(two_versions):
    home, first, _, second = two_versions
    done = run_cli("checkout", "ffffffff", home=home)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no unique version 'ffffffff'" in errors[0] and first.md5[:12] in errors[0]


def test_versions_names_the_other_datasets_recorded_there(tmp_path):
    """After a chat or classification ingest, a bare `data versions` (the default dataset) says they exist."""
    from compactlm.data.versioning import dataset_names

    home = tmp_path / "state"
    root, remote = home / "data", str(home / "dvc-remote")
    source = tmp_path / "intents.csv"
    words = "apple banana cherry delta echo foxtrot golf hotel india juliet kilo lima".split()
    source.write_text("text,label\n" + "".join(f"my {w} order {i} is {k},{k}\n" for i, w in enumerate(words)
                                                for k in ("late", "lost")), encoding="utf-8")
    ingest_version(DataConfig(source=str(source), task="classification", min_rows=1), root, remote)
    assert dataset_names(root) == ["classification"]
    done = run_cli("versions", home=home)
    assert done.returncode == 0, done.stderr
    assert "No version of dataset support-instructions" in done.stdout
    assert "Datasets there: classification (name one with --name NAME)." in done.stdout
    named = run_cli("versions", "--name", "classification", home=home)
    assert named.returncode == 0 and "classification" in named.stdout and "Other datasets" not in named.stderr
