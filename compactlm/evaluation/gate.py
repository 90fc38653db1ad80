"""The promotion gate: absolute thresholds, and no worse than the champion re-scored on the same data.

Each check reports its metric, value, baseline, threshold, pass/fail and a sentence of reason; the
verdict is "passed" only when every check passes. A missing metric fails its check (never passes by
default), and the first run without a champion says so in the report.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from compactlm.config import GateConfig

# Metrics compared against the champion, and which direction is better. Per-token perplexity is left
# out on purpose: each run trains its own tokenizer, so only per-word perplexity is comparable.
CHAMPION_METRICS: dict[str, Literal["higher", "lower"]] = {
    "rouge_l": "higher",
    "bleu": "higher",
    "word_perplexity": "lower",
}


@dataclass
class GateCheck:
    """One check of the gate."""

    name: str
    metric: str
    value: float | None
    baseline: float | None
    threshold: float
    passed: bool
    reason: str


@dataclass
class GateReport:
    """The gate's verdict with every check and the context it was decided in."""

    verdict: Literal["passed", "failed"]
    checks: list[GateCheck]
    champion_version: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [f"# Promotion gate: **{self.verdict.upper()}**", ""]
        lines += [f"- {note}" for note in self.notes]
        lines += ["", "| check | metric | value | baseline | threshold | result | reason |",
                  "|---|---|---|---|---|---|---|"]
        for c in self.checks:
            lines.append(f"| {c.name} | {c.metric} | {_fmt(c.value)} | {_fmt(c.baseline)} | {_fmt(c.threshold)} | "
                         f"{'pass' if c.passed else 'FAIL'} | {c.reason} |")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _value(metrics: dict[str, float], name: str) -> float | None:
    value = metrics.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _absolute(name: str, metrics: dict[str, float], threshold: float, better: str) -> GateCheck:
    value = _value(metrics, name)
    if value is None:
        return GateCheck(f"{name} threshold", name, None, None, threshold, False,
                         f"{name} is missing from the evaluation, so the check cannot pass")
    ok = value <= threshold if better == "lower" else value >= threshold
    op = "<=" if better == "lower" else ">="
    return GateCheck(f"{name} threshold", name, value, None, threshold, ok,
                     f"{name} {value:.4g} {'meets' if ok else 'misses'} the bound {op} {threshold:.4g}")


def _versus_champion(name: str, metrics: dict[str, float], champion: dict[str, float], tolerance: float,
                     better: str) -> GateCheck:
    value, baseline = _value(metrics, name), _value(champion, name)
    if value is None or baseline is None:
        missing = "challenger" if value is None else "champion"
        return GateCheck(f"{name} vs champion", name, value, baseline, math.nan, False,
                         f"{name} is missing for the {missing}, so the comparison cannot pass")
    if better == "higher":
        threshold = baseline * (1 - tolerance)
        ok = value >= threshold
    else:
        threshold = baseline * (1 + tolerance)
        ok = value <= threshold
    change = (value - baseline) / abs(baseline) if baseline else 0.0
    return GateCheck(f"{name} vs champion", name, value, baseline, threshold, ok,
                     f"{change:+.1%} against the champion ({better} is better, {tolerance:.0%} tolerance)")


def run_gate(metrics: dict[str, float], config: GateConfig, champion_metrics: dict[str, float] | None = None,
             champion_version: str | None = None) -> GateReport:
    """Decide whether a challenger may be registered and proposed for promotion.

    Args:
        metrics: the challenger's metrics on the frozen test split.
        config: thresholds and the tolerance against the champion.
        champion_metrics: the champion's metrics re-scored on the same split now, or None.
        champion_version: the champion's registry version, for the report.
    """
    checks = [
        _absolute("perplexity", metrics, config.max_perplexity, "lower"),
        _absolute("rouge_l", metrics, config.min_rouge_l, "higher"),
        _absolute("bleu", metrics, config.min_bleu, "higher"),
    ]
    notes: list[str] = []
    if champion_metrics is None:
        notes.append("No champion yet: this first candidate is judged by the absolute thresholds alone.")
    else:
        notes.append(f"Champion version {champion_version} was re-scored now on the same test split; "
                     "stored metrics from other runs are not used.")
        checks += [_versus_champion(name, metrics, champion_metrics, config.champion_tolerance, better)
                   for name, better in CHAMPION_METRICS.items()]
    verdict: Literal["passed", "failed"] = "passed" if all(c.passed for c in checks) else "failed"
    failed = [c.name for c in checks if not c.passed]
    notes.append("All checks passed." if not failed else f"Failed: {', '.join(failed)}.")
    return GateReport(verdict=verdict, checks=checks, champion_version=champion_version, notes=notes)
