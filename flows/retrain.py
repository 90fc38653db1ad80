"""The retrain flow: ingest -> validate -> bias audit -> train -> evaluate -> gate -> register -> smoke -> review.

The training stages follow the task shape (``data.task``): instruction/chat and summarization train a
decoder (pretrained preset or ``model.base``) then fine-tune it (LoRA by default); classification an
encoder (optionally MLM-pretrained) into a sequence classifier; a seq2seq base fine-tunes directly;
a pretraining corpus pretrains a base language model, gated on bits per character.

Only wiring and decisions live here; every step is a task over the ``compactlm`` library. A critical
data-quality failure, a bias violation (when configured to fail) or a failed gate stops the flow
before anything is registered.
"""

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from compactlm.config import load_run_config
from compactlm.errors import BiasViolation, SmokeTestFailed
from compactlm.registry.uris import model_uri
from compactlm.shapes import get_shape
from compactlm.state import configure_environment
from compactlm.training.stages import chain_stages, compares_with_base, plan_retrain
from flows.ingest import check_dataset
from flows.review import ApprovalMode, request_review
from tasks.data import ingest_dataset
from tasks.evaluate import decide_gate, evaluate_candidate, rescore_champion, score_base, score_baseline
from tasks.registry import find_champion, mark_challenger, register_candidate, smoke_test_version, summarize_run
from tasks.tracking import log_dataset, tracked_flow_run
from tasks.train import train_stage


@flow(name="retrain")
def retrain(config_path: str | None = None, overrides: list[str] | None = None, source: str | None = None,
            approval: ApprovalMode = "wait", trigger: dict[str, Any] | None = None) -> dict[str, Any]:
    """Retrain CompactLM from raw data to a reviewed model in the MLflow registry.

    Args:
        config_path: a YAML config (see configs/); the embedded defaults when empty.
        overrides: ``section.field=value`` strings, e.g. ``["train.epochs=1", "data.n_rows=2000"]``.
        source: the data to train on instead of the bundled generator: a file (CSV, JSONL, Parquet, .txt),
            a folder of them, s3:// or hf: (``data.source``).
        approval: ``auto`` approve (demo/CI); ``handoff`` to the ``promote/review`` deployment, which
            suspends until a reviewer answers (the deployed default); ``wait`` pause this run for the
            review form; ``defer`` leave the review pending (MLflow tag, promote flow or CLI).
    """
    logger = get_run_logger()
    config = load_run_config(config_path, overrides, source)
    paths = configure_environment(config.home)
    with tracked_flow_run(config, "retrain") as run_id:
        work_dir = str(paths.runs / run_id)
        shape = get_shape(config.data.task)
        task = shape.name
        planned = plan_retrain(config)  # a config the flow cannot train fails before any data work
        version = ingest_dataset(config.data, str(paths.home), run_id, bias=config.bias)
        log_dataset(version, run_id)
        quality, bias = check_dataset(version, config, run_id)
        if bias.audited and not bias.passed and config.bias.fail_on_violation:
            raise BiasViolation(f"bias audit failed on {config.bias.protected_attribute}: {'; '.join(bias.reasons)}")

        baseline = None
        if config.eval.baseline:
            baseline = score_baseline(version, task, run_id, config.classifier, config.eval)
        stages = chain_stages(planned, config.model.base,
                              lambda stage, base: train_stage(stage, config, version, work_dir, run_id, base))
        tuned = list(stages.values())[-1]
        candidate = evaluate_candidate(tuned.output_dir, version, config.eval, config.model.max_seq_len, run_id, task)
        model_name = config.registry.model_name
        champion_version = find_champion(model_name)
        champion = None
        if champion_version is not None:
            champion = rescore_champion(model_uri(model_name, champion_version), version, config.eval,
                                        config.model.max_seq_len, run_id, work_dir, task)
        base = None
        if compares_with_base(config):  # fine-tuning must beat the pretrained model it started from
            base = score_base(config.model.base, version, config.eval, config.model.max_seq_len, run_id, work_dir,
                              task)
        gate = decide_gate(candidate, champion, champion_version, config.gate, run_id, baseline, base,
                           config.model.base)

        registered, review = None, {"status": "not reviewed: the gate failed", "approved": False}
        if gate.passed:
            registered = register_candidate(tuned.output_dir, config, version, quality, bias, gate, candidate,
                                            stages, run_id, str(flow_run.id))
            smoke = smoke_test_version(model_name, registered, paths.tracking_uri(), run_id, shape.example_input)
            if not smoke.passed:
                raise SmokeTestFailed(f"version {registered} failed its smoke test (no alias moved): {smoke.error}")
            mark_challenger(model_name, registered, config.registry.approval_timeout_s)
            review = request_review(model_name, registered, approval, config.registry.approval_timeout_s,
                                    context_markdown=gate.to_markdown())
        else:
            logger.warning("Gate failed: nothing registered, champion unchanged. See the 'gate' artifact.")
        return summarize_run(config, version.md5, candidate.metrics, gate, registered, review, run_id, baseline)
