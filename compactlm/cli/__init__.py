"""The ``compactlm`` command: data, pipeline and registry operations over the same library functions.

User errors (a missing file, a bad column, an invalid config value) print one line and exit non-zero
without a traceback. Pipeline commands run the Prefect flows (ephemeral API unless PREFECT_API_URL is
set); heavy modules are imported inside the commands so ``compactlm --help`` stays fast. Each command
group lives in its own module and is registered below.
"""

from __future__ import annotations

import sys

import typer

from compactlm.cli import config, data, evaluate, feedback, models, monitor, pipeline, registry, serve
from compactlm.cli.common import terminal
from compactlm.errors import CompactLMError

app = typer.Typer(help="CompactLM: train, govern and serve compact language models.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.add_typer(data.app, name="data")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(registry.app, name="registry")
app.add_typer(config.app, name="config")
app.add_typer(evaluate.app, name="eval")
app.add_typer(models.app, name="models")
app.add_typer(feedback.app, name="feedback")
app.add_typer(monitor.app, name="monitor")
# The first docstring line is the help: the rest (Raises...) is for readers of the code.
for _name, _command in (("serve", serve.serve), ("predict", serve.predict), ("quantize", serve.quantize)):
    app.command(_name, help=(_command.__doc__ or "").split("\n")[0])(_command)


def main() -> None:
    """Entry point: run the app, turning user errors into one line on stderr and a non-zero exit."""
    try:
        app(standalone_mode=False)
    except CompactLMError as exc:
        typer.echo(f"error: {exc}", err=True, file=terminal(err=True))
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True, file=terminal(err=True))
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code and message
        import click

        if isinstance(exc, click.ClickException):
            exc.show(file=terminal(err=True))
            sys.exit(exc.exit_code)
        if terminal(err=True) is not sys.stderr:  # a bug: its traceback belongs on the terminal, not only in a log
            import traceback

            traceback.print_exc(file=terminal(err=True))
        raise
