"""`compactlm config`: show and check configuration."""

from __future__ import annotations

import typer

from compactlm.cli.common import ConfigOption, SetOption

app = typer.Typer(help="Show and check configuration.", no_args_is_help=True)


@app.command("show")
def config_show(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the resolved configuration (file + overrides) as YAML."""
    import yaml

    from compactlm.config import load_config

    resolved = load_config(config, set_ or [])
    typer.echo(yaml.safe_dump(resolved.to_dict(), sort_keys=False))
    typer.echo(f"# config hash: {resolved.config_hash()}")
