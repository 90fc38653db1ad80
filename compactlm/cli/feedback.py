"""`compactlm feedback`: corrected answers from the traffic store, as rows the ingest turns into a dataset version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from compactlm.cli.common import ConfigOption, SetOption, load_state

app = typer.Typer(help="Feedback on served answers (the traffic store).", no_args_is_help=True)


@app.command("export")
def feedback_export(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write (atomically).")],
    since: Annotated[str | None, typer.Option(
        help="Only feedback from this ISO 8601 date or time on (UTC unless it says otherwise).")] = None,
    db: Annotated[str | None, typer.Option(
        "--db", help="The store's SQLAlchemy URL (default: COMPACTLM_TRAFFIC_DB, else serve.traffic_db).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Write corrected answers as instruction/response rows with their provenance (JSON lines).
    \f
    Each row: instruction (the prompt sent with the feedback, else the stored prompt text), response (the
    corrected answer), intent ``feedback``, source ``feedback``, request_id, model_name, model_version,
    feedback_id, created_at, reason. Ingest the file, or use ``--source feedback:`` directly.

    Raises:
        CompactLMError: a bad ``--since``, or the store is off (``serve.traffic_db: none`` without ``--db``).
        TrafficStoreError: the store is missing, unreachable or holds no traffic tables.
    """
    from compactlm.errors import CompactLMError
    from compactlm.serving.traffic.export import export_corrections, parse_since
    from compactlm.serving.traffic.store import resolve_traffic_url

    start = parse_since(since) if since is not None else None
    cfg, paths = load_state(config, set_)
    url = db or resolve_traffic_url(cfg.serve.traffic_db, paths.traffic_db)
    if url is None:
        raise CompactLMError("the traffic store is off (serve.traffic_db: none); pass --db URL")
    result = export_corrections(url, out, start)
    if as_json:
        typer.echo(json.dumps(result))
        return
    skipped = result["skipped_without_prompt"]
    typer.echo(f"Wrote {result['rows']} row(s) to {result['path']} from {result['store']}"
               + (f"; {skipped} corrected answer(s) skipped: no prompt text (send 'prompt' with the feedback, "
                  f"or serve with --log-prompts)" if skipped else ""))
