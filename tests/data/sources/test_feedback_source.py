"""``feedback:`` sources: corrected answers in the traffic store become a dataset version through the normal ingest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compactlm.config import DataConfig
from compactlm.data.ingest import ingest_version
from compactlm.data.sources import SourceKind, list_files, source_kind
from compactlm.data.sources.feedback import read_feedback
from compactlm.data.versioning import read_split
from compactlm.errors import ConfigError, DataError
from compactlm.quality.version_checks import validate_version
from compactlm.serving.traffic import FeedbackRecord, RequestRecord, TrafficStore

QUESTIONS = ["Where is my order {}?", "How do I cancel subscription {}?", "My parcel {} arrived broken",
             "Can I change the address of order {}?", "I was charged twice for invoice {}"]


def fill(store: TrafficStore, n: int, start: int = 0) -> None:
    """``n`` served chat requests (prompt text stored) each corrected by a thumbs-down feedback."""
    now = datetime.now(UTC)
    store.write_requests([RequestRecord(f"req-{i}", now, "/v1/chat/completions", "support-chat", "7", 200, 15.0, 12,
                                        9, prompt_text=QUESTIONS[i % 5].format(1000 + i), completion_text="Hm.")
                          for i in range(start, start + n)])
    for i in range(start, start + n):
        store.add_feedback(FeedbackRecord(f"req-{i}", -1, corrected_answer=f"Here is the answer for case {1000 + i}.",
                                          reason="too vague", created_at=now + timedelta(milliseconds=i)))


@pytest.fixture
def store(tmp_path):
    opened = TrafficStore.open(f"sqlite:///{tmp_path / 'traffic.db'}")
    yield opened
    opened.close()


def test_feedback_specs_are_their_own_kind_and_refuse_passwords():
    assert source_kind("feedback:") is SourceKind.FEEDBACK
    assert source_kind("feedback:postgresql://me@db:5432/traffic") is SourceKind.FEEDBACK
    DataConfig(source="feedback:postgresql://me@db:5432/traffic").check_source()
    with pytest.raises(ConfigError, match="must not hold a password.*PGPASSWORD"):
        DataConfig(source="feedback:postgresql://me:hunter2@db/traffic").check_source()


def test_the_default_store_is_the_one_under_compactlm_home(home, monkeypatch):
    monkeypatch.delenv("COMPACTLM_TRAFFIC_DB", raising=False)
    with pytest.raises(DataError, match=f"feedback:sqlite:///{home}/traffic.db: no such file"):
        read_feedback("feedback:")
    store = TrafficStore.open(f"sqlite:///{home / 'traffic.db'}")
    fill(store, 2)
    assert list(read_feedback("feedback:")["request_id"]) == ["req-0", "req-1"]
    TrafficStore.open(f"sqlite:///{home / 'empty.db'}").close()
    with pytest.raises(DataError, match="no corrected answer"):
        read_feedback(f"feedback:{home / 'empty.db'}")  # a plain path is a SQLite file


def test_feedback_rows_become_a_validated_version_with_provenance_and_pii_scrubbed(store, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))
    fill(store, 40)
    store.write_requests([RequestRecord("req-pii", datetime.now(UTC), "/v1/completions", "support-chat", "7", 200,
                                        9.0, 5, 5)])  # served with prompts redacted: the feedback carries it
    store.add_feedback(FeedbackRecord("req-pii", -1, corrected_answer="We wrote to you at jane.doe@example.com.",
                                      prompt="Did you get my mail? Call me on +1 415 555 0134"))
    spec = f"feedback:{store.url}"
    root, remote = (tmp_path / "repo").resolve(), str((tmp_path / "remote").resolve())
    config = DataConfig(source=spec, dataset_name="feedback-corrections")

    first = ingest_version(config, root, remote)
    assert not first.reused and first.result.counts["rows_in"] == 41
    splits = {name: read_split(first.version.path, name) for name in ("train", "val", "test")}
    rows = sum(len(frame) for frame in splits.values())
    assert rows == 41
    train = splits["train"]
    for column in ("request_id", "model_version", "feedback_id", "created_at", "reason", "source"):
        assert column in train.columns, column  # provenance kept
    assert set(train["model_version"].astype(str)) == {"7"} and set(train["source"]) == {"feedback"}
    every = " ".join(" ".join(f["instruction"]) + " ".join(f["response"]) for f in splits.values())
    assert "jane.doe@example.com" not in every and "555 0134" not in every  # PII scrubbed by the ingest
    assert validate_version(first.version, config).success

    assert ingest_version(config, root, remote).reused  # nothing new: the version is reused
    fill(store, 3, start=100)  # new corrections: a new version
    second = ingest_version(config, root, remote)
    assert not second.reused and second.result.counts["rows_in"] == 44
    assert second.version.md5 != first.version.md5
    (listed,) = list_files(spec)[0]
    assert listed.key == "feedback" and listed.size == 44
