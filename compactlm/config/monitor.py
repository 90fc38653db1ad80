"""The ``monitor`` section: what the monitor flow compares, over which window, and when it calls for a retrain."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated

from pydantic import BeforeValidator
from pydantic.dataclasses import dataclass

from compactlm.config.validation import SECTION, CommaList, check

CHECKS = ("length", "vocabulary", "intent", "out_of_domain", "negative_feedback")
"""The monitor's drift checks, in report order (``compactlm.monitoring.drift`` computes them)."""


@dataclass(config=SECTION)
class MonitorConfig:
    """Drift thresholds of the served traffic against the serving version's training data.

    Each check drifts when its statistic passes its threshold (see ``compactlm.monitoring.drift`` for the
    statistics and their sources). ``retrain_on`` lists the checks whose drift emits the retrain event;
    corrected answers count towards a retrain on their own (``corrected_answers_min``).

    Raises:
        ConfigError: a window or count below 1, a share or rate outside [0, 1], a negative distance, or an
            unknown check in ``retrain_on``.
    """

    model_alias: str = "champion"  # the serving version: models:/<registry.model_name>@<alias>
    # the traffic store: serve.traffic_db's values (YAML's `off` is read as "off"); COMPACTLM_TRAFFIC_DB wins
    traffic_db: Annotated[str, BeforeValidator(lambda v: "off" if v is False or v is None else v)] = "default"
    window_hours: float = 24.0  # served requests of the last window_hours are compared
    min_requests: int = 100  # fewer served prompts: no drift verdict ("not enough traffic")
    max_reference_rows: int = 20000  # training rows compared (a seeded sample above this)
    length_ks_max: float = 0.2  # two-sample Kolmogorov-Smirnov statistic of prompt lengths in words
    length_p_value: float = 0.01  # ...and its p-value must be below this too
    vocabulary_js_max: float = 0.35  # Jensen-Shannon distance (base 2) of the word distributions
    intent_js_max: float = 0.25  # Jensen-Shannon distance (base 2) of the predicted intent distributions
    ood_similarity_min: float = 0.3  # a prompt whose nearest training prompt is less TF-IDF-cosine-similar is OOD
    ood_share_max: float = 0.2  # share of OOD prompts above which traffic has drifted
    negative_feedback_rate_max: float = 0.3  # thumbs-down share of rated answers in the window
    min_feedback: int = 20  # fewer ratings: no verdict on the negative-feedback rate
    corrected_answers_min: int = 50  # corrected answers since the serving version was registered
    retrain_on: CommaList[str] = field(default_factory=lambda: list(CHECKS))  # drifts that call for a retrain
    watch_source: str = ""  # folder or s3://bucket/prefix the watch-data flow watches ("": <home>/incoming)
    retrain_cooldown_hours: float = 24.0  # one retrain request per serving version within this many hours
    emit_events: bool = True  # emit compactlm.monitor.retrain-needed (deployment triggers start retrain)

    def __post_init__(self) -> None:
        check(bool(self.model_alias.strip()), "monitor.model_alias", self.model_alias, "non-empty")
        check(self.window_hours > 0, "monitor.window_hours", self.window_hours, "> 0")
        check(self.retrain_cooldown_hours >= 0, "monitor.retrain_cooldown_hours", self.retrain_cooldown_hours, ">= 0")
        for name in ("min_requests", "max_reference_rows", "min_feedback", "corrected_answers_min"):
            check(getattr(self, name) >= 1, f"monitor.{name}", getattr(self, name), ">= 1")
        for name in ("length_ks_max", "length_p_value", "vocabulary_js_max", "intent_js_max", "ood_similarity_min",
                     "ood_share_max", "negative_feedback_rate_max"):
            value = getattr(self, name)
            check(0.0 <= value <= 1.0, f"monitor.{name}", value, "between 0 and 1")
        unknown = [name for name in self.retrain_on if name not in CHECKS]
        check(not unknown, "monitor.retrain_on", self.retrain_on, f"a list of {', '.join(CHECKS)}")
