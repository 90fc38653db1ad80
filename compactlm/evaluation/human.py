"""Blind human evaluation: champion vs challenger vs the reference answer, rated by people.

``export_sheet`` writes, per item, the customer message and three answers in a random order:
``sheet.csv`` (for spreadsheets), ``sheet.html`` (a static page with radio buttons that downloads the
filled-in ratings as CSV) and ``key.json`` (which answer is which; keep it away from raters).
Raters pick the best answer and the one they believe a human agent wrote.

``import_ratings`` joins the ratings with the key: win rates per system, the challenger's head-to-head
win rate against the champion, and the "Turing test" figure: how often raters could not tell a model
answer from the human reference.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from compactlm.data.sources import read_table
from compactlm.errors import DataError
from compactlm.fileio import atomic_write_text

SLOTS = ("1", "2", "3")


def export_sheet(prompts: list[str], answers: dict[str, list[str]], out_dir: str | Path, seed: int = 0,
                 metadata: dict[str, str] | None = None) -> dict[str, Path]:
    """Write the blind rating sheet for three systems (e.g. reference, champion, challenger).

    Args:
        prompts: the customer messages, one item each (ids ``item-001``, ``item-002``...).
        answers: system name -> one answer per prompt; exactly three systems.
        out_dir: receives sheet.csv, sheet.html and key.json (created if missing; files written atomically).
        seed: seeds numpy's generator that shuffles the order of the answers per item.
        metadata: recorded in the key (model versions, data version...).

    Returns:
        ``{"csv": ..., "html": ..., "key": ...}``: the paths written.

    Raises:
        DataError: not exactly three systems, or a system without exactly one answer per prompt.
    """
    if len(answers) != 3:
        raise DataError(f"a rating sheet compares exactly 3 systems, got {len(answers)}: {sorted(answers)}")
    if any(len(a) != len(prompts) for a in answers.values()):
        raise DataError("every system needs one answer per prompt")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    systems = sorted(answers)
    rows, key = [], {}
    for i, prompt in enumerate(prompts):
        item_id = f"item-{i + 1:03d}"
        order = [systems[j] for j in rng.permutation(3)]
        key[item_id] = dict(zip(SLOTS, order))
        rows.append({"item_id": item_id, "prompt": prompt, **{f"response_{s}": answers[name][i]
                                                               for s, name in zip(SLOTS, order)},
                     "best": "", "human": "", "notes": ""})
    sheet = pd.DataFrame(rows)
    paths = {"csv": out / "sheet.csv", "html": out / "sheet.html", "key": out / "key.json"}
    atomic_write_text(paths["csv"], sheet.to_csv(index=False))
    atomic_write_text(paths["html"], _html(sheet))
    atomic_write_text(paths["key"], json.dumps({"created": datetime.now(UTC).isoformat(timespec="seconds"),
                                            "systems": systems, "metadata": metadata or {}, "items": key}, indent=2))
    return paths


def _html(sheet: pd.DataFrame) -> str:
    items = []
    for row in sheet.itertuples(index=False):
        answers = "".join(
            f"<tr><td>{s}</td><td>{html.escape(getattr(row, f'response_{s}'))}</td>"
            f"<td><input type=radio name='best-{row.item_id}' value='{s}'></td>"
            f"<td><input type=radio name='human-{row.item_id}' value='{s}'></td></tr>" for s in SLOTS)
        items.append(f"<section data-item='{row.item_id}'><h3>{row.item_id}</h3><p class=prompt>"
                     f"{html.escape(row.prompt)}</p><table><tr><th>#</th><th>answer</th><th>best</th>"
                     f"<th>written by a human</th></tr>{answers}</table></section>")
    return f"""<!doctype html><html><head><meta charset=utf-8><title>CompactLM blind rating</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:auto}} td{{vertical-align:top;padding:4px}}
.prompt{{background:#eef;padding:6px}} section{{border-bottom:1px solid #ccc;padding:8px 0}}</style></head><body>
<h1>Which answer is best, and which one did a human write?</h1>
<p>For each customer message pick the most helpful answer and the one you think a human agent wrote
(exactly one of the three is). Then press the button and send the downloaded file back.</p>
{''.join(items)}
<button onclick="save()">Download ratings (CSV)</button>
<script>
function save() {{
  let lines = ["item_id,best,human"];
  document.querySelectorAll("section").forEach(s => {{
    const id = s.dataset.item;
    const pick = n => (document.querySelector(`input[name='${{n}}-${{id}}']:checked`) || {{value: ""}}).value;
    lines.push([id, pick("best"), pick("human")].join(","));
  }});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([lines.join("\\n")], {{type: "text/csv"}}));
  a.download = "ratings.csv"; a.click();
}}
</script></body></html>"""


@dataclass
class HumanEvalResult:
    """Win rates and the Turing-test figure over the rated items; every rate is a fraction in [0, 1].

    Attributes:
        n_items: items in the key.
        n_rated_best: ratings with a ``best`` pick (blanks skipped).
        n_rated_human: ratings with a ``human`` pick.
        win_rate: per system, its share of the ``best`` picks.
        challenger_vs_champion: the challenger's share of the ``best`` picks that went to the challenger
            or the champion (None when neither was ever picked).
        picked_as_human: per system, its share of the ``human`` picks.
        turing_fooled_rate: the share of ``human`` picks that went to a model rather than the reference
            (None without any ``human`` pick); a blind imitation game after Turing (1950).
    """

    n_items: int
    n_rated_best: int
    n_rated_human: int
    win_rate: dict[str, float]
    challenger_vs_champion: float | None
    picked_as_human: dict[str, float]
    turing_fooled_rate: float | None

    def to_dict(self) -> dict:
        """The result as a plain dict."""
        return asdict(self)

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow: ``human_win_rate_<system>``, ``human_picked_as_human_<system>``, and
        ``human_challenger_vs_champion`` / ``human_turing_fooled_rate`` when defined (fractions in [0, 1])."""
        out = {f"human_win_rate_{k}": v for k, v in self.win_rate.items()}
        out.update({f"human_picked_as_human_{k}": v for k, v in self.picked_as_human.items()})
        if self.challenger_vs_champion is not None:
            out["human_challenger_vs_champion"] = self.challenger_vs_champion
        if self.turing_fooled_rate is not None:
            out["human_turing_fooled_rate"] = self.turing_fooled_rate
        return out


def import_ratings(ratings_path: str | Path, key_path: str | Path, reference: str = "reference") -> HumanEvalResult:
    """Join ratings (item_id, best, human; blanks allowed) with the key and compute the figures.

    Args:
        ratings_path: the raters' CSV/JSONL/Parquet (``item_id``, ``best``, ``human``: slot 1, 2 or 3).
        key_path: the ``key.json`` that ``export_sheet`` wrote.
        reference: the system name of the human-written answers, for the Turing-test figure.

    Returns:
        The win rates; ``challenger_vs_champion`` needs systems named ``challenger`` and ``champion``.

    Raises:
        DataError: an unreadable ratings or key file, a missing column, an unknown item id or a rating
            outside 1/2/3 (naming the row).
    """

    ratings = read_table(ratings_path)
    try:
        key = json.loads(Path(key_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{key_path}: not a readable key file ({exc})") from None
    missing = [c for c in ("item_id", "best", "human") if c not in ratings.columns]
    if missing:
        raise DataError(f"{ratings_path}: missing column(s) {', '.join(missing)}")
    systems, items = key["systems"], key["items"]
    best_counts, human_counts = dict.fromkeys(systems, 0), dict.fromkeys(systems, 0)
    head_to_head = {"challenger": 0, "champion": 0}
    n_best = n_human = 0
    for row_number, row in enumerate(ratings.itertuples(index=False), start=2):
        item = str(row.item_id)
        if item not in items:
            raise DataError(f"{ratings_path} row {row_number}: unknown item_id {item!r}")
        for column in ("best", "human"):
            value = getattr(row, column)
            if pd.isna(value) or str(value).strip() == "":
                continue
            slot = str(value).strip().removesuffix(".0")
            if slot not in SLOTS:
                raise DataError(f"{ratings_path} row {row_number}: column {column!r} must be 1, 2 or 3, got {value!r}")
            system = items[item][slot]
            if column == "best":
                n_best += 1
                best_counts[system] += 1
                if system in head_to_head:
                    head_to_head[system] += 1
            else:
                n_human += 1
                human_counts[system] += 1
    decided = head_to_head["challenger"] + head_to_head["champion"]
    return HumanEvalResult(
        n_items=len(items), n_rated_best=n_best, n_rated_human=n_human,
        win_rate={s: best_counts[s] / n_best if n_best else 0.0 for s in systems},
        challenger_vs_champion=head_to_head["challenger"] / decided if decided else None,
        picked_as_human={s: human_counts[s] / n_human if n_human else 0.0 for s in systems},
        turing_fooled_rate=1 - human_counts.get(reference, 0) / n_human if n_human else None)
