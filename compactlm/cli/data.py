"""`compactlm data`: generate, ingest, list and restore dataset versions; purge cached source copies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from compactlm.cli.common import (
    ConfigOption,
    SetOption,
    config_home,
    flow_log_path,
    load_state,
    prepare_runtime,
    quiet_user_error_tracebacks,
    send_library_output_to,
    terminal,
)

app = typer.Typer(help="Generate, ingest and version datasets.", no_args_is_help=True)


@app.command("generate")
def data_generate(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write: .csv, .jsonl or .parquet.")],
    rows: Annotated[int, typer.Option(help="Number of rows.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    bias: Annotated[float, typer.Option(help="Injected outcome bias against age band 65+ (0 = none).")] = 0.0,
) -> None:
    """Write the bundled synthetic customer-support dataset to a file."""
    from compactlm.data.sources import write_table
    from compactlm.data.sources.generator import generate_support_dataset

    frame = generate_support_dataset(n_rows=rows, seed=seed, bias=bias)
    write_table(frame, output)
    typer.echo(f"Wrote {len(frame)} rows ({frame['intent'].nunique()} intents, "
               f"{frame['category'].nunique()} categories) to {output}")


def _version_summary(data_repo: Path, dataset: dict) -> dict:
    """The ingest summary recorded with this dataset version (rows read, kept, quarantined, warnings)."""
    from compactlm.data.report import ingest_summary
    from compactlm.data.versioning import version_records

    record = next((r for r in version_records(data_repo, dataset["name"]) if r["md5"] == dataset["md5"]), {})
    return ingest_summary(record)


def _task_overrides(set_: list[str] | None, task: str | None) -> list[str]:
    return (set_ or []) + ([f"data.task={task}"] if task else [])


@app.command("ingest")
def data_ingest(
    source: Annotated[str | None, typer.Option(
        help="A file, a folder, s3://bucket/prefix or hf:NAME_OR_PATH (default: the configured source).")] = None,
    task: Annotated[str | None, typer.Option(
        help="instruction, chat, classification, summarization or pretraining (a shortcut for data.task).")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Show Prefect's and MLflow's logs here instead of in a log file.")] = False,
) -> None:
    """Ingest a source: clean, split, version with DVC, validate (GE), report and audit bias (AIF360).
    \f
    The source is checked (path, file types, headers) before Prefect starts. Without ``--verbose`` the
    flow's logs go to ``<home>/logs/ingest-*.log``, whose path is printed (and named in an error).
    """
    from compactlm.errors import CompactLMError

    overrides = _task_overrides(set_, task)
    paths = prepare_runtime(config_home(config, overrides, source))
    from compactlm.data.report import summary_lines
    from flows.ingest import ingest

    quiet_user_error_tracebacks()
    log = None if verbose else send_library_output_to(flow_log_path(paths.home, "ingest"))
    try:
        result = ingest(config_path=str(config) if config else None, overrides=overrides, source=source)
    except CompactLMError as exc:
        if log is not None:
            exc.args = (f"{exc} (flow log: {log})",)
        raise
    out = terminal()
    summary = _version_summary(paths.data_repo, result["dataset"])
    typer.echo(json.dumps({**result["dataset"], "ingest": summary}, indent=2), file=out)
    for line in summary_lines(summary):
        typer.echo(line, file=out)
    if not result["changed"]:
        typer.echo(f"No source file changed: reused version {result['dataset']['md5']} (no new DVC version).",
                   file=out)
    typer.echo(result["validation"], file=out)
    if result["data_docs"]:
        typer.echo(f"Data Docs: {result['data_docs']}", file=out)
    if log is not None:
        typer.echo(f"Flow log: {log}", file=out)


def _data_state(config: Path | None, set_: list[str] | None):
    """(state paths, data config) of the configured state folder, with nothing started."""
    cfg, paths = load_state(config, set_)
    return paths, cfg.data


@app.command("versions")
def data_versions(
    name: Annotated[str | None, typer.Option(help="Dataset name (default: data.dataset_name).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """List the recorded versions of a dataset, oldest first (md5, date, rows per split)."""
    from compactlm.data.versioning import current_md5, dataset_names, version_records

    paths, data = _data_state(config, set_)
    name = name or data.dataset_name
    records = version_records(paths.data_repo, name)
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    others = [other for other in dataset_names(paths.data_repo) if other != name]
    if not records:
        typer.echo(f"No version of dataset {name} is recorded in {paths.data_repo}."
                   + (f" Datasets there: {', '.join(others)} (name one with --name NAME)." if others else ""))
        return
    current = current_md5(paths.data_repo, name)
    typer.echo(f"{'':2}{'md5':34}{'created':27}{'task':13}{'train':>8}{'val':>8}{'test':>8}  source")
    for record in records:
        rows = record.get("rows", {})
        mark = "* " if record["md5"] == current else "  "
        typer.echo(f"{mark}{record['md5']:34}{record.get('created', ''):27}{record.get('task', ''):13}"
                   f"{rows.get('train', ''):>8}{rows.get('val', ''):>8}{rows.get('test', ''):>8}  "
                   f"{record.get('source', '')}")
    if others:
        typer.echo(f"Other datasets here: {', '.join(others)} (--name NAME)", err=True)


@app.command("checkout")
def data_checkout(
    version: Annotated[str, typer.Argument(help="The version's md5 (a unique prefix is enough).")],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: data.dataset_name).")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Restore a recorded dataset version byte for byte (pulled from the DVC remote when not cached)."""
    from compactlm.data.versioning import checkout_version, resolve_version

    paths, data = _data_state(config, set_)
    name = name or data.dataset_name
    full = resolve_version(paths.data_repo, name, version)
    folder = checkout_version(paths.data_repo, name, full, paths.dvc_remote(data.dvc_remote))
    typer.echo(f"Dataset {name} version {full} restored in {folder}")


@app.command("purge")
def data_purge(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Delete the cached copies of source files (<home>/data/cache/raw); dataset versions are kept."""
    from compactlm.data.layout import DataLayout
    from compactlm.data.raw_files import purge_raw_cache

    paths, _ = _data_state(config, set_)
    folder = DataLayout(paths.data_repo).raw_cache_dir
    n_files, size = purge_raw_cache(folder)
    typer.echo(f"Deleted {n_files} cached source file(s) ({size:,} bytes) from {folder}; dataset versions are kept "
               "(the next ingest reads changed files again).")
