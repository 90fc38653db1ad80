"""The result of one evaluation: metrics, section reports, files and examples (any shape, any model)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class EvalResult:
    """Metrics of one model, the markdown report of each section, output files and a few examples.

    Attributes:
        metrics: metric name -> value (see ``evaluate_model`` for names and units).
        n_rows: test rows scored teacher-forced (perplexity) or classified.
        n_generated: rows answered by generation.
        seconds: wall time of the whole evaluation, in seconds.
        examples: up to five ``{"instruction", "reference", "generated"}`` rows for the report.
        reports: section name (``slices``, ``mcq``, ``counterfactual-bias``, ``robustness``, ``safety``) -> markdown.
        files: output name -> path (``mcq``: the JSONL records).
        slices: column -> group -> mean ROUGE-L F1 (or accuracy per ``label`` for a classifier).
        timings: section (e.g. ``mcq (60 questions)``) -> wall time in seconds.
    """

    metrics: dict[str, float]
    n_rows: int
    n_generated: int
    seconds: float
    examples: list[dict[str, str]] = field(default_factory=list)
    reports: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    slices: dict[str, dict[str, float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The result as a plain dict."""
        return asdict(self)

    def to_markdown(self, title: str) -> str:
        """The metrics table, the sample sizes and time, and the first examples, under ``# title``."""
        lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in sorted(self.metrics.items())]
        lines += ["", f"Perplexity over {self.n_rows} test rows; generation metrics over {self.n_generated}; "
                  f"{self.seconds:.1f} s{self._timing_note()}.", "",
                  "| instruction | reference | generated |", "|---|---|---|"]
        for ex in self.examples:
            cells = [ex[k].replace("|", "\\|").replace("\n", " ")[:200]
                     for k in ("instruction", "reference", "generated")]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def _timing_note(self) -> str:
        """`` (perplexity (120 rows) 30.1 s, ...)`` from ``timings``, or nothing."""
        if not self.timings:
            return ""
        return " (" + ", ".join(f"{section} {seconds:.1f} s" for section, seconds in self.timings.items()) + ")"
