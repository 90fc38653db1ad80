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
from compactlm.data.sources import read_table
from compactlm.data.sources.generator import generate_support_dataset
from compactlm.errors import DataError
from compactlm.registry import uris
from compactlm.state import StatePaths


def evaluation_frame(data: Path | None, paths: StatePaths, dataset_name: str, rows: int,
                     seed: int = 0) -> tuple[pd.DataFrame, str]:
    """Rows to measure quality on: ``data``, else the state's frozen test split, else generated rows.

    Args:
        data: a CSV/JSONL/Parquet file with ``instruction`` and ``response``; None: the test split.
        paths: the state folder (for the dataset repository).
        dataset_name: the dataset whose test split is used.
        rows: the most rows kept (a seeded sample beyond that); also how many rows are generated.
        seed: sampling seed; generated rows use ``seed + 1``.

    Returns:
        ``(rows with instruction and response, a description of where they came from)``.

    Raises:
        DataError: an unreadable file, a missing ``instruction``/``response`` column, or no complete row.
    """
    if data is not None:

        frame, what = read_table(data), str(data)
    else:
        split = DataLayout(paths.data_repo).split_file(dataset_name, "test")
        if split.is_file():
            frame, what = pd.read_parquet(split), f"test split {split}"
        else:

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
    """Measure every scheme, log the run, register ``register`` schemes; returns a summary for the CLI.

    Args:
        cfg: the pipeline config (dataset name, evaluation seed and ``max_new_tokens``).
        paths: the state folders (MLflow store, data repository).
        model_uri: the source model's registry URI (or None with ``model_dir``).
        model_dir: a source folder instead of a URI.
        schemes: schemes to measure (fp32 is always measured, as the baseline).
        register: schemes to register as ``<source name>-<scheme>`` versions.
        data: evaluation rows (CSV/JSONL/Parquet with instruction and response), else the test split.
        rows: most evaluation rows used for perplexity.
        generate_rows: rows sampled (seeded) for ROUGE-L generations.
        out_dir: folder for the engine folders and the table.
        experiment: the MLflow experiment of the run.

    Returns:
        ``{"markdown", "report", "registered": [{"scheme", "name", "version", "uri"}], "run_id", "table_path"}``.

    Raises:
        DataError: an already-quantized source, or evaluation rows without instruction/response.
        ModelNotFoundError: the source does not exist.
    """
    # Local: mlflow and torch (seconds of imports) stay off `compactlm --help` and the CLI's start-up.
    import mlflow

    from compactlm.registry.lineage import git_commit
    from compactlm.registry.pyfunc import log_engine_model
    from compactlm.registry.store import setup_tracking, tag_version
    from compactlm.serving.engine.loading import load_weights
    from compactlm.serving.quantization_tradeoff import measure_tradeoff

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
                tag_version(model_id, version, {f"quantized.{scheme}": uris.model_uri(name, new_version)})
            registered.append({"scheme": scheme, "name": name, "version": new_version,
                               "uri": uris.model_uri(name, new_version)})
    return {"markdown": markdown, "report": report.to_dict(), "registered": registered, "run_id": run.info.run_id,
            "table_path": str(out_dir / "tradeoff.md")}


def register_quantized(model_uri: str, source_name: str, scheme: str, tags: dict[str, str],
                       description: str = "") -> tuple[str, str]:
    """Register a logged quantized model as a new version of ``<source_name>-<scheme>``.

    Quantized models get a registered model of their own, so they never mix with the reviewed fp32
    versions and their ``champion`` alias.

    Args:
        model_uri: the logged model (``log_engine_model``'s URI).
        source_name: the registered name of the fp32 source.
        scheme: ``int8`` or ``int4`` (``fp32`` engine folders too).
        tags: version tags (lineage and trade-off figures).
        description: the version's description (the trade-off table).

    Returns:
        ``(registered model name, version)``.
    """
    from compactlm.registry.store import register_version  # local: mlflow, as above

    name = f"{source_name}-{scheme}"
    model_description = (f"{scheme.upper()} quantization of {source_name} for the CompactLM fast engine; each "
                         "version is tagged with the source version it was made from and its trade-off figures.")
    version = register_version(model_uri, name, tags, description, model_description=model_description,
                               model_tags={"source.model": source_name, "quantization": scheme})
    return name, version
