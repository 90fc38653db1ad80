"""Load-and-query smoke test: a registered version must load through MLflow in a fresh process and answer.

Run before any alias moves. A fresh interpreter catches what an in-process check cannot: a missing
requirement, code that only imports thanks to the training process's state, an artifact that was not
logged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

_SCRIPT = """
import json, sys, mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
answer = model.predict([sys.argv[2]], params={"max_new_tokens": int(sys.argv[3])})
print("SMOKE-RESULT " + json.dumps({"answer": answer[0] if len(answer) else None}))
"""


@dataclass
class SmokeResult:
    """Outcome of one smoke test.

    Attributes:
        passed: the model loaded and returned a string answer.
        seconds: wall time of the child process (load + answer), in seconds.
        prompt: the question asked.
        answer: the model's answer (None when it failed).
        error: the child's last stderr line, its exit code or the timeout, cut to 500 characters.
    """

    passed: bool
    seconds: float
    prompt: str
    answer: str | None
    error: str | None

    def to_dict(self) -> dict:
        """The result as a plain dict."""
        return asdict(self)

    def to_markdown(self, model_uri: str) -> str:
        """A short report: verdict, what was run and how long it took, the answer or the error."""
        head = f"# Smoke test: **{'PASSED' if self.passed else 'FAILED'}**\n\n"
        body = (f"`mlflow.pyfunc.load_model('{model_uri}')` in a fresh Python process, then "
                f"`predict([{self.prompt!r}])` in {self.seconds:.1f} s.\n\n")
        return head + body + (f"Answer: `{self.answer}`" if self.passed else f"Error: `{self.error}`")


def smoke_test(model_uri: str, tracking_uri: str, prompt: str = "Where is my order?", max_new_tokens: int = 16,
               timeout_s: int = 300) -> SmokeResult:
    """Load ``model_uri`` with MLflow in a new interpreter and ask it one question.

    Passes when the process exits cleanly and returns a string answer (possibly empty: the test
    checks that the model loads and runs, not what it says).

    Args:
        model_uri: the version to load, e.g. ``models:/name/3``.
        tracking_uri: the MLflow tracking and registry URI the child process uses.
        prompt: the question.
        max_new_tokens: most tokens the answer may have.
        timeout_s: how long the child may take, in seconds, before the test fails.

    Returns:
        The outcome; a failure is reported in the result, never raised.
    """
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri,
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", _SCRIPT, model_uri, prompt, str(max_new_tokens)],
                              capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return SmokeResult(False, time.perf_counter() - start, prompt, None, f"timed out after {timeout_s} s")
    seconds = time.perf_counter() - start
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("SMOKE-RESULT ") and done.returncode == 0:
            answer = json.loads(line.removeprefix("SMOKE-RESULT "))["answer"]
            if isinstance(answer, str):
                return SmokeResult(True, seconds, prompt, answer, None)
    errors = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return SmokeResult(False, seconds, prompt, None, (errors[-1] if errors else f"exit code {done.returncode}")[:500])
