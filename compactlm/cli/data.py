"""`compactlm data`: generate, ingest and version datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from compactlm.cli.common import ConfigOption, SetOption, config_home, prepare_runtime, quiet_user_error_tracebacks

app = typer.Typer(help="Generate, ingest and version datasets.", no_args_is_help=True)


@app.command("generate")
def data_generate(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write: .csv, .jsonl or .parquet.")],
    rows: Annotated[int, typer.Option(help="Number of rows.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    bias: Annotated[float, typer.Option(help="Injected outcome bias against age band 65+ (0 = none).")] = 0.0,
) -> None:
    """Write the bundled synthetic customer-support dataset to a file."""
    from compactlm.data.generator import generate_support_dataset
    from compactlm.data.sources import write_table

    frame = generate_support_dataset(n_rows=rows, seed=seed, bias=bias)
    write_table(frame, output)
    typer.echo(f"Wrote {len(frame)} rows ({frame['intent'].nunique()} intents, "
               f"{frame['category'].nunique()} categories) to {output}")


@app.command("ingest")
def data_ingest(
    source: Annotated[str | None, typer.Option(help="CSV/JSONL/Parquet file (default: the generator).")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Ingest a source: clean, split, version with DVC, validate (GE) and audit bias (AIF360)."""
    prepare_runtime(config_home(config, set_, source))
    from flows.ingest import ingest

    quiet_user_error_tracebacks()
    result = ingest(config_path=str(config) if config else None, overrides=set_ or [], source=source)
    typer.echo(json.dumps(result["dataset"], indent=2))
    typer.echo(result["validation"])
