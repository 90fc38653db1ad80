"""The promotion gate: configurable checks on any metric, absolute, against the champion and the baseline.

Every configured bound becomes one row of the report with its metric, value, baseline, threshold,
pass/fail and a sentence of reason. The verdict is "passed" only when every deciding row passes.
Edge cases are explicit, never silent:

* a missing (or NaN) metric fails its row;
* without a champion (first run), comparison rows are reported as skipped and do not decide;
* a metric present on the challenger but missing on the champion fails the comparison;
* a check configured with no bound is reported as informational and does not decide;
* a ``beat_baseline`` check without a baseline in the run is reported as skipped;
* a ``beat_base`` check without a pretrained base (a model trained from scratch) is reported as skipped.

The report ends with the figures side by side: the zero-shot base, the candidate, the champion and the
baseline, per gated metric.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from compactlm.config import GateCheckConfig, GateConfig
from compactlm.evaluation.metric_directions import direction_of

Status = Literal["pass", "fail", "skipped", "info"]


@dataclass
class GateCheck:
    """One row of the gate report.

    Attributes:
        name: the row's label, e.g. ``rouge_l >= 0.2`` or ``rouge_l vs champion (max drop 5%)``.
        metric: the metric's name in the evaluation's metrics dict.
        value: the challenger's value (None: missing or NaN).
        baseline: the value compared with: the champion's (``vs champion`` rows), the zero-shot base's
            (``vs base``) or the baseline model's (``vs baseline``); None for absolute rows, or when missing.
        threshold: the bound the value was held to, in the metric's own unit (for a comparison row:
            the champion's value less the allowed drop).
        status: ``pass``/``fail`` decide the verdict; ``skipped`` (no champion) and ``info`` (no bound) do not.
        reason: one sentence for the report.
    """

    name: str
    metric: str
    value: float | None
    baseline: float | None
    threshold: float | None
    status: Status
    reason: str

    @property
    def passed(self) -> bool:
        """Rows that do not decide (skipped, informational) never block the verdict."""
        return self.status != "fail"

    @property
    def decides(self) -> bool:
        """Whether the row counts towards the verdict (``pass`` or ``fail``; not skipped or informational)."""
        return self.status in ("pass", "fail")


@dataclass
class GateReport:
    """The gate's verdict with every row and the context it was decided in."""

    verdict: Literal["passed", "failed"]
    checks: list[GateCheck]
    champion_version: str | None
    notes: list[str] = field(default_factory=list)
    # metric -> {"base": .., "candidate": .., "champion": .., "baseline": ..} (None where not scored)
    side_by_side: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every deciding row passed."""
        return self.verdict == "passed"

    def to_dict(self) -> dict:
        """JSON-ready dict of the report; each check also carries its ``passed`` flag."""
        return {**asdict(self), "checks": [{**asdict(c), "passed": c.passed} for c in self.checks]}

    def to_markdown(self) -> str:
        """The verdict, the notes and one table row per check (values to 4 significant digits)."""
        lines = [f"# Promotion gate: **{self.verdict.upper()}**", ""]
        lines += [f"- {note}" for note in self.notes]
        # "compared with": the champion's, the zero-shot base's or the baseline model's value, as the row says.
        lines += ["", "| check | value | compared with | threshold | result | reason |", "|---|---|---|---|---|---|"]
        for c in self.checks:
            lines.append(f"| {c.name} | {_fmt(c.value)} | {_fmt(c.baseline)} | {_fmt(c.threshold)} | "
                         f"{c.status.upper() if c.status == 'fail' else c.status} | {c.reason} |")
        columns = [k for k in SIDE_BY_SIDE if any(row.get(k) is not None for row in self.side_by_side.values())]
        if len(columns) > 1:
            lines += ["", "## Side by side (same test split, scored now)", "",
                      "| metric | " + " | ".join(SIDE_BY_SIDE[k] for k in columns) + " |",
                      "|---|" + "---|" * len(columns)]
            lines += [f"| {metric} | " + " | ".join(_fmt(row.get(k)) for k in columns) + " |"
                      for metric, row in self.side_by_side.items()]
        return "\n".join(lines)


SIDE_BY_SIDE = {"base": "base (zero-shot)", "candidate": "candidate", "champion": "champion", "baseline": "baseline"}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _value(metrics: dict[str, float] | None, name: str) -> float | None:
    if metrics is None:
        return None
    value = metrics.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _absolute_rows(metric: str, check: GateCheckConfig, value: float | None) -> list[GateCheck]:
    rows = []
    for bound, op, ok in (("min", ">=", lambda v, t: v >= t), ("max", "<=", lambda v, t: v <= t)):
        threshold = getattr(check, bound)
        if threshold is None:
            continue
        name = f"{metric} {op} {threshold:g}"
        if value is None:
            rows.append(GateCheck(name, metric, None, None, threshold, "fail",
                                  f"{metric} is missing from the evaluation, so this check cannot pass"))
            continue
        passed = ok(value, threshold)
        rows.append(GateCheck(name, metric, value, None, threshold, "pass" if passed else "fail",
                              f"{value:.4g} {'meets' if passed else 'violates'} the bound {op} {threshold:g}"))
    return rows


def _champion_row(metric: str, check: GateCheckConfig, value: float | None, baseline: float | None,
                  has_champion: bool) -> GateCheck:
    higher = check.higher_is_better if check.higher_is_better is not None else direction_of(metric)
    allowed = f"{check.max_drop:.0%}" if check.relative else f"{check.max_drop:g}"
    name = f"{metric} vs champion (max drop {allowed})"
    if not has_champion:
        return GateCheck(name, metric, value, None, None, "skipped", "no champion yet: nothing to compare with")
    if value is None or baseline is None:
        missing = "the challenger" if value is None else "the champion"
        return GateCheck(name, metric, value, baseline, None, "fail",
                         f"{metric} is missing for {missing}, so the comparison cannot pass")
    slack = abs(baseline) * check.max_drop if check.relative else check.max_drop
    threshold = baseline - slack if higher else baseline + slack
    passed = value >= threshold if higher else value <= threshold
    change = f"{(value - baseline) / abs(baseline):+.1%}" if baseline else f"{value - baseline:+.4g}"
    return GateCheck(name, metric, value, baseline, threshold, "pass" if passed else "fail",
                     f"{change} against the champion ({'higher' if higher else 'lower'} is better)")


def _beat_row(metric: str, check: GateCheckConfig, value: float | None, reference: float | None,
              label: str, what: str | None, absent: str) -> GateCheck:
    """``metric vs <label>``: the candidate must be strictly better than a reference model scored on the same data.

    Args:
        label: ``baseline`` or ``base``; what: the reference, in a sentence (None: there is none, skipped);
        absent: why there is none, for the skipped row.
    """
    higher = check.higher_is_better if check.higher_is_better is not None else direction_of(metric)
    name = f"{metric} vs {label}"
    if what is None:
        return GateCheck(name, metric, value, None, None, "skipped", absent)
    if value is None or reference is None:
        missing = "the candidate" if value is None else f"the {label}"
        return GateCheck(name, metric, value, reference, None, "fail",
                         f"{metric} is missing for {missing}, so the comparison cannot pass")
    passed = value > reference if higher else value < reference
    verb = "beats" if passed else "does not beat"
    return GateCheck(name, metric, value, reference, reference, "pass" if passed else "fail",
                     f"the candidate {verb} {what} ({value:.4g} vs {reference:.4g}, "
                     f"{'higher' if higher else 'lower'} is better)")


def run_gate(metrics: dict[str, float], config: GateConfig, champion_metrics: dict[str, float] | None = None,
             champion_version: str | None = None, baseline_metrics: dict[str, float] | None = None,
             baseline_name: str | None = None, base_metrics: dict[str, float] | None = None,
             base_name: str | None = None) -> GateReport:
    """Decide whether a challenger may be registered and proposed for promotion.

    Per metric, ``min``/``max`` give absolute rows (``value >= min``, ``value <= max``) and ``max_drop``
    a comparison row against the champion: the challenger may be at most ``max_drop`` worse, in the
    metric's unit, or as a fraction of the champion's value (0.05 = 5%) when ``relative`` is set.
    "Worse" follows ``higher_is_better``, else the metric's name (``metric_directions.direction_of``).

    Args:
        metrics: the challenger's metrics on the frozen test split (and probes), by name.
        config: the checks, keyed by metric name.
        champion_metrics: the champion's metrics re-scored on the same data now, or None (first run).
        champion_version: the champion's registry version, for the report.
        baseline_metrics: the run's baseline (``compactlm.evaluation.baselines``) scored on the same test
            split, for checks with ``beat_baseline``; None: no baseline (those rows are skipped).
        baseline_name: what the baseline is, for the report (e.g. ``TF-IDF + linear SVM``).
        base_metrics: the pretrained base the candidate was fine-tuned from, scored zero-shot on the same
            data, for checks with ``beat_base``; None: trained from scratch (those rows are skipped).
        base_name: the base (``model.base``), for the report.

    Returns:
        The report: ``failed`` when any deciding row failed, else ``passed``; never raises on a missing
        metric (that row fails).
    """
    has_champion = champion_metrics is not None
    checks: list[GateCheck] = []
    for metric, check in config.checks.items():
        value = _value(metrics, metric)
        rows = _absolute_rows(metric, check, value)
        if check.max_drop is not None:
            rows.append(_champion_row(metric, check, value, _value(champion_metrics, metric), has_champion))
        if check.beat_baseline:
            rows.append(_beat_row(
                metric, check, value, _value(baseline_metrics, metric), "baseline",
                f"the {baseline_name} baseline trained on the same split" if baseline_metrics is not None else None,
                "no baseline was trained in this run (eval.baseline is off, or the shape has none)"))
        if check.beat_base:
            rows.append(_beat_row(
                metric, check, value, _value(base_metrics, metric), "base",
                f"its base {base_name} zero-shot" if base_metrics is not None else None,
                "no pretrained base: the model was trained from scratch (model.preset), nothing to compare with"))
        if not rows:
            rows.append(GateCheck(f"{metric} (no bound)", metric, value, _value(champion_metrics, metric), None,
                                  "info", "no threshold configured: reported for information, does not decide"))
        checks.extend(rows)
    notes: list[str] = []
    if has_champion:
        notes.append(f"Champion version {champion_version} was re-scored now on the same data; stored metrics "
                     "from other runs are not used.")
    else:
        notes.append("No champion yet: this first candidate is judged by the absolute thresholds alone "
                     "(comparison checks are skipped).")
    failed = [c.name for c in checks if c.status == "fail"]
    informational = [c.metric for c in checks if c.status == "info"]
    if informational:
        notes.append(f"Informational only (no threshold): {', '.join(informational)}.")
    beaten = [c for c in checks if c.name.endswith("vs baseline") and c.status == "fail"]
    if beaten:
        notes.append(f"The candidate does not beat the {baseline_name} baseline on {beaten[0].metric} "
                     f"({_fmt(beaten[0].value)} vs {_fmt(beaten[0].baseline)}): it is not promoted; the baseline is "
                     "logged with this run and can be registered instead.")
    compared = {c.metric for c in checks if c.name.endswith("vs baseline")}
    ungated = [m for m in config.checks if m not in compared and _value(metrics, m) is not None
               and _value(baseline_metrics, m) is not None]
    if baseline_name is not None and ungated:
        metric = ungated[0]
        notes.append(f"For reference, the {baseline_name} baseline scores {metric} "
                     f"{_fmt(_value(baseline_metrics, metric))} (the candidate {_fmt(_value(metrics, metric))}); "
                     f"not gated: set gate.checks.{metric}.beat_baseline=true to require beating it.")
    if base_metrics is not None:
        notes.append(f"The base {base_name} was scored zero-shot (no fine-tuning) on the same test split, "
                     "in its own chat format.")
    notes.append("All deciding checks passed." if not failed else f"Failed: {'; '.join(failed)}.")
    verdict: Literal["passed", "failed"] = "failed" if failed else "passed"
    scored = {"base": base_metrics, "candidate": metrics, "champion": champion_metrics, "baseline": baseline_metrics}
    side_by_side = {metric: {k: _value(v, metric) for k, v in scored.items()} for metric in config.checks}
    return GateReport(verdict=verdict, checks=checks, champion_version=champion_version, notes=notes,
                      side_by_side=side_by_side)
