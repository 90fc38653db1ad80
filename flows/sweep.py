"""The sweep flow: train one trial per point of a search space, pick the best by validation loss, retrain it.

    python -m flows.sweep --config configs/sweep.yaml [--set section.field=value ...] [--retrain]

Each trial is a Prefect task (``sweep-trial``) that trains in a fresh process through
``compactlm.training.launch`` (isolated memory and RNG, so concurrent trials stay reproducible) into a
nested MLflow run under the sweep's run. At most ``max_concurrency`` trials run at once: they are
submitted to a ``ThreadPoolTaskRunner`` with that many workers (each worker waits on its trial's
process). When only fine-tuning fields vary, the base is trained once and every trial starts from
it. With ``retrain_best`` the best trial's overrides feed the ``retrain`` flow as a subflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from compactlm.config import SweepConfig
from compactlm.data.versioning import DatasetVersion
from compactlm.errors import CompactLMError, ConfigError
from compactlm.state import configure_environment
from compactlm.training.sweep import best_trial, expand_space, shares_base, trial_overrides, validate_trials
from flows.retrain import resolve_config, retrain
from flows.review import ApprovalMode
from tasks.common import mlflow_run
from tasks.data import ingest_dataset
from tasks.registry import end_tracking, log_dataset, start_tracking

TRIAL_TIMEOUT_S = 6 * 3600


def _launch(config_path: str | None, overrides: list[str], data_dir: str, output_dir: Path, threads: int,
            extra: list[str], mlflow_run_id: str | None = None) -> dict[str, Any]:
    """Run ``compactlm.training.launch`` in a fresh process; returns its ``{stage: summary}``."""
    import mlflow

    summary = output_dir / "summary.json"
    command = [sys.executable, "-m", "compactlm.training.launch", "--data", data_dir, "--output", str(output_dir),
               "--summary", str(summary), *(["--config", config_path] if config_path else []),
               *[arg for item in overrides for arg in ("--set", item)], *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    if mlflow_run_id:
        command.append("--mlflow")
        env["MLFLOW_RUN_ID"] = mlflow_run_id
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TRIAL_TIMEOUT_S)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        user_error = next((line[len("error: "):] for line in lines if line.startswith("error: ")), None)
        if user_error:
            raise ConfigError(user_error)
        raise RuntimeError(f"training process failed ({done.returncode}): {' | '.join(lines[-5:])}")
    return json.loads(summary.read_text())


@task(name="sweep-base")
def train_shared_base(config_path: str | None, overrides: list[str], version: DatasetVersion, work_dir: str,
                      run_id: str) -> str | None:
    """Train the base stage once for trials that only vary fine-tuning; None when the task has no base stage."""
    with mlflow_run(run_id, child="sweep-base") as nested:
        stages = _launch(config_path, overrides, version.path, Path(work_dir) / "base-run", os.cpu_count() or 1,
                         ["--base-only"], nested.info.run_id)
    log_dataset.fn(version, nested.info.run_id)
    return next((s["output_dir"] for s in stages.values()), None)


@task(name="sweep-trial")
def run_trial(index: int, trial: dict[str, Any], config_path: str | None, overrides: list[str],
              version: DatasetVersion, base_dir: str | None, work_dir: str, run_id: str,
              threads: int) -> dict[str, Any]:
    """Train one trial in its own process into a nested MLflow run; returns its losses (a failure is recorded)."""
    import mlflow

    result: dict[str, Any] = {"trial": index, "params": trial, "eval_loss": None, "train_loss": None, "error": None}
    with mlflow_run(run_id, child=f"trial-{index}") as nested:
        mlflow.log_params({name: json.dumps(value) for name, value in trial.items()})
        mlflow.set_tags({"sweep.trial": str(index), "data_version": version.md5})
        result["mlflow_run_id"] = nested.info.run_id
        try:
            stages = _launch(config_path, [*overrides, *trial_overrides(trial)], version.path,
                             Path(work_dir) / f"trial-{index}", threads, ["--base", base_dir] if base_dir else [],
                             nested.info.run_id)
        except (CompactLMError, RuntimeError, subprocess.TimeoutExpired) as exc:
            result["error"] = str(exc)
            mlflow.set_tag("sweep.error", str(exc)[:500])
            return result
        last = list(stages.values())[-1]
        result.update(eval_loss=last["eval_loss"], train_loss=last["train_loss"], output_dir=last["output_dir"])
    # The trial's process closed the nested run; its objective and data go next to the Trainer's curves.
    with mlflow_run(result["mlflow_run_id"]):
        mlflow.log_metric("trial_eval_loss", result["eval_loss"])
    log_dataset.fn(version, result["mlflow_run_id"])
    return result


def _report(results: list[dict[str, Any]], best: dict[str, Any] | None, run_id: str) -> None:
    import mlflow

    rows = [{"trial": r["trial"], **{k: json.dumps(v) for k, v in r["params"].items()},
             "eval_loss": r["eval_loss"], "train_loss": r["train_loss"], "error": r["error"] or ""} for r in results]
    create_table_artifact(key="sweep-trials", table=rows,
                          description=f"Best trial: {best['trial'] if best else 'none'} (lowest validation loss)")
    with mlflow_run(run_id):
        mlflow.log_text(json.dumps(results, indent=2, default=str), "reports/sweep.json")
        if best is not None:
            mlflow.log_metric("best_eval_loss", best["eval_loss"])
            mlflow.log_params({f"best.{k}": json.dumps(v) for k, v in best["params"].items()})


@flow(name="sweep")
def sweep(config_path: str | None = None, overrides: list[str] | None = None, space: dict[str, list] | None = None,
          method: str | None = None, n_trials: int | None = None, max_concurrency: int | None = None,
          retrain_best: bool = False, approval: ApprovalMode = "wait", source: str | None = None) -> dict[str, Any]:
    """Sweep learning rate, batch size, LoRA rank/alpha, epochs... and feed the best trial to ``retrain``.

    Args:
        config_path: the base config (its ``sweep`` section is the default space and method).
        overrides: ``section.field=value`` applied to every trial.
        space, method, n_trials, max_concurrency: override the config's ``sweep`` section.
        retrain_best: run the ``retrain`` flow (as a subflow) with the best trial's overrides.
        approval: passed to ``retrain``.
        source: a data source instead of ``data.source``.

    Returns:
        ``{"best", "trials", "best_overrides", "mlflow_run_id", "retrain"}``.
    """
    logger = get_run_logger()
    overrides = [*(overrides or []), *([f"data.source={source}"] if source else [])]
    config = resolve_config(config_path, overrides, None)
    chosen = config.sweep
    sweep_cfg = SweepConfig(method=method or chosen.method, space=space if space is not None else chosen.space,
                            n_trials=chosen.n_trials if n_trials is None else n_trials,
                            max_concurrency=max_concurrency or chosen.max_concurrency, seed=chosen.seed)
    trials = expand_space(sweep_cfg)
    validate_trials(config_path, overrides, trials)  # every value checked before any compute
    paths = configure_environment(config.home)
    run_id = start_tracking(config, str(flow_run.id), "sweep")
    work_dir = paths.runs / run_id
    try:
        version = ingest_dataset(config.data, str(paths.home), run_id, bias=config.bias)
        log_dataset(version, run_id)
        base_dir = train_shared_base(config_path, overrides, version, str(work_dir), run_id) \
            if shares_base(sweep_cfg.space) else None
        workers = min(sweep_cfg.max_concurrency, len(trials))
        threads = max(1, (os.cpu_count() or 1) // workers)  # the trials share the machine's cores
        logger.info("Sweep: %d trials, %d at a time, %s", len(trials), workers,
                    f"sharing the base {base_dir}" if base_dir else "each training its own base")
        with ThreadPoolTaskRunner(max_workers=workers) as runner:
            futures = [runner.submit(run_trial, {"index": i, "trial": trial, "config_path": config_path,
                                                 "overrides": overrides, "version": version, "base_dir": base_dir,
                                                 "work_dir": str(work_dir), "run_id": run_id, "threads": threads})
                       for i, trial in enumerate(trials)]
            results = [future.result() for future in futures]
        best = best_trial(results)
        _report(results, best, run_id)
        if best is None:
            raise RuntimeError(f"every trial failed; first error: {results[0]['error']}")
        best_overrides = trial_overrides(best["params"])
        logger.info("Best trial %d: eval loss %.4f with %s", best["trial"], best["eval_loss"], best_overrides)
        end_tracking(run_id, "FINISHED")
    except BaseException:
        end_tracking(run_id, "FAILED")
        raise
    retrained = retrain(config_path=config_path, overrides=[*overrides, *best_overrides], approval=approval) \
        if retrain_best else None
    return {"best": best, "trials": results, "best_overrides": best_overrides, "mlflow_run_id": run_id,
            "retrain": retrained}


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.sweep``: run the sweep flow from the command line."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows.sweep", description="Run a hyperparameter sweep.")
    parser.add_argument("--config", help="a YAML config with a sweep section (configs/sweep.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.field=value")
    parser.add_argument("--retrain", action="store_true", help="retrain with the best trial's overrides")
    parser.add_argument("--approval", default="wait", choices=["wait", "auto", "defer", "handoff"])
    args = parser.parse_args(argv)
    try:
        outcome = sweep(config_path=args.config, overrides=args.overrides, retrain_best=args.retrain,
                        approval=args.approval)
    except CompactLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps({"best": outcome["best"], "best_overrides": outcome["best_overrides"]}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
