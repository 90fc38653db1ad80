"""The monitor's report: one ``CheckResult`` per drift check and the ``DriftReport`` of a window of traffic.

``compactlm.monitoring.drift`` computes the checks; this module holds what they add up to (the verdict,
the markdown of the Prefect artifact, the JSON of the MLflow run).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

TEXT_CHECKS = ("length", "vocabulary", "intent", "out_of_domain")

@dataclass(frozen=True)
class CheckResult:
    """One drift check: its statistic against its threshold.

    ``statistic`` is None when the check could not be computed (``detail`` says why); such a check never
    drifts. ``extra`` holds secondary figures (a p-value, the out-of-vocabulary rate, the largest shifts).
    """

    name: str
    statistic: float | None
    threshold: float
    drifted: bool
    detail: str
    method: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def applied_threshold(self) -> float:
        """The bar the statistic had to pass: the configured threshold, or the no-drift 99th percentile at this
        sample size when that is higher (the two Jensen-Shannon checks)."""
        return max(self.threshold, float(self.extra.get("null_p99", self.threshold)))


@dataclass
class DriftReport:
    """The monitor's verdict on one window of served traffic.

    Attributes:
        model_name, model_version: the serving version; data_version: the DVC version it trained on.
        window_start, window_end: the window (UTC); n_served: requests served in it; n_prompts: those with
            their prompt text stored (the text checks use these); n_reference: training prompts compared.
        checks: one ``CheckResult`` per name of ``compactlm.config.monitor.CHECKS``.
        feedback: ``{"up", "down", "rated"}`` counts in the window.
        corrected_answers: corrected answers stored since the version was registered.
        distributions: the data behind the plots (length histograms, intent shares).
    """

    model_name: str
    model_version: str | None
    data_version: str | None
    window_start: datetime
    window_end: datetime
    n_served: int
    n_prompts: int
    n_reference: int
    checks: list[CheckResult]
    feedback: dict[str, int]
    corrected_answers: int
    corrected_answers_min: int
    retrain_on: list[str]
    distributions: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> list[str]:
        """The names of the checks that drifted."""
        return [c.name for c in self.checks if c.drifted]

    @property
    def retrain_reasons(self) -> list[str]:
        """Why a retrain is called for: drifted checks listed in ``retrain_on``, and enough corrected answers."""
        reasons = [name for name in self.drifted if name in self.retrain_on]
        if self.corrected_answers >= self.corrected_answers_min:
            reasons.append("corrected_answers")
        return reasons

    @property
    def retrain_needed(self) -> bool:
        """True when ``retrain_reasons`` is not empty."""
        return bool(self.retrain_reasons)

    @property
    def enough_traffic(self) -> bool:
        """True when the text checks ran (at least ``monitor.min_requests`` served prompts with their text)."""
        return any(c.statistic is not None for c in self.checks if c.name in TEXT_CHECKS)

    @property
    def verdict(self) -> str:
        """``retrain-needed``, ``no-drift``, or ``no-verdict`` (too little traffic to judge, nothing else calls
        for a retrain)."""
        if self.retrain_needed:
            return "retrain-needed"
        return "no-drift" if self.enough_traffic else "no-verdict"

    def figures(self) -> dict[str, float]:
        """Every computed statistic as ``{"drift.<check>": value}`` plus counts (MLflow metrics, event payload)."""
        out: dict[str, float] = {f"drift.{c.name}": float(c.statistic) for c in self.checks if c.statistic is not None}
        for check in self.checks:
            for key, value in check.extra.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[f"drift.{check.name}.{key}"] = float(value)
        out.update({"served_requests": float(self.n_served), "served_prompts": float(self.n_prompts),
                    "reference_prompts": float(self.n_reference), "feedback_rated": float(self.feedback["rated"]),
                    "corrected_answers": float(self.corrected_answers)})
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report as plain values (times in ISO 8601)."""
        out = asdict(self)
        out["window_start"], out["window_end"] = self.window_start.isoformat(), self.window_end.isoformat()
        out.update(drifted=self.drifted, retrain_reasons=self.retrain_reasons, retrain_needed=self.retrain_needed,
                   verdict=self.verdict, enough_traffic=self.enough_traffic)
        for check, row in zip(self.checks, out["checks"]):
            row["applied_threshold"] = check.applied_threshold
        return out

    def summary(self) -> str:
        """One line: the verdict, with the drifted checks."""
        head = (f"{self.model_name} v{self.model_version}: {self.n_prompts} served prompts vs {self.n_reference} "
                "training")
        if self.verdict == "no-verdict":
            why = next(c.detail for c in self.checks if c.name == "length")
            return f"{head}: no verdict ({why})"
        if not self.retrain_needed:
            return f"{head}: no retrain needed" + (f" (drifted, not retraining on: {', '.join(self.drifted)})"
                                                   if self.drifted else "")
        return f"{head}: retrain needed ({', '.join(self.retrain_reasons)})"

    def to_markdown(self) -> str:
        """The report as a markdown table (the Prefect artifact and the MLflow ``reports/monitor.md``)."""
        verdict = {"retrain-needed": "Retrain needed: " + ", ".join(self.retrain_reasons),
                   "no-drift": "No retrain needed",
                   "no-verdict": "No verdict: too little traffic to judge drift"}[self.verdict]
        lines = [f"# Monitor: {self.model_name} version {self.model_version}", "",
                 f"Window {self.window_start:%Y-%m-%d %H:%M} to {self.window_end:%Y-%m-%d %H:%M} UTC: "
                 f"{self.n_served} requests served, {self.n_prompts} with their prompt text; "
                 f"compared with {self.n_reference} training prompts of data version "
                 f"`{(self.data_version or 'unknown')[:12]}`.", "",
                 f"**{verdict}**",
                 "", "| check | statistic | threshold applied (configured) | drifted | detail |",
                 "|---|---|---|---|---|"]
        for c in self.checks:
            stat = "n/a" if c.statistic is None else f"{c.statistic:.4f}"
            bar = f"{c.threshold:g}" if c.applied_threshold == c.threshold else \
                f"{c.applied_threshold:.4g} ({c.threshold:g})"
            lines.append(f"| {c.name} | {stat} | {bar} | {'**yes**' if c.drifted else 'no'} | {c.detail} |")
        lines += ["", f"Feedback in the window: {self.feedback['up']} up, {self.feedback['down']} down. "
                      f"Corrected answers since the version was registered: {self.corrected_answers} "
                      f"(retrain at {self.corrected_answers_min}).", "", "Methods:", ""]
        lines += [f"- {c.name}: {c.method}" for c in self.checks]
        return "\n".join(lines) + "\n"
