"""Blind human evaluation: sheet export, rating import, win rates and the Turing-test figure by hand."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from compactlm.errors import DataError
from compactlm.evaluation.human import export_sheet, import_ratings

PROMPTS = ["where is my order", "cancel my plan", "refund please", "reset password"]
ANSWERS = {"reference": [f"ref {i}" for i in range(4)], "champion": [f"champ {i}" for i in range(4)],
           "challenger": [f"chal {i}" for i in range(4)]}


def _slot(key: dict, item: str, system: str) -> str:
    return next(slot for slot, name in key["items"][item].items() if name == system)


def test_export_is_blind_seeded_and_complete(tmp_path):
    paths = export_sheet(PROMPTS, ANSWERS, tmp_path, seed=1, metadata={"champion_uri": "models:/m/1"})
    sheet = pd.read_csv(paths["csv"])
    key = json.loads(paths["key"].read_text())
    assert list(sheet.columns) == ["item_id", "prompt", "response_1", "response_2", "response_3", "best", "human",
                                   "notes"]
    assert "champ" not in " ".join(sheet.columns) and key["metadata"]["champion_uri"] == "models:/m/1"
    for row in sheet.itertuples():
        shown = {row.response_1, row.response_2, row.response_3}
        assert shown == {ANSWERS[s][row.Index] for s in ANSWERS}
        for slot, system in key["items"][row.item_id].items():
            assert getattr(row, f"response_{slot}") == ANSWERS[system][row.Index]
    orders = [tuple(v.values()) for v in key["items"].values()]
    assert len(set(orders)) > 1  # shuffled per item
    html = paths["html"].read_text()
    assert "Download ratings" in html and "where is my order" in html
    assert export_sheet(PROMPTS, ANSWERS, tmp_path / "again", seed=1)["key"].read_text().count("reference") == 5


def test_import_computes_win_rates_and_turing_figure_by_hand(tmp_path):
    paths = export_sheet(PROMPTS, ANSWERS, tmp_path, seed=2)
    key = json.loads(paths["key"].read_text())
    # best: challenger, challenger, champion, reference; human guess: reference, champion, reference, (blank)
    best = ["challenger", "challenger", "champion", "reference"]
    human = ["reference", "champion", "reference", None]
    rows = [{"item_id": f"item-{i + 1:03d}", "best": _slot(key, f"item-{i + 1:03d}", b),
             "human": _slot(key, f"item-{i + 1:03d}", h) if h else ""} for i, (b, h) in enumerate(zip(best, human))]
    pd.DataFrame(rows).to_csv(tmp_path / "ratings.csv", index=False)
    result = import_ratings(tmp_path / "ratings.csv", paths["key"])
    assert result.n_rated_best == 4 and result.n_rated_human == 3
    assert result.win_rate == {"challenger": 0.5, "champion": 0.25, "reference": 0.25}
    assert result.challenger_vs_champion == pytest.approx(2 / 3)
    assert result.picked_as_human["champion"] == pytest.approx(1 / 3)
    assert result.turing_fooled_rate == pytest.approx(1 / 3)  # 1 of 3 guesses picked a model answer
    assert result.metrics()["human_turing_fooled_rate"] == pytest.approx(1 / 3)


def test_bad_ratings_name_the_row(tmp_path):
    paths = export_sheet(PROMPTS, ANSWERS, tmp_path, seed=0)
    pd.DataFrame([{"item_id": "item-001", "best": 4, "human": 1}]).to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(DataError, match=r"r.csv row 2: column 'best' must be 1, 2 or 3, got '4'"):
        import_ratings(tmp_path / "r.csv", paths["key"])
    pd.DataFrame([{"item_id": "item-999", "best": 1, "human": 1}]).to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(DataError, match="unknown item_id 'item-999'"):
        import_ratings(tmp_path / "r.csv", paths["key"])
    with pytest.raises(DataError, match="exactly 3 systems"):
        export_sheet(PROMPTS, {"a": ["x"] * 4}, tmp_path)
