"""`dst eval RUN_DIR`: a trained run's metrics, into metrics.json and metrics.csv (test split)
or metrics-<split>.json and .csv (another split)."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from dstcli.cli.common import out, user_errors


def _main_metric(metrics: dict) -> tuple[str, float]:
    """The figure a task kind is reported with in the paper's tables, beside its error."""
    for key in ("accuracy", "iou", "nme", "eer", "rmse", "mae_radians"):
        if key in metrics:
            return key, metrics[key]
    return "", math.nan


def register(app: typer.Typer) -> None:
    @app.command("eval")
    @user_errors
    def evaluate(
        run_dir: Path = typer.Argument(..., help="A run folder made by dst train."),
        split: str = typer.Option("test", help="Split to evaluate: test (into metrics.json) "
                                  "or train (into metrics-train.json)."),
        device: str | None = typer.Option(None, help="Override the run's --device."),
        unfinished: bool = typer.Option(False, "--unfinished", help="Score the last "
                                        "checkpoint of a run that has not finished training "
                                        "(metrics.json says so; dst tables leaves it out)."),
    ) -> None:
        """Per-task test metrics and the average error over tasks (Tables 3, 4 and 6)."""
        from dstcli.errors import DstError

        if split not in ("test", "train"):
            raise DstError(f"--split {split!r}: use test or train")
        from dstcli.evaluate import evaluate as run_eval

        result = run_eval(run_dir, split=split, device=device, unfinished=unfinished)
        width = max(len(t) for t in result["tasks"])
        out.print(f"{'task':<{width}} {'samples':>8} {'metric':>16} {'error':>7}")
        for task, m in result["tasks"].items():
            name, value = _main_metric(m)
            shown = f"{name} {value:.2f}" if name else ""
            out.print(f"{task:<{width}} {m['samples']:>8d} {shown:>16} {m['error']:>7.2f}")
        out.print(f"{'average error':<{width}} {'':>8} {'':>16} {result['average_error']:>7.2f}")
        if not result["finished"]:
            out.print(f"note: training had not finished; scored the checkpoint of epoch "
                      f"{result['epoch']}")
        from dstcli.records import metrics_file

        out.print(f"wrote {Path(run_dir) / metrics_file(split)} and {metrics_file(split, '.csv')}")
