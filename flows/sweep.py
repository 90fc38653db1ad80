"""The sweep flow: train one trial per point of a search space, pick the best by validation loss, retrain it.

    python -m flows.sweep --config configs/sweep.yaml [--set section.field=value ...] [--retrain]

Each trial is a Prefect task (``sweep-trial``) that trains in a fresh process through
``compactlm.training.launch`` (isolated memory and RNG, so concurrent trials stay reproducible) into a
nested MLflow run under the sweep's run. At most ``max_concurrency`` trials run at once: they are
submitted to a ``ThreadPoolTaskRunner`` with that many workers (each worker waits on its trial's
process). When only fine-tuning fields vary, the base is trained once and every trial starts from
it. With ``retrain_best`` the best trial's overrides feed the ``retrain`` flow as a subflow.
"""

import json
import os
import sys
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from compactlm.config import SweepConfig, load_run_config
from compactlm.errors import CompactLMError
from compactlm.state import configure_environment
from compactlm.training.sweep import best_trial, expand_space, shares_base, trial_overrides, validate_trials
from flows.retrain import retrain
from flows.review import ApprovalMode
from tasks.data import ingest_dataset
from tasks.sweep import report_sweep, run_trial, train_shared_base
from tasks.tracking import log_dataset, tracked_flow_run


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
    config = load_run_config(config_path, overrides)
    chosen = config.sweep
    sweep_cfg = SweepConfig(method=method or chosen.method, space=space if space is not None else chosen.space,
                            n_trials=chosen.n_trials if n_trials is None else n_trials,
                            max_concurrency=max_concurrency or chosen.max_concurrency, seed=chosen.seed)
    trials = expand_space(sweep_cfg)
    validate_trials(config_path, overrides, trials)  # every value checked before any compute
    paths = configure_environment(config.home)
    with tracked_flow_run(config, "sweep") as run_id:
        work_dir = paths.runs / run_id
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
        report_sweep(results, best, run_id)
        if best is None:
            raise RuntimeError(f"every trial failed; first error: {results[0]['error']}")
        best_overrides = trial_overrides(best["params"])
        logger.info("Best trial %d: eval loss %.4f with %s", best["trial"], best["eval_loss"], best_overrides)
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
