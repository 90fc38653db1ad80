"""Great Expectations suites stored under ``expectations/``, run against a DataFrame, with Data Docs.

Suites are plain GE 1.x JSON (``suite.to_json_dict()`` format) versioned with the code, one per task
shape. Each expectation carries GE's ``severity``: a failed ``critical`` expectation stops the pipeline,
a failed ``warning`` is reported only. Run-time values (allowed labels, length bounds, the reference
label distribution) are written ``{"$PARAMETER": "name"}`` and filled in before the suite is built, so
Data Docs show the real values; an expectation whose parameter has no value (no reference distribution
on a first version) is skipped and listed as such. Checks GE has no expectation for (split leakage,
label consistency, card numbers) are derived columns declared in the suite's ``meta.derived`` (see
``compactlm.quality.derived``) and validated with ordinary expectations.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from compactlm.errors import ConfigError
from compactlm.quality.derived import add_quality_columns

EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"
SAMPLE_ROWS = 5


@dataclass
class CheckResult:
    """One expectation's outcome.

    Attributes:
        expectation: the GE expectation type, e.g. ``expect_column_values_to_not_be_null``.
        column: the column(s) it checks (comma-joined for a column list), or None for table-level ones.
        severity: ``critical`` (stops the pipeline) or ``warning``.
        success: whether it held.
        unexpected_count: offending rows (0 for aggregate expectations).
        sample: up to ``SAMPLE_ROWS`` offending rows (id column + value) or values.
        observed: GE's observed value for aggregate expectations (a row count, a KL divergence...).
    """

    expectation: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int
    sample: list[dict[str, Any]] = field(default_factory=list)  # offending rows (id + value)
    observed: Any = None

    def describe(self) -> str:
        """One line: the expectation, its column and, when it failed, the offending rows or observed value."""
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
    skipped: list[str] = field(default_factory=list)  # expectations without a parameter value
    docs_path: str | None = None  # the Data Docs site's index.html, when rendered

    @property
    def critical_failures(self) -> list[CheckResult]:
        """The failed expectations of severity ``critical`` (any one fails the validation)."""
        return [c for c in self.checks if not c.success and c.severity == "critical"]

    @property
    def warnings(self) -> list[CheckResult]:
        """The failed expectations of any other severity (reported only)."""
        return [c for c in self.checks if not c.success and c.severity != "critical"]

    def summary(self) -> str:
        """One line: expectations passed out of run, critical failures and warnings."""
        passed = sum(c.success for c in self.checks)
        return (f"{self.suite}: {passed}/{len(self.checks)} expectations passed, "
                f"{len(self.critical_failures)} critical failure(s), {len(self.warnings)} warning(s)")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the report (values GE returns that JSON cannot hold become strings)."""
        return json.loads(json.dumps(asdict(self), default=str))

    def checks_table(self) -> list[dict[str, Any]]:
        """One row per expectation: name, column, severity, pass/FAIL and the number of offending rows."""
        return [{"expectation": c.expectation, "column": c.column or "", "severity": c.severity,
                 "result": "pass" if c.success else "FAIL", "offending_rows": c.unexpected_count} for c in self.checks]

    def failure_message(self) -> str | None:
        """One line naming the first critical failure (and how many more), or None when none failed."""
        if self.success:
            return None
        first, more = self.critical_failures[0], len(self.critical_failures) - 1
        extra = f" (and {more} more critical failure(s))" if more else ""
        return f"data validation failed: {first.describe()}{extra}"

    def to_markdown(self) -> str:
        """The verdict and one table row per expectation (skipped ones too), with the Data Docs path."""
        lines = [f"# Data validation: `{self.suite}`", "", f"**{'PASSED' if self.success else 'FAILED'}**"
                 f" — {self.summary()} on {self.n_rows} rows.", "",
                 "| expectation | column | severity | result | offending rows | sample |",
                 "|---|---|---|---|---|---|"]
        for c in self.checks:
            sample = ", ".join(str(s) for s in c.sample[:2]).replace("|", "\\|")[:160]
            lines.append(f"| {c.expectation} | {c.column or ''} | {c.severity} | "
                         f"{'pass' if c.success else 'FAIL'} | {c.unexpected_count} | {sample} |")
        lines += [f"| {s} | | | skipped | | |" for s in self.skipped]
        if self.docs_path:
            lines += ["", f"Great Expectations Data Docs: `{self.docs_path}`"]
        return "\n".join(lines)


def suite_path(name: str, directory: str | Path | None = None) -> Path:
    """The JSON file of suite ``name`` (COMPACTLM_EXPECTATIONS_DIR overrides the folder)."""
    folder = Path(directory or os.environ.get("COMPACTLM_EXPECTATIONS_DIR") or EXPECTATIONS_DIR)
    return folder / f"{name}.json"


def load_suite(name: str, directory: str | Path | None = None) -> dict[str, Any]:
    """Read a suite's JSON, failing with the path when it is missing or malformed.

    Args:
        name: the suite's name (``data.expectation_suite``), without ``.json``.
        directory: the suites folder (default: see ``suite_path``).

    Returns:
        The suite as GE 1.x JSON (``name``, ``expectations``, ``meta``).

    Raises:
        ConfigError: no such file, invalid JSON (with the line), or no ``expectations`` list.
    """
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


def _ephemeral_context(docs_dir: Path | None = None):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    # This module sets its own logger to INFO and announces every ephemeral docs folder.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        context.add_data_docs_site("local", {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    return context


def _parameter_names(value: Any) -> list[str]:
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"}:
            return [value["$PARAMETER"]]
        return [n for v in value.values() for n in _parameter_names(v)]
    if isinstance(value, list):
        return [n for v in value for n in _parameter_names(v)]
    return []


def _substitute(value: Any, parameters: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"}:
            return parameters[value["$PARAMETER"]]
        return {k: _substitute(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, parameters) for v in value]
    return value


def _columns_of(kwargs: dict[str, Any]) -> list[str]:
    named = [kwargs.get(k) for k in ("column", "column_A", "column_B")] + list(kwargs.get("column_list") or [])
    return [c for c in named if c]


def resolve_parameters(expectations: list[dict[str, Any]], parameters: dict[str, Any],
                       columns: set[str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Fill ``$PARAMETER`` placeholders; return the expectations to run and descriptions of the skipped ones.

    An expectation is skipped when one of its parameters has no value, or when it is marked
    ``meta.optional_column`` and (with ``columns`` given) a column it names is not in the data.

    Args:
        expectations: the suite's expectation dicts (``type``, ``kwargs``, ``meta``...); not modified.
        parameters: placeholder name -> value (None: no value).
        columns: the data's columns, for ``meta.optional_column``; None: not checked.

    Returns:
        (expectations with their placeholders filled in, one line per skipped expectation saying why)
    """
    resolved, skipped = [], []
    for expectation in expectations:
        kwargs = expectation.get("kwargs", {})
        why = [f"no value for parameter {n!r}" for n in _parameter_names(kwargs) if parameters.get(n) is None]
        if (expectation.get("meta") or {}).get("optional_column") and columns is not None:
            why += [f"no column {c!r} in the data" for c in _columns_of(kwargs) if c not in columns]
        if why:
            skipped.append(f"{expectation['type']}({', '.join(_columns_of(kwargs))}): {'; '.join(why)}")
            continue
        item = copy.deepcopy(expectation)
        item["kwargs"] = _substitute(kwargs, parameters)
        resolved.append(item)
    return resolved, skipped


def validate_frame(frame: pd.DataFrame, suite_name: str, parameters: dict[str, Any],
                   id_column: str = "id", directory: str | Path | None = None,
                   docs_dir: str | Path | None = None) -> ValidationReport:
    """Validate ``frame`` against a stored suite, optionally rendering GE Data Docs.

    Args:
        frame: the rows to check (all splits, with a ``split`` column).
        suite_name: the suite file's name under ``expectations/``, without ``.json``.
        parameters: values for the suite's ``$PARAMETER`` placeholders (None: skip that expectation).
        id_column: column used to name offending rows in the report.
        directory: the suites folder (default: ``expectations/`` or COMPACTLM_EXPECTATIONS_DIR).
        docs_dir: render the Data Docs site here (the folder is replaced); ``docs_path`` names its index.

    Returns:
        The report; ``success`` is False when a critical expectation failed (this function never
        raises for a failed expectation: the caller decides).

    Raises:
        ConfigError: the suite file is missing or malformed (see ``load_suite``).
    """
    import great_expectations as gx
    from great_expectations.core import ExpectationSuite

    suite_json = load_suite(suite_name, directory)
    frame = add_quality_columns(frame, (suite_json.get("meta") or {}).get("derived"))
    expectations, skipped = resolve_parameters(suite_json["expectations"], parameters, set(frame.columns))
    docs = Path(docs_dir).resolve() if docs_dir is not None else None
    if docs is not None:
        shutil.rmtree(docs, ignore_errors=True)
    context = _ephemeral_context(docs)
    suite = context.suites.add(ExpectationSuite(name=suite_json.get("name", suite_name), expectations=expectations,
                                                meta=suite_json.get("meta") or {}))
    asset = context.data_sources.add_pandas("frames").add_dataframe_asset("frame")
    batch = asset.add_batch_definition_whole_dataframe("whole")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}-validation", data=batch, suite=suite))
    index_columns = [id_column] if id_column in frame.columns else []
    result_format = {"result_format": "SUMMARY", "unexpected_index_column_names": index_columns,
                     "partial_unexpected_count": SAMPLE_ROWS}
    if docs is None:
        result = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
    else:
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=f"{suite_name}-checkpoint", validation_definitions=[definition], result_format=result_format,
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data-docs")]))
        result = next(iter(checkpoint.run(batch_parameters={"dataframe": frame}).run_results.values()))
    checks = [_check_result(item) for item in result.results]
    success = not any(not c.success and c.severity == "critical" for c in checks)
    index = docs / "index.html" if docs is not None else None
    return ValidationReport(suite=suite_name, n_rows=len(frame), success=success, checks=checks, skipped=skipped,
                            docs_path=str(index) if index is not None and index.is_file() else None)


def _check_result(item: Any) -> CheckResult:
    config = item.expectation_config
    details = item.result or {}
    sample = list(details.get("partial_unexpected_index_list") or details.get("unexpected_index_list")
                  or details.get("partial_unexpected_list") or [])
    column = config.kwargs.get("column") or ", ".join(config.kwargs.get("column_list", []) or []) or None
    return CheckResult(
        expectation=config.type,
        column=column,
        severity=str(getattr(config, "severity", None) or "critical").split(".")[-1].lower(),
        success=bool(item.success),
        unexpected_count=int(details.get("unexpected_count") or 0),
        sample=[_plain(s) for s in sample[:SAMPLE_ROWS]],
        observed=_plain(details.get("observed_value")),
    )


def _plain(value: Any) -> Any:
    """JSON-friendly copy of GE's result values (numpy scalars, NaN)."""
    return json.loads(json.dumps(value, default=str)) if value is not None else None
