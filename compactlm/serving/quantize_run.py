"""`compactlm quantize` end to end: source model -> trade-off table -> MLflow run -> registered quantized versions.

The MLflow run (experiment ``compactlm-quantize`` by default) holds the table as ``tradeoff.md`` and
``tradeoff.json``, one metric per scheme and figure (``int8.size_ratio``, ``int8.perplexity_change_pct``...),
the source as parameters, and each registered scheme as a logged pyfunc model. A registered scheme
becomes a new version of ``<source name>-<scheme>`` tagged with its source version and its figures;
the source version gets a ``quantized.<scheme>`` tag pointing back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from compactlm.config import PipelineConfig
from compactlm.data.layout import DataLayout
from compactlm.errors import DataError
from compactlm.state import StatePaths


def evaluation_frame(data: Path | None, paths: StatePaths, dataset_name: str, rows: int,
                     seed: int = 0) -> tuple[pd.DataFrame, str]:
    """Rows to measure quality on: ``data``, else the state's frozen test split, else generated rows."""
    if data is not None:
        from compactlm.data.sources import read_table

        frame, what = read_table(data), str(data)
    else:
        split = DataLayout(paths.data_repo).split_file(dataset_name, "test")
        if split.is_file():
            frame, what = pd.read_parquet(split), f"test split {split}"
        else:
            from compactlm.data.sources.generator import generate_support_dataset

            frame = generate_support_dataset(n_rows=rows, seed=seed + 1)
            what = f"{rows} generated rows (seed {seed + 1})"
    missing = {"instruction", "response"} - set(frame.columns)
    if missing:
        raise DataError(f"{what}: missing column(s) {', '.join(sorted(missing))}")
    frame = frame.dropna(subset=["instruction", "response"])
    if frame.empty:
        raise DataError(f"{what}: no rows with both instruction and response")
    if len(frame) > rows:
        frame = frame.sample(n=rows, random_state=seed)
    return frame.reset_index(drop=True), what


def _source_run_id(name: str, version: str | None) -> str:
    if version is None:
        return ""
    from mlflow import MlflowClient

    return MlflowClient().get_model_version(name, version).run_id or ""


def quantize_and_register(cfg: PipelineConfig, paths: StatePaths, model_uri: str | None, model_dir: str | None,
                          schemes: tuple[str, ...], register: tuple[str, ...], data: Path | None, rows: int,
                          generate_rows: int, out_dir: Path, experiment: str) -> dict[str, Any]:
    """Measure every scheme, log the run, register ``register`` schemes; returns a summary for the CLI."""
    import mlflow

    from compactlm.registry.registry import git_commit, setup_tracking, tag_version
    from compactlm.serving.loading import load_weights
    from compactlm.serving.mlflow_model import log_engine_model, register_quantized
    from compactlm.serving.tradeoff import measure_tradeoff

    weights, tokenizer, model_id, version, source = load_weights(model_uri, model_dir)
    if weights.scheme != "fp32":
        raise DataError(f"{source} is already quantized ({weights.scheme}); quantize the fp32 model")
    frame, frame_what = evaluation_frame(data, paths, cfg.data.dataset_name, rows, cfg.eval.seed)
    source_info = {"model": model_id, "version": version, "uri": source}
    report = measure_tradeoff(weights, tokenizer, frame, out_dir, schemes=schemes, generate_rows=generate_rows,
                              max_new_tokens=cfg.eval.max_new_tokens, seed=cfg.eval.seed, source=source_info)
    report.notes.append(f"Source: {source}" + (f" (version {version})" if version else "") + f"; data: {frame_what}.")
    markdown = report.to_markdown()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tradeoff.md").write_text(markdown + "\n", encoding="utf-8")
    (out_dir / "tradeoff.json").write_text(report.to_json() + "\n", encoding="utf-8")

    experiment_id = setup_tracking(paths, experiment)
    registered = []
    source_run, commit = _source_run_id(model_id, version), git_commit()
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"quantize-{model_id}") as run:
        mlflow.log_params({"source_model": model_id, "source_version": version or "", "source_uri": source,
                           "schemes": ",".join(r.scheme for r in report.results), "eval_rows": report.eval_rows,
                           "generated_rows": report.generated_rows, "threads": report.threads,
                           "eval_data": frame_what[:250]})
        mlflow.set_tags({"git_commit": commit, "source.run_id": source_run})
        for result in report.results:
            mlflow.log_metrics({f"{result.scheme}.{key}": float(getattr(result, key)) for key in (
                "size_bytes", "size_ratio", "tokens_per_s_batch1", "tokens_per_s_batched", "perplexity",
                "perplexity_change_pct", "rouge_l", "rouge_l_change_pct")})
        mlflow.log_artifact(str(out_dir / "tradeoff.md"))
        mlflow.log_artifact(str(out_dir / "tradeoff.json"))
        by_scheme = report.by_scheme()
        for scheme in register:
            result = by_scheme[scheme]
            uri = log_engine_model(result.directory, name=scheme)
            tags = {"source.model": model_id, "source.version": version or "", "source.uri": source,
                    "source.run_id": source_run, "quantization": scheme, "git_commit": commit,
                    "tradeoff_run_id": run.info.run_id, "size.bytes": result.size_bytes,
                    "size.ratio": f"{result.size_ratio:.4f}",
                    "quality.perplexity_change_pct": f"{result.perplexity_change_pct:.4f}",
                    "quality.rouge_l_change_pct": f"{result.rouge_l_change_pct:.4f}"}
            name, new_version = register_quantized(uri, model_id, scheme, tags, description=markdown)
            if version is not None:
                tag_version(model_id, version, {f"quantized.{scheme}": f"models:/{name}/{new_version}"})
            registered.append({"scheme": scheme, "name": name, "version": new_version,
                               "uri": f"models:/{name}/{new_version}"})
    return {"markdown": markdown, "report": report.to_dict(), "registered": registered, "run_id": run.info.run_id,
            "table_path": str(out_dir / "tradeoff.md")}
