"""`compactlm serve`, `compactlm predict` and `compactlm quantize`: serve, batch-infer and quantize the champion."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from compactlm.cli.common import ConfigOption, SetOption, prepare_runtime
from compactlm.errors import CompactLMError
from compactlm.registry import uris

ModelUriOption = Annotated[str | None, typer.Option(
    "--model-uri", help="Registry URI (default: models:/<registry.model_name>@champion).")]
ModelDirOption = Annotated[Path | None, typer.Option(
    "--model-dir", help="A saved model folder (transformers or engine weights) instead of the registry.")]
HomeOption = Annotated[Path | None, typer.Option(
    "--home", help="State folder with the MLflow store (default: .compactlm, or COMPACTLM_HOME).")]
QuantizeOption = Annotated[str | None, typer.Option(
    "--quantize", "-q", help="fp32 (none), int8 or int4, applied at load (default: serve.quantization).")]


def _setup(config: Path | None, set_: list[str] | None, home: Path | None, overrides: list[str] | None = None):
    """Config (flags over --set over the file), state folder and MLflow URIs; returns (config, state paths)."""
    from compactlm.config import load_config

    if home is not None:
        os.environ["COMPACTLM_HOME"] = str(home)
    cfg = load_config(config, (set_ or []) + (overrides or []))
    paths = prepare_runtime(cfg.home)
    from compactlm.registry.store import point_tracking

    point_tracking(paths)
    return cfg, paths


def _source(cfg, model_uri: str | None, model_dir: Path | None) -> tuple[str | None, str | None]:
    if model_dir is not None:
        return None, str(model_dir)
    if model_uri:
        return model_uri, None
    if cfg.serve.model_dir:
        return None, cfg.serve.model_dir
    return cfg.serve.model_uri or uris.model_uri(cfg.registry.model_name, alias="champion"), None


def _set_threads(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def serve(
    model_uri: ModelUriOption = None,
    model_dir: ModelDirOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default: serve.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: serve.port).")] = None,
    api_key: Annotated[list[str] | None, typer.Option(
        "--api-key", help="Accepted API key (repeatable); COMPACTLM_API_KEYS adds comma-separated keys.")] = None,
    rate_limit: Annotated[float | None, typer.Option(help="Requests/s per key; 0 = off (serve.rate_limit).")] = None,
    quantize: QuantizeOption = None,
    kv_cache_mb: Annotated[float | None, typer.Option(
        help="KV-cache budget in MiB, used as needed; requests past it wait; 0 = no cap (serve.kv_cache_mb).")] = None,
    kv_cache_dtype: Annotated[str | None, typer.Option(
        help="KV-cache element type: float32 or bfloat16, half the memory (serve.kv_cache_dtype).")] = None,
    max_seq_len: Annotated[int | None, typer.Option(
        help="Serving context: prompt + max_tokens, in tokens; 0 = the model's (serve.max_seq_len).")] = None,
    log_prompts: Annotated[bool, typer.Option("--log-prompts", help="Log prompt and completion text.")] = False,
    allow_unauthenticated: Annotated[bool, typer.Option(
        "--allow-unauthenticated",
        help="Serve without API keys on a non-loopback --host (serve.allow_unauthenticated).")] = False,
    home: HomeOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Serve the model over an OpenAI-compatible HTTP API (reloads when the alias moves).
    \f
    Raises:
        ConfigError: a non-loopback ``--host`` without API keys or ``--allow-unauthenticated``.
        ModelNotFoundError: the registry URI names no model, version or alias.
        CompactLMError: ``--model-dir`` is not a folder.
        TrafficStoreError: the traffic store (``serve.traffic_db``, COMPACTLM_TRAFFIC_DB) cannot be opened.
    """
    flags = {"host": host, "port": port, "rate_limit": rate_limit, "quantization": quantize,
             "kv_cache_mb": kv_cache_mb, "kv_cache_dtype": kv_cache_dtype, "max_seq_len": max_seq_len}
    # Text as a JSON string, which YAML reads back verbatim (unquoted, `--host ::` would parse as a mapping).
    overrides = [f"serve.{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in flags.items() if v is not None]
    if log_prompts:
        overrides.append("serve.redact_prompts=false")
    if allow_unauthenticated:
        overrides.append("serve.allow_unauthenticated=true")
    cfg, paths = _setup(config, set_, home, overrides)
    from compactlm.serving.http.security import check_exposure, keys_from_env

    keys = [k for k in [*(api_key or []), *keys_from_env()] if k.strip()]  # blank --api-key values are no keys
    check_exposure(cfg.serve.host, keys, cfg.serve.allow_unauthenticated)  # before anything loads
    uri, directory = _source(cfg, model_uri, model_dir)
    from dataclasses import replace

    serve_cfg = replace(cfg.serve, model_uri=uri, model_dir=directory)
    if uri is not None:
        from compactlm.serving.engine.loading import resolve_version

        resolve_version(uri)  # fail now, with one line, if there is nothing to serve
    elif not Path(directory).is_dir():
        raise CompactLMError(f"model folder {directory} does not exist")
    else:
        from compactlm.serving.engine.artifact import MANIFEST, is_engine_artifact

        if not is_engine_artifact(directory) and not (Path(directory) / "config.json").is_file():
            raise CompactLMError(f"model folder {directory} holds neither a saved transformers model (config.json) "
                                 f"nor engine weights ({MANIFEST})")
    import uvicorn

    from compactlm.serving.engine.kv_cache import limit_heap_retention
    from compactlm.serving.http.app import create_app
    from compactlm.serving.http.logs import configure_json_logging
    from compactlm.serving.traffic import TrafficStore, resolve_traffic_url

    traffic_url = resolve_traffic_url(serve_cfg.traffic_db, paths.traffic_db)
    store = TrafficStore.open(traffic_url) if traffic_url else None  # fail now, with one line, if unreachable
    _set_threads(serve_cfg.threads)
    limit_heap_retention()  # before the model is read: freed load buffers go back to the OS
    configure_json_logging()
    app = create_app(serve_cfg, api_keys=keys, traffic=store)
    typer.echo(f"Serving {uri or directory} on http://{serve_cfg.host}:{serve_cfg.port}/v1 "
               f"({'API keys required' if keys else 'no API keys'}; tracking {paths.tracking_uri()}; traffic "
               f"{store.display_url if store else 'not recorded (serve.traffic_db: none)'})", err=True)
    uvicorn.run(app, host=serve_cfg.host, port=serve_cfg.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)


def predict(
    input_path: Annotated[Path, typer.Option("--input", "-i", help="JSONL: instruction | prompt | messages.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL results (written atomically).")],
    model_uri: ModelUriOption = None,
    model_dir: ModelDirOption = None,
    max_tokens: Annotated[int | None, typer.Option(help="Default max_tokens (serve.max_new_tokens).")] = None,
    temperature: Annotated[float, typer.Option(help="Default temperature (0 = greedy).")] = 0.0,
    quantize: QuantizeOption = None,
    home: HomeOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Batch inference: one completion per JSONL line, with a progress bar."""
    overrides = [f"serve.quantization={quantize}"] if quantize else []
    cfg, _ = _setup(config, set_, home, overrides)
    uri, directory = _source(cfg, model_uri, model_dir)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from compactlm.serving.batch_predict import predict as run_predictions
    from compactlm.serving.batch_predict import read_requests, write_jsonl_atomic
    from compactlm.serving.engine.loading import load_model

    _set_threads(cfg.serve.threads)
    serve_cfg = cfg.serve
    loaded = load_model(uri, directory, serve_cfg.quantization, serve_cfg.max_batch_size, serve_cfg.max_seq_len or None,
                        serve_cfg.speculative_tokens, serve_cfg.kv_cache_mb, serve_cfg.kv_cache_dtype)
    items = read_requests(input_path, loaded.engine, max_tokens or cfg.serve.max_new_tokens, temperature)
    start = time.perf_counter()
    columns = (TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("predict", total=len(items))
        rows = run_predictions(loaded.engine, items, on_done=lambda: progress.advance(task))
    write_jsonl_atomic(output, rows)
    seconds = time.perf_counter() - start
    tokens = sum(r["completion_tokens"] for r in rows)
    typer.echo(f"{len(rows)} completions ({tokens} tokens, {tokens / seconds:,.0f} tokens/s) from "
               f"{loaded.source} -> {output}")


def quantize(
    model_uri: ModelUriOption = None,
    model_dir: ModelDirOption = None,
    schemes: Annotated[str, typer.Option(help="Schemes to measure, comma-separated.")] = "int8,int4",
    register: Annotated[str, typer.Option(
        help="Schemes to register as <name>-<scheme> versions, comma-separated ('' = none).")] = "int8",
    data: Annotated[Path | None, typer.Option(
        help="Evaluation rows (CSV/JSONL/Parquet with instruction, response); default: the test split.")] = None,
    rows: Annotated[int, typer.Option(help="Most evaluation rows used for perplexity.")] = 2000,
    generate_rows: Annotated[int, typer.Option(help="Rows sampled for ROUGE-L generations.")] = 200,
    output: Annotated[Path | None, typer.Option(help="Folder for the engine weights and the table.")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment of the quantization run.")] = "compactlm-quantize",
    home: HomeOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Quantize the model, print the trade-off table, log it to MLflow and register the quantized versions.
    \f
    Raises:
        ConfigError: an unknown scheme in ``--schemes`` or ``--register``.
        CompactLMError: a ``--register`` scheme missing from ``--schemes`` (fp32 needs none).
    """
    cfg, paths = _setup(config, set_, home)
    uri, directory = _source(cfg, model_uri, model_dir)
    from compactlm.serving.engine.quantize import normalize_scheme
    from compactlm.serving.quantize_and_register import quantize_and_register

    wanted = tuple(dict.fromkeys(normalize_scheme(s) for s in schemes.split(",") if s.strip()))
    to_register = tuple(dict.fromkeys(normalize_scheme(s) for s in register.split(",") if s.strip()))
    missing = [s for s in to_register if s not in wanted and s != "fp32"]
    if missing:
        raise CompactLMError(f"--register {','.join(missing)}: also pass it in --schemes")
    _set_threads(cfg.serve.threads)
    out = output or paths.runs / f"quantize-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = quantize_and_register(cfg, paths, uri, directory, wanted, to_register, data, rows, generate_rows,
                                    out, experiment)
    typer.echo(summary["markdown"])
    for entry in summary["registered"]:
        typer.echo(f"registered {entry['name']} v{entry['version']} ({entry['uri']})")
    typer.echo(f"MLflow run {summary['run_id']} in experiment {experiment!r}; table: {summary['table_path']}")
