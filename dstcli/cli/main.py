"""The `dst` command line: one module per command, joined here.

Start-up imports no torch: `dst --help` must answer at once. The commands import what they
need when they run, and turn a `DstError` (bad input, a missing file) into one message and exit
status 1 (`dstcli.cli.common.user_errors`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import typer

from dstcli import __version__
from dstcli.cli import ablate as ablate_cmd
from dstcli.cli import demo as demo_cmd
from dstcli.cli import evaluate as eval_cmd
from dstcli.cli import plot as plot_cmd
from dstcli.cli import prepare as prepare_cmd
from dstcli.cli import replay as replay_cmd
from dstcli.cli import tables as tables_cmd
from dstcli.cli import train as train_cmd

app = typer.Typer(
    name="dst",
    help="Dropped Scheduled Task: prepare data, train multi-task networks, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(prepare_cmd.app, name="prepare")
train_cmd.register(app)
eval_cmd.register(app)
replay_cmd.register(app)
demo_cmd.register(app)
ablate_cmd.register(app)
tables_cmd.register(app)
plot_cmd.register(app)


def _version(value: bool) -> None:
    if value:
        print(f"dst {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Dropped Scheduled Task: prepare data, train multi-task networks, evaluate."""


def main() -> None:
    app()
