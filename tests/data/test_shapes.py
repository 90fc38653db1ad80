"""Task shapes end to end through ``prepare_dataset``: column mapping, chats, classification, summarization,
pretraining corpora, and the cleaning rules every shape shares (PII, HTML, near duplicates, label conflicts)."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pytest
from helpers import one_line_error as one_line

from compactlm.config import DataConfig, load_config
from compactlm.data.prepare import prepare_dataset
from compactlm.data.splits import SPLITS
from compactlm.data.text import near_duplicate_key
from compactlm.errors import ConfigError, DataError

WORDS = "apple banana cherry delta echo foxtrot golf hotel india juliet kilo lima mike oscar papa quebec".split()


def no_cross_split(splits: dict[str, pd.DataFrame], column: str, near: bool = True) -> None:
    keys = {n: set(f[column].map(near_duplicate_key) if near else f[column]) for n, f in splits.items()}
    for a, b in itertools.combinations(SPLITS, 2):
        assert not keys[a] & keys[b], f"{column} shared by {a} and {b}"


def reviews(n: int = 96) -> pd.DataFrame:
    """Distinct review texts with a sentiment label (every word pair once)."""
    rows = [{"review": f"The {a} {b} thing was {'great' if i % 3 else 'awful'}", "stars": "pos" if i % 3 else "neg"}
            for i, (a, b) in enumerate(itertools.islice(itertools.permutations(WORDS, 2), n))]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# Column mapping and configuration
# ---------------------------------------------------------------------------------------------------


def test_column_mapping_renames_a_users_columns_onto_the_instruction_schema(tmp_path):
    frame = pd.DataFrame({"question": [f"where is parcel {w}" for w in WORDS] * 2,
                          "answer": [f"parcel {w} ships {i}" for i, w in enumerate(WORDS * 2)],
                          "topic": ["track_order", "get_refund"] * len(WORDS), "instruction": "ignored"})
    path = tmp_path / "tickets.csv"
    frame.to_csv(path, index=False)
    config = load_config(overrides=[f"data.source={path}", "data.columns.instruction=question",
                                    "data.columns.response=answer", "data.columns.intent=topic"]).data
    result = prepare_dataset(config)
    rows = pd.concat(result.splits.values())
    assert result.counts["rows_kept"] == 32
    assert set(rows["instruction"]) == set(frame["question"])  # the mapped column wins over a same-named one
    assert set(rows["intent"]) == {"track_order", "get_refund"}


def test_a_mapped_column_missing_from_the_file_is_named(tmp_path):
    path = tmp_path / "tickets.csv"
    pd.DataFrame({"q": ["a"], "a": ["b"], "intent": ["c"]}).to_csv(path, index=False)
    config = DataConfig(source=str(path), columns={"instruction": "question", "response": "a"})
    with pytest.raises(DataError) as excinfo:
        prepare_dataset(config)
    one_line(excinfo, str(path), "'instruction'", "'question'", "found: q, a, intent")


@pytest.mark.parametrize(("override", "fragment"), [
    ("data.task=translation", "data.task must be one of instruction, chat, classification"),
    ("data.columns.prompt=q", "data.columns.prompt must be keyed by a column of the instruction schema"),
    ("data.classic_cleaning=true", "data.classic_cleaning must be false for data.task='instruction'"),
    ("data.augment_ratio=5", "data.augment_ratio must be in [0, 4]"),
    ("data.augment_methods=[synonym,shuffle]", "data.augment_methods must be a non-empty list"),
    ("data.unicode_form=NFD", "data.unicode_form must be NFC or NFKC"),
    ("data.chunk_words=2", "data.chunk_words must be >= 8"),
])
def test_invalid_data_settings_fail_with_one_line(override, fragment):
    with pytest.raises(ConfigError) as excinfo:
        load_config(overrides=[override])
    one_line(excinfo, fragment)


def test_augmentation_is_refused_for_shapes_without_a_short_text():
    with pytest.raises(ConfigError) as excinfo:
        load_config(overrides=["data.task=summarization", "data.augment_ratio=0.5"])
    one_line(excinfo, "data.augment_ratio", "summarization")


def test_each_task_follows_its_own_suite_unless_one_is_set():
    assert load_config(overrides=["data.task=classification"]).data.expectation_suite == "text_classification"
    assert load_config(overrides=["data.task=pretraining"]).data.expectation_suite == "pretraining_corpus"
    assert load_config(overrides=["data.task=chat", "data.expectation_suite=custom"]).data.expectation_suite == "custom"
    assert DataConfig().expectation_suite == "support_instructions"


# ---------------------------------------------------------------------------------------------------
# Shared cleaning rules
# ---------------------------------------------------------------------------------------------------


def test_pii_and_html_are_cleaned_and_counted_and_generation_text_keeps_its_case(tmp_path):
    frame = pd.DataFrame({
        "instruction": [f"<p>My {w} order: email me at {w}@example.com</p>" for w in WORDS],
        "response": [f"Call us on +44 20 7946 0958 about the {w.upper()} card 4111 1111 1111 1111." for w in WORDS],
        "intent": ["track_order", "get_refund"] * 8,
    })
    path = tmp_path / "pii.jsonl"
    frame.to_json(path, orient="records", lines=True)
    result = prepare_dataset(DataConfig(source=str(path)))
    rows = pd.concat(result.splits.values())
    assert result.cleaning == {"rows with HTML stripped": 16, "pii replaced: email": 16, "pii replaced: phone": 16,
                               "pii replaced: card": 16}
    assert rows["instruction"].str.fullmatch(r"My \w+ order: email me at \{\{Email\}\}").all()
    assert rows["response"].str.contains("{{Phone Number}}", regex=False).all()
    assert rows["response"].str.contains("{{Card Number}}", regex=False).all()
    assert rows["response"].str.contains("APPLE|BANANA").any()  # no lower-casing of generation data
    assert "pii replaced: email | 16" in result.to_markdown()


def test_near_duplicates_are_quarantined_naming_the_row_they_duplicate(tmp_path):
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(18)],
                          "instruction": [f"where is the {w} parcel" for w in WORDS] + ["Where is the APPLE parcel?!",
                                                                                         "where is the apple  parcel"],
                          "response": [f"it ships {w}" for w in WORDS] + ["It ships apple.", "it ships apple"],
                          "intent": ["track_order"] * 18})
    path = tmp_path / "dups.csv"
    frame.to_csv(path, index=False)
    result = prepare_dataset(DataConfig(source=str(path)))
    reasons = dict(zip(result.quarantine["id"], result.quarantine["reason"]))
    assert reasons == {"r16": "near duplicate of r0", "r17": "exact duplicate of an earlier row"}
    assert result.counts["quarantined: near duplicate of an earlier row"] == 1
    assert result.counts["rows_in"] == result.counts["rows_kept"] + result.counts["rows_quarantined"] == 18


def test_near_duplicate_instructions_never_cross_splits(tiny_frame):
    frame = tiny_frame.copy()
    variants = frame.head(120).copy()  # same messages shouted, with other answers: near duplicates of the instruction
    variants["instruction"] = variants["instruction"].str.upper() + "!!"
    variants["response"] = variants["response"] + " Anything else?"
    variants["id"] = variants["id"] + "-loud"
    config = DataConfig(source="generator")
    result = prepare_dataset(config, raw=(pd.concat([frame, variants], ignore_index=True), "inline"))
    no_cross_split(result.splits, "instruction")
    kept = set(pd.concat(result.splits.values())["id"])
    assert len({i for i in kept if i.endswith("-loud")}) > 100  # kept (answers differ), only grouped


def test_conflicting_labels_keep_the_majority_and_quarantine_the_rest(tmp_path):
    frame = reviews()
    frame.loc[len(frame)] = {"review": "the APPLE banana thing was awful!", "stars": "pos"}  # conflicts with row 0
    path = tmp_path / "reviews.csv"
    frame.to_csv(path, index=False)
    config = DataConfig(source=str(path), task="classification", columns={"text": "review", "label": "stars"})
    result = prepare_dataset(config)
    assert result.quarantine["reason"].str.startswith("conflicting label: the same text is labelled 'neg'").all()
    assert len(result.quarantine) == 1
    rows = pd.concat(result.splits.values())
    assert rows.groupby(rows["text"].map(near_duplicate_key))["label"].nunique().max() == 1


# ---------------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------------


def test_classification_is_stratified_by_label_and_converted_to_instructions(tmp_path):
    path = tmp_path / "reviews.parquet"
    reviews().to_parquet(path)
    config = DataConfig(source=str(path), task="classification", columns={"text": "review", "label": "stars"})
    result = prepare_dataset(config)
    for name, split in result.splits.items():
        assert list(split.columns) == ["id", "text", "label", "prompt", "completion"], name
        assert split["label"].value_counts(normalize=True)["pos"] == pytest.approx(2 / 3, abs=0.1), name
    train = result.splits["train"]
    assert train["text"].str.contains("The ").all()  # no classic cleaning unless asked
    assert train["prompt"].iloc[0] == f"### Instruction:\nClassify the following text.\n{train['text'].iloc[0]}\n" \
                                      "### Response:\n"
    assert (train["completion"] == train["label"]).all()
    no_cross_split(result.splits, "text")


def test_classic_cleaning_is_an_option_for_classification(tmp_path):
    path = tmp_path / "reviews.csv"
    frame = reviews()
    frame.loc[len(frame)] = {"review": "The, the... and OF it!", "stars": "neg"}  # nothing left after cleaning
    frame.to_csv(path, index=False)
    config = DataConfig(source=str(path), task="classification", columns={"text": "review", "label": "stars"},
                        classic_cleaning=True)
    result = prepare_dataset(config)
    texts = pd.concat(result.splits.values())["text"]
    assert texts.str.fullmatch(r"[a-z]+( [a-z]+)*").all()
    assert not texts.str.contains(r"\bthe\b|\bwas\b").any()
    assert result.quarantine["reason"].tolist() == ["blank after classic cleaning"]


def test_summarization_documents_have_their_own_length_bound(tmp_path):
    docs = [" ".join([f"Paragraph about {w} {i}."] * 120) for i, w in enumerate(WORDS * 2)]
    frame = pd.DataFrame({"article": docs, "highlights": [f"About {w} {i}." for i, w in enumerate(WORDS * 2)]})
    frame.loc[0, "article"] = "x" * 60_001
    path = tmp_path / "news.jsonl"
    frame.to_json(path, orient="records", lines=True)
    columns = {"document": "article", "summary": "highlights"}
    config = DataConfig(source=str(path), task="summarization", columns=columns)
    result = prepare_dataset(config)
    assert result.quarantine["reason"].tolist() == ["document longer than 50000 characters"]
    rows = pd.concat(result.splits.values())
    assert len(rows) == 31 and rows["document"].str.len().max() > 2_000  # longer than data.max_chars: fine
    assert rows["prompt"].str.startswith("### Instruction:\nSummarize the following document.\n").all()
    assert (rows["completion"] == rows["summary"]).all()


def chats() -> list[object]:
    conversations: list[object] = []
    for i, w in enumerate(WORDS * 2):
        conversations.append([
            {"role": "system", "content": "You are a support agent."},
            {"role": "user", "content": f"My {w} order {i} is late"},
            {"role": "assistant", "content": f"Sorry about order {i}. Which item?"},
            {"role": "user", "content": f"The {w} lamp"},
            {"role": "assistant", "content": f"The {w} lamp ships tomorrow."},
        ])
    conversations.append(json.dumps([{"from": "human", "value": "hi there"}, {"from": "gpt", "value": "hello!"}]))
    conversations += ["{not json", [{"role": "robot", "content": "beep"}], [{"role": "user", "content": "alone"}],
                      conversations[0]]
    return conversations


def test_chats_expand_to_turns_with_context_and_stay_whole_in_one_split(tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(json.dumps({"messages": c, "intent": "delivery"}) for c in chats()) + "\n")
    result = prepare_dataset(DataConfig(source=str(path), task="chat"))
    reasons = sorted(result.quarantine["reason"])
    assert reasons == ["conversation has no user message answered by the assistant",
                       "exact duplicate of an earlier conversation",
                       "message 1 has role 'robot' (expected system, user or assistant, or one of human, customer, "
                       "gpt, bot, model, agent, ai)",
                       "messages is not valid JSON (Expecting property name enclosed in double quotes)"]
    rows = pd.concat(result.splits.values(), ignore_index=True)
    assert rows["conversation_id"].nunique() == 33 and len(rows) == 65  # 32 two-turn chats + 1 ShareGPT one
    first = rows[rows["turn"] == 2].iloc[0]
    assert first["context"].startswith("### System:\nYou are a support agent.\n### Instruction:\nMy ")
    assert "<|eos|>" in first["context"] and first["instruction"].startswith("The ")
    assert first["prompt"] == first["context"] + f"### Instruction:\n{first['instruction']}\n### Response:\n"
    no_cross_split(result.splits, "conversation_id", near=False)


def test_pretraining_corpus_from_txt_files_is_chunked_with_a_held_out_tail(tmp_path):
    corpus = tmp_path / "wiki"
    corpus.mkdir()
    for i, w in enumerate(WORDS[:8]):
        body = "\n".join(f"{w} sentence {k} of article {i}." for k in range(60))
        (corpus / f"{i:02d}-{w}.txt").write_text(f"{w.title()}\n\n{body}\nShared footer line.\n", encoding="utf-8")
    (corpus / "copy.txt").write_text((corpus / "00-apple.txt").read_text())
    (corpus / "README.md").write_text("not data")
    config = DataConfig(source=str(corpus), task="pretraining", chunk_words=64)
    result = prepare_dataset(config)
    assert result.quarantine["reason"].tolist() == ["exact duplicate of an earlier document"]
    train, val, test = (result.splits[n] for n in SPLITS)
    assert train["n_words"].max() <= 64 and train["text"].str.contains("\n").any()  # newlines survive chunking
    # Contiguous: documents in corpus order, the tail held out, no document in two splits.
    assert list(train["doc_id"].unique()) == sorted(train["doc_id"].unique())
    assert max(train["doc_id"]) < min(val["doc_id"]) <= max(val["doc_id"]) < min(test["doc_id"])
    assert test["doc_id"].iloc[-1] == "07-hotel.txt"
    no_cross_split(result.splits, "text")
    assert len(test) / sum(len(s) for s in result.splits.values()) == pytest.approx(0.15, abs=0.1)


def test_a_single_document_corpus_is_cut_between_chunks():
    text = " ".join(f"word{k}" for k in range(2_000))
    config = DataConfig(task="pretraining", chunk_words=50)
    result = prepare_dataset(config, raw=(pd.DataFrame({"text": [text]}), "inline"))
    assert [len(result.splits[n]) for n in SPLITS] == [28, 6, 6]
    assert result.splits["test"]["text"].iloc[-1].endswith("word1999")


def test_a_corpus_too_small_to_split_fails_with_one_line():
    config = DataConfig(task="pretraining", chunk_words=50)
    with pytest.raises(DataError) as excinfo:
        prepare_dataset(config, raw=(pd.DataFrame({"text": ["only a few words here"]}), "inline"))
    one_line(excinfo, "too few to split", "data.chunk_words")


def test_chat_role_aliases_are_mapped_and_counted_and_unknown_roles_quarantined_by_name(tmp_path):
    path = tmp_path / "bots.jsonl"
    conversations = [[{"role": "user", "content": f"where is order {i} of the {w} lamp"},
                      {"role": "bot" if i % 2 else " Assistant ", "content": f"order {i} ships on day {i}"}]
                     for i, w in enumerate(WORDS * 2)]
    conversations.append([{"role": "user", "content": "hello"}, {"role": "operator", "content": "hi, how can I help"}])
    path.write_text("\n".join(json.dumps({"messages": c}) for c in conversations) + "\n", encoding="utf-8")
    result = prepare_dataset(DataConfig(source=str(path), task="chat"))
    n_bot = sum(1 for c in conversations if c[1]["role"] == "bot")
    assert result.cleaning["messages with role bot -> assistant"] == n_bot > 0
    assert result.counts["rows_kept"] == len(conversations) - 1
    assert result.quarantine["reason"].tolist() == [
        "message 2 has role 'operator' (expected system, user or assistant, or one of human, customer, gpt, bot, "
        "model, agent, ai)"]
    assert "messages with role bot -> assistant" in result.to_markdown()
    # the quarantine keeps the conversation as read, so it can be inspected and fixed; the count names the fault
    assert result.quarantine["messages"].iloc[0] == conversations[-1]
    assert result.counts["quarantined: unknown role in a message"] == 1
