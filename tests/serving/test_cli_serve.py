"""`compactlm predict` and `compactlm serve` as a user runs them (subprocesses, one-line user errors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COMPACTLM_HOME": str(home), "COLUMNS": "120"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "compactlm.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr[-2000:]
    return lines[0]


def test_predict_answers_every_line_in_order(tmp_path, tiny_model_dir):
    source = tmp_path / "in.jsonl"
    records = [{"id": "a", "instruction": "Where is my order?", "max_tokens": 3},
               {"prompt": "### Instruction:\nRefund\n### Response:\n", "max_tokens": 5},
               {"id": 7, "messages": [{"role": "user", "content": "Cancel my plan"}], "stop": ["zzz"]}]
    source.write_text("\n".join(json.dumps(r) for r in records[:2]) + "\n\n" + json.dumps(records[2]) + "\n")
    out = tmp_path / "out" / "results.jsonl"
    done = run_cli("predict", "--input", str(source), "--output", str(out), "--model-dir", str(tiny_model_dir),
                   "--max-tokens", "4", home=tmp_path / "state")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 4] and [r.get("id") for r in rows] == ["a", None, 7]
    limits = [3, 5, 4]  # per-line max_tokens, else --max-tokens
    assert all(0 <= r["completion_tokens"] <= limit for r, limit in zip(rows, limits))
    assert all(r["finish_reason"] in ("stop", "length") and r["prompt_tokens"] > 0 for r in rows)
    assert "3 completions" in done.stdout and "3/3" in done.stdout + done.stderr  # the progress bar ran
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.jsonl"]  # no temporary file left


def test_predict_names_the_bad_line_and_writes_nothing(tmp_path, tiny_model_dir):
    source = tmp_path / "in.jsonl"
    source.write_text('{"instruction": "hello"}\n{"instruction": "fine"}\n{"instruction": "broken"\n')
    out = tmp_path / "results.jsonl"
    done = run_cli("predict", "-i", str(source), "-o", str(out), "--model-dir", str(tiny_model_dir),
                   home=tmp_path / "state")
    line = one_error_line(done)
    assert f"{source} line 3: not valid JSON" in line
    assert not out.exists()


def test_serve_without_a_champion_fails_fast_with_one_line(tmp_path):
    line = one_error_line(run_cli("serve", "--port", "8999", home=tmp_path / "state"))
    assert "'compactlm-support-chat' has no alias 'champion'" in line and "make demo" in line


def test_serve_refuses_a_public_address_without_keys_before_loading_anything(tmp_path):
    line = one_error_line(run_cli("serve", "--host", "0.0.0.0", "--port", "8999", home=tmp_path / "state"))
    assert "refusing to serve on '0.0.0.0' without API keys" in line
    assert "COMPACTLM_API_KEYS" in line and "--allow-unauthenticated" in line


def test_a_blank_api_key_is_no_key(tmp_path):
    """``--api-key "$KEY"`` with KEY unset must not pass the check and then serve without authentication."""
    line = one_error_line(run_cli("serve", "--host", "0.0.0.0", "--port", "8999", "--api-key", "", "--api-key", " ",
                                  home=tmp_path / "state"))
    assert "refusing to serve on '0.0.0.0' without API keys" in line


def test_serve_on_a_public_address_goes_on_with_the_explicit_opt_in(tmp_path):
    done = run_cli("serve", "--host", "::", "--port", "8999", "--allow-unauthenticated", home=tmp_path / "state")
    assert "has no alias 'champion'" in one_error_line(done)  # past the check: it stops at the missing model
