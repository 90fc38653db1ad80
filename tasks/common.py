"""Shared pieces of the Prefect tasks: the code-version cache policy, retries on I/O, report publishing."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy

import compactlm
from compactlm.errors import CompactLMError
from compactlm.fileio import files_digest
from compactlm.registry.tracking import reopen_run

REPO_ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the library source and the expectation suites: any code change invalidates caches."""
    package = Path(compactlm.__file__).parent
    return files_digest([*package.rglob("*.py"), *(REPO_ROOT / "expectations").glob("*.json")], compactlm.__version__)


# Cache on the task's inputs, its own source and the library's code version. Used only by pure
# computations on a versioned dataset; training is never cached implicitly.
CODE_AWARE_CACHE = INPUTS + TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=lambda *_: code_version())


def not_a_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry condition: transient failures are retried, a user's bad input (CompactLMError) is not."""
    return not isinstance(state.result(raise_on_failure=False), CompactLMError)


# Retries for tasks whose failures are usually transient I/O (remote storage, tracking server).
IO_RETRIES: dict[str, Any] = {"retries": 3, "retry_delay_seconds": [2, 5, 15], "retry_condition_fn": not_a_user_error}


def artifact_key(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def publish_report(run_id: str | None, name: str, markdown: str, payload: dict[str, Any] | None = None,
                   description: str = "") -> None:
    """Show a report as a Prefect markdown artifact and log it (and its JSON) to the MLflow run, if any."""
    import mlflow
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=artifact_key(name), description=description or name)
    if run_id is None:
        return
    with reopen_run(run_id):
        mlflow.log_text(markdown, f"reports/{name}.md")
        if payload is not None:
            mlflow.log_text(json.dumps(payload, indent=2, default=str), f"reports/{name}.json")


publish = task(name="publish-report", retries=2, retry_delay_seconds=[2, 5])(publish_report)
