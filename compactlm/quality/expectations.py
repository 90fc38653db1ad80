"""Great Expectations suites stored under ``expectations/``, run against a DataFrame.

Suites are plain GE 1.x JSON (``suite.to_json_dict()`` format) versioned with the code. Each
expectation carries GE's ``severity``: a failed ``critical`` expectation stops the pipeline, a failed
``warning`` is reported only. Run-time values (allowed labels, length bounds) are GE suite parameters
(``{"$PARAMETER": "name"}``) filled from the data config.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from compactlm.errors import ConfigError

EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"
SAMPLE_ROWS = 5


@dataclass
class CheckResult:
    """One expectation's outcome."""

    expectation: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int
    sample: list[dict[str, Any]] = field(default_factory=list)  # offending rows (id + value)
    observed: Any = None

    def describe(self) -> str:
        where = f" on column {self.column!r}" if self.column else ""
        text = f"{self.expectation}{where}"
        if not self.success and self.unexpected_count:
            text += f": {self.unexpected_count} offending row(s), e.g. {self.sample[:3]}"
        elif not self.success and self.observed is not None:
            text += f": observed {self.observed!r}"
        return text


@dataclass
class ValidationReport:
    """A suite's outcome: ``success`` is False when any critical expectation failed."""

    suite: str
    n_rows: int
    success: bool
    checks: list[CheckResult]

    @property
    def critical_failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success and c.severity == "critical"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success and c.severity != "critical"]

    def summary(self) -> str:
        passed = sum(c.success for c in self.checks)
        return (f"{self.suite}: {passed}/{len(self.checks)} expectations passed, "
                f"{len(self.critical_failures)} critical failure(s), {len(self.warnings)} warning(s)")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    def to_markdown(self) -> str:
        lines = [f"# Data validation: `{self.suite}`", "", f"**{'PASSED' if self.success else 'FAILED'}**"
                 f" — {self.summary()} on {self.n_rows} rows.", "",
                 "| expectation | column | severity | result | offending rows | sample |",
                 "|---|---|---|---|---|---|"]
        for c in self.checks:
            sample = ", ".join(str(s) for s in c.sample[:2]).replace("|", "\\|")[:160]
            lines.append(f"| {c.expectation} | {c.column or ''} | {c.severity} | "
                         f"{'pass' if c.success else 'FAIL'} | {c.unexpected_count} | {sample} |")
        return "\n".join(lines)


def suite_path(name: str, directory: str | Path | None = None) -> Path:
    """The JSON file of suite ``name`` (COMPACTLM_EXPECTATIONS_DIR overrides the folder)."""
    folder = Path(directory or os.environ.get("COMPACTLM_EXPECTATIONS_DIR") or EXPECTATIONS_DIR)
    return folder / f"{name}.json"


def load_suite(name: str, directory: str | Path | None = None) -> dict[str, Any]:
    """Read a suite's JSON, failing with the path when it is missing or malformed."""
    path = suite_path(name, directory)
    if not path.is_file():
        raise ConfigError(f"data.expectation_suite {name!r}: no suite file {path}")
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(suite.get("expectations"), list):
        raise ConfigError(f"{path}: a suite needs an 'expectations' list")
    return suite


def _ephemeral_context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def validate_frame(frame: pd.DataFrame, suite_name: str, parameters: dict[str, Any],
                   id_column: str = "id", directory: str | Path | None = None) -> ValidationReport:
    """Validate ``frame`` against a stored suite.

    Args:
        frame: the rows to check (all splits, with a ``split`` column, for the instruction suite).
        suite_name: the suite file's name under ``expectations/``, without ``.json``.
        parameters: values for the suite's ``$PARAMETER`` placeholders.
        id_column: column used to name offending rows in the report.
    """
    import great_expectations as gx
    from great_expectations.core import ExpectationSuite

    suite_json = load_suite(suite_name, directory)
    context = _ephemeral_context()
    suite = context.suites.add(ExpectationSuite(**suite_json))
    asset = context.data_sources.add_pandas("frames").add_dataframe_asset("frame")
    batch = asset.add_batch_definition_whole_dataframe("whole")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}-validation", data=batch, suite=suite))
    index_columns = [id_column] if id_column in frame.columns else []
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns,
                       "partial_unexpected_count": SAMPLE_ROWS},
    )
    checks = []
    for item in result.results:
        config = item.expectation_config
        details = item.result or {}
        sample = list(details.get("unexpected_index_list") or details.get("partial_unexpected_list") or [])
        column = config.kwargs.get("column") or ", ".join(config.kwargs.get("column_list", []) or []) or None
        checks.append(CheckResult(
            expectation=config.type,
            column=column,
            severity=str(getattr(config, "severity", None) or "critical").split(".")[-1].lower(),
            success=bool(item.success),
            unexpected_count=int(details.get("unexpected_count") or 0),
            sample=[_plain(s) for s in sample[:SAMPLE_ROWS]],
            observed=_plain(details.get("observed_value")),
        ))
    success = not any(not c.success and c.severity == "critical" for c in checks)
    return ValidationReport(suite=suite_name, n_rows=len(frame), success=success, checks=checks)


def _plain(value: Any) -> Any:
    """JSON-friendly copy of GE's result values (numpy scalars, NaN)."""
    return json.loads(json.dumps(value, default=str)) if value is not None else None
