"""Training plots from a run's `epochs.csv`: the paper's Figures 6 and 11.

For each task over the epochs: (a) the training loss V, (b) the activation probability P and
(c) the gate G. A method without probabilities (MTL) draws P as 1 and G as 1 throughout.
"""

from __future__ import annotations

from pathlib import Path

from dstcli.errors import DstError

FORMATS = ("png", "svg")  # what a plot is written as unless told: for viewing, and to scale


def read_epochs(run_dir: Path):
    """epochs.csv as a DataFrame, with a clear error when it is missing."""
    import pandas as pd

    path = Path(run_dir) / "epochs.csv"
    if not path.exists():
        raise DstError(f"{path} not found: is {run_dir} a run folder made by `dst train`?")
    return pd.read_csv(path)


def plot_schedule(run_dir: Path, out: Path | None = None, formats: tuple[str, ...] = FORMATS
                  ) -> list[Path]:
    """Draw loss, activation probability and gates per task; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = read_epochs(run_dir)
    tasks = list(dict.fromkeys(epochs["task"]))
    last = int(epochs["epoch"].max())
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for task in tasks:
        rows = epochs[epochs["task"] == task].sort_values("epoch")
        line, = axes[0].plot(rows["epoch"], rows["V"], label=task)
        probability = rows["P"] if "P" in rows else [1.0] * len(rows)
        axes[1].plot(rows["epoch"], probability, color=line.get_color())
        gates = rows["G"] if "G" in rows else [1] * len(rows)
        # G[k] decides epoch k + 1: draw it where it acts.
        on = [e + 1 for e, g in zip(rows["epoch"], gates, strict=True)
              if g == 1 and e + 1 <= last]
        axes[2].scatter(on, [tasks.index(task)] * len(on), marker="s", s=18,
                        color=line.get_color())

    axes[0].set_title("(a) training loss V")
    axes[1].set_title("(b) activation probability P")
    axes[1].set_ylim(0, 1.05)
    axes[2].set_title("(c) tasks on (gate G = 1)")
    axes[2].set_yticks(range(len(tasks)), tasks)
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize="small")
    figure.tight_layout()

    out = Path(out) if out is not None else Path(run_dir) / "schedule"
    written = []
    for fmt in formats:
        path = out.with_suffix(f".{fmt}")
        figure.savefig(path, dpi=120)
        written.append(path)
    plt.close(figure)
    return written


def plot_compare(run_dirs: list[Path], out: Path, formats: tuple[str, ...] = FORMATS
                 ) -> list[Path]:
    """Overlay several runs' training losses V, one panel per task; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(run_dirs) < 2:
        raise DstError("--compare needs at least two run folders")
    logs = {_run_name(Path(r)): read_epochs(r) for r in run_dirs}
    tasks = list(dict.fromkeys(t for log in logs.values() for t in log["task"]))
    columns = min(len(tasks), 3)
    rows = -(-len(tasks) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.3 * columns, 3.2 * rows),
                                squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for name, log in logs.items():
            part = log[log["task"] == task].sort_values("epoch")
            if len(part):
                ax.plot(part["epoch"], part["V"], label=name)
        ax.set_title(f"{task}: training loss V")
        ax.set_xlabel("epoch")
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    figure.tight_layout()
    written = []
    for fmt in formats:
        path = Path(out).with_suffix(f".{fmt}")
        figure.savefig(path, dpi=120)
        written.append(path)
    plt.close(figure)
    return written


def _run_name(run_dir: Path) -> str:
    """A run's legend entry: its sweep label and seed when dst ablate made it."""
    import json

    sweep = run_dir / "sweep.json"
    if sweep.is_file():
        meta = json.loads(sweep.read_text())
        return f"{meta.get('label', run_dir.name)} (seed {meta.get('seed', 0)})"
    return run_dir.name
