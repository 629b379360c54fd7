"""The ``snapkit`` command: thin commands over the library, and one place that turns user errors into a sentence."""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Annotated

import typer

from snapkit.cli import calibrate as calibrate_commands
from snapkit.cli import data as data_commands
from snapkit.cli import demo as demo_commands
from snapkit.cli import detect as detect_commands
from snapkit.cli import listen as listen_commands
from snapkit.cli import record as record_commands
from snapkit.cli import review as review_commands
from snapkit.cli import service as service_commands
from snapkit.cli import train as train_commands
from snapkit.cli import workbench as workbench_commands
from snapkit.cli.help import SnapkitGroup, use_snapkit_help
from snapkit.cli.ui import err_console
from snapkit.errors import SnapkitError
from snapkit.files import disk_advice

app = typer.Typer(
    name="snapkit",
    help="Teach a computer to recognise your own sounds from a handful of clips, then let it listen.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    cls=SnapkitGroup,
)

record_commands.register(app)
data_commands.register(app)
train_commands.register(app)
calibrate_commands.register(app)
detect_commands.register(app)
listen_commands.register(app)
review_commands.register(app)
demo_commands.register(app)
workbench_commands.register(app)
service_commands.register(app)
use_snapkit_help(app)


def package_version() -> str:
    """The installed distribution's version; ``snapkit.__version__`` when run from a source tree not installed."""
    try:
        return metadata.version("snapkit")
    except metadata.PackageNotFoundError:
        from snapkit import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"snapkit {package_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print snapkit's version and exit."),
    ] = False,
) -> None:
    """Teach a computer to recognise your own sounds from a handful of clips, then let it listen."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``snapkit`` and ``python -m snapkit``."""
    try:
        app(args=argv, prog_name="snapkit")
    except SnapkitError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except FileExistsError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as err:
        # The last net for a disk or file fault no command turned into its own sentence yet (each should): still one
        # sentence naming the file, not a traceback.
        err_console.print(f"[bold red]error:[/] {os_error_sentence(err)}", highlight=False, soft_wrap=True)
        sys.exit(2)


def os_error_sentence(err: OSError) -> str:
    """One sentence for a file-system error: the file it names, the system's reason, and what to do."""
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err}; {disk_advice(err)}, then try again."
