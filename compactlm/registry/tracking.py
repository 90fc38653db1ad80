"""MLflow runs of the pipeline: the flow's run, its nested stage runs, and the dataset each one read.

A flow opens one MLflow run (``start_flow_run``: the whole config as params, the Prefect flow run and
git commit as tags) and closes it FINISHED or FAILED (``end_run``); every step re-opens it by id in
its own thread (``reopen_run``), optionally as a nested child run. ``log_dataset`` records the DVC
version of the data as tags and each split as an MLflow dataset input.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import mlflow

from compactlm.data.versioning import DatasetVersion, read_split
from compactlm.registry.lineage import git_commit
from compactlm.registry.store import setup_tracking
from compactlm.state import state_paths


@dataclass(frozen=True)
class FlowRun:
    """The MLflow run of one flow run, and where to see it."""

    run_id: str
    experiment_id: str
    ui_link: str | None  # the run's page on an MLflow server (None with the local SQLite store)


def _params(sections: dict[str, Any]) -> dict[str, str]:
    """``section.field`` -> value as text, cut to 500 characters (MLflow's limit on a param value)."""
    return {f"{section}.{key}": str(value)[:500] for section, values in sections.items()
            for key, value in values.items()}


def trigger_tags(trigger: dict[str, Any] | None) -> dict[str, str]:
    """The MLflow tags saying what started a run: ``triggered_by`` (``schedule-or-manual`` when nothing did),
    ``trigger.event``, ``trigger.event_id``, ``trigger.reasons`` (comma-separated) and ``trigger.<figure>``.

    Args:
        trigger: the ``trigger`` parameter a deployment trigger fills from its event (see prefect.yaml):
            ``{"event", "event_id", "resource", "payload": {...}}``, or None.
    """
    if not trigger:
        return {"triggered_by": "schedule-or-manual"}
    payload = trigger.get("payload") or {}
    tags = {"triggered_by": str(trigger.get("event") or "unknown event"),
            "trigger.event_id": str(trigger.get("event_id") or ""),
            "trigger.resource": str(trigger.get("resource") or "")}
    if payload.get("reasons"):
        tags["trigger.reasons"] = ",".join(str(r) for r in payload["reasons"])
    for key, value in (payload.get("figures") or {}).items():
        tags[f"trigger.{key}"] = f"{value:.4f}" if isinstance(value, float) else str(value)
    for key in ("source", "monitor_mlflow_run_id", "model_version"):
        if payload.get(key) is not None:
            tags[f"trigger.{key}"] = str(payload[key])[:500]
    return tags


def start_flow_run(config: Any, flow_run_id: str, flow_name: str, experiment: str | None = None,
                   trigger: dict[str, Any] | None = None) -> FlowRun:
    """Create the flow's MLflow run: the whole config as params, and what triggered it as tags.

    Args:
        config: the ``PipelineConfig`` (params: ``section.field`` -> value, cut to 500 characters).
        flow_run_id: the Prefect flow run id (tag ``prefect.flow_run_id``; the run is named after it).
        flow_name: the Prefect flow name (tag ``prefect.flow_name``).
        experiment: the MLflow experiment (None: ``config.registry.experiment``).
        trigger: the event that started the run (``trigger_tags``; also logged as ``trigger.json``), or None.
    """
    paths = state_paths(config.home)
    experiment_id = setup_tracking(paths, experiment or config.registry.experiment)
    sections = {name: values for name, values in config.to_dict().items() if isinstance(values, dict)}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{flow_name}-{flow_run_id[:8]}") as run:
        mlflow.log_params(_params(sections))
        mlflow.set_tags({"prefect.flow_run_id": flow_run_id, "prefect.flow_name": flow_name,
                         "config_hash": config.config_hash(), "git_commit": git_commit(), **trigger_tags(trigger)})
        if trigger:
            mlflow.log_dict(trigger, "trigger.json")
        run_id = run.info.run_id
    tracking = paths.tracking_uri()
    link = f"{tracking.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}" if tracking.startswith("http") \
        else None
    return FlowRun(run_id, experiment_id, link)


def end_run(run_id: str, status: str) -> None:
    """Close a run as ``FINISHED`` or ``FAILED``."""
    mlflow.MlflowClient().set_terminated(run_id, status=status)


@contextmanager
def reopen_run(run_id: str, child: str | None = None) -> Iterator[Any]:
    """Re-open the flow's MLflow run in this thread (optionally a nested child run named ``child``).

    Yields:
        The active ``mlflow.ActiveRun`` (the child when one was asked for).
    """
    with mlflow.start_run(run_id=run_id) as parent:
        if child is None:
            yield parent
        else:
            with mlflow.start_run(run_name=child, nested=True, experiment_id=parent.info.experiment_id) as nested:
                yield nested


def log_splits(version: DatasetVersion, model_id: str | None = None) -> None:
    """Log each DVC-versioned split as an MLflow dataset input of the active run.

    Args:
        version: the dataset version (its md5 is the datasets' digest and its remote their source).
        model_id: a logged model to link the inputs to (MLflow 3 model inputs: lineage on the registered
            version); None: the run only.
    """
    from mlflow.entities import LoggedModelInput

    with warnings.catch_warnings():
        # MLflow guesses a source type from the URI and warns about integer columns; neither matters here.
        warnings.simplefilter("ignore", UserWarning)
        for split, context in (("train", "training"), ("val", "validation"), ("test", "testing")):
            dataset = mlflow.data.from_pandas(read_split(version.path, split),
                                              source=f"{version.remote}#{version.md5}",
                                              name=f"{version.name}-{split}", digest=version.md5[:36])
            mlflow.log_input(dataset, context=context,
                             model=LoggedModelInput(model_id=model_id) if model_id else None)


def log_dataset(version: DatasetVersion, run_id: str) -> None:
    """Record the DVC version on run ``run_id``: tags (version, remote, name) and each split as an input."""
    with reopen_run(run_id):
        mlflow.set_tags({"data_version": version.md5, "data_remote": version.remote, "dataset": version.name})
        log_splits(version)


@contextmanager
def stage_run(run_id: str, name: str, sections: dict[str, Any], data_version: str) -> Iterator[Any]:
    """A nested run named ``name`` under the flow's run, for one training stage.

    Args:
        run_id: the flow's run.
        name: the stage's run name.
        sections: the config sections that decide the stage (dataclasses), logged as ``section.field`` params.
        data_version: the DVC md5 of the data it trains on (tag ``data_version``).
    """
    with reopen_run(run_id, child=name) as nested:
        mlflow.log_params(_params({section: asdict(cfg) for section, cfg in sections.items()}))
        mlflow.set_tags({"stage": name, "data_version": data_version})
        yield nested


def log_training_summary(summary: Any) -> None:
    """A stage's final figures on the active run, beside the Trainer's step curves.

    Args:
        summary: a ``TrainSummary`` (losses, seconds, trainable parameters, tokens/s).
    """
    mlflow.log_metrics({"final_train_loss": summary.train_loss, "train_seconds": summary.seconds,
                        "trainable_parameters": summary.trainable_parameters,
                        "train_tokens_per_second": summary.tokens_per_second,
                        **({"final_eval_loss": summary.eval_loss} if summary.eval_loss is not None else {})})


def log_evaluation(result: Any, run_id: str, name: str, metric_prefix: str) -> None:
    """An evaluation's metrics (``<metric_prefix><metric>``) and output files (``evaluation/<name>/``) on a run.

    Args:
        result: an ``EvalResult``.
        run_id: the flow's run.
        name: the evaluation's name (``evaluation``, ``champion-rescore``).
        metric_prefix: ``test_`` for the candidate, ``champion_`` for the re-scored champion.
    """
    with reopen_run(run_id):
        mlflow.log_metrics({f"{metric_prefix}{k}": v for k, v in result.metrics.items()})
        for path in result.files.values():
            mlflow.log_artifact(path, artifact_path=f"evaluation/{name}")


def log_baseline(baseline: Any, result: Any, run_id: str) -> str:
    """Log the run's baseline as an MLflow scikit-learn model (``baseline``) with its ``baseline_*`` metrics.

    Args:
        baseline: a fitted ``compactlm.evaluation.baselines.Baseline``.
        result: its ``EvalResult`` on the test split.
        run_id: the flow's run.

    Returns:
        The logged model's URI (``models:/m-...``): ``mlflow.register_model(uri, name)`` registers it.
    """
    import mlflow.sklearn  # the flavour module is not imported with mlflow itself
    import sklearn
    from mlflow.models import infer_signature


    with reopen_run(run_id):
        mlflow.log_metrics({f"baseline_{k}": v for k, v in result.metrics.items()})
        mlflow.set_tags({"baseline": baseline.name, "baseline.description": baseline.description,
                         **({"baseline.oos_threshold": f"{baseline.oos_threshold:.6g}"}
                            if baseline.oos_threshold is not None else {})})
        example = baseline.input_example()
        answers = baseline.predict(example)
        # A retrieval baseline stores its training vectors (a SciPy sparse matrix); MLflow's skops format
        # only loads the types named here besides scikit-learn's own.
        info = mlflow.sklearn.log_model(baseline.model, name="baseline", input_example=example,
                                        signature=infer_signature(example, answers),
                                        pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
                                        skops_trusted_types=["scipy.sparse._csr.csr_matrix"])
    return info.model_uri
