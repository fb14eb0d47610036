"""`dst demo`: the paper's face experiment in miniature, with no data and no flags.

Draws a small synthetic AFLW, prepares it through the real AFLW reader, trains MTL and DST on
it with the same seed, evaluates both, prints a table shaped like the paper's Table 3, and
draws DST's schedule (the paper's Figure 6). A few minutes on a laptop CPU.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dstcli.errors import DstError

MARKER = "DST_DEMO"
# Table 3's columns: (task, metric, header, higher is better)
TABLE3 = (("gender", "accuracy", "T1 gender acc. (%)", True),
          ("spectacles", "accuracy", "T2 specs acc. (%)", True),
          ("landmarks", "error", "T3 landmark err. (%)", False),
          ("pose", "error", "T4 pose err. (%)", False),
          ("denoising", "error", "T5 denoising err. (%)", False))


@dataclass(frozen=True)
class DemoSettings:
    faces: int = 1200
    epochs: int = 15
    preset: str = "cpu-tiny"
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0


def table3_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for method, result in results.items():
        row = {"method": method}
        for task, metric, header, _ in TABLE3:
            row[header] = result["tasks"][task][metric]
        row["average error (%)"] = result["average_error"]
        rows.append(row)
    return rows


def run_demo(out: Path, settings: DemoSettings = DemoSettings(), console=None
             ) -> dict[str, Any]:
    from rich.console import Console

    from dstcli.apps import APPS
    from dstcli.config import TrainConfig
    from dstcli.evaluate import evaluate
    from dstcli.report.plots import plot_schedule
    from dstcli.train import train

    console = console or Console(stderr=True)
    out = Path(out)
    if out.exists():
        if not (out / MARKER).exists():
            raise DstError(f"{out} exists and is not a demo folder; pass another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by `dst demo`; the next demo replaces this folder\n")

    console.print(f"drawing {settings.faces} synthetic AFLW faces and preparing them")
    data = out / "aflw"
    APPS.get("aflw").prepare_synthetic(settings.faces, data, settings.preset,
                                       seed=settings.seed)

    results = {}
    for method in ("mtl", "dst"):
        console.print(f"training {method.upper()} for {settings.epochs} epochs")
        config = TrainConfig(app="aflw", data=str(data), out=str(out / f"run-{method}"),
                             scheduler=method, preset=settings.preset, epochs=settings.epochs,
                             seed=settings.seed, batch_size=settings.batch_size,
                             lr=settings.lr, device="auto").resolved().validate()
        results[method.upper()] = evaluate(train(config, console=console))

    rows = table3_rows(results)
    with open(out / "table3.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figures = plot_schedule(out / "run-dst", out / "figure6-dst", formats=("png", "svg"))
    return {"rows": rows, "table": out / "table3.csv", "figures": figures}
