"""Test-set evaluation of a run: per-task metrics and the average error over tasks.

    dst eval runs/mtl-s0

Writes `metrics.json` and a one-row `metrics.csv` into the run folder. The error of a
classification task is 100 - accuracy; the average error over tasks is the figure of the
paper's Tables 3, 4 and 6.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from dstcli.config import TrainConfig
from dstcli.data.shards import ShardDataset
from dstcli.errors import DstError
from dstcli.models.multitask import TaskRequest
from dstcli.records import metrics_file, write_json
from dstcli.tasks import MetricAccumulator, equal_error_rate, roc_curve
from dstcli.train import CHECKPOINT, RUN_RECORD, build, iterate, load_checkpoint, restore

EVAL_BATCH = 64


def evaluate(run_dir: Path, split: str = "test", device: str | None = None,
             unfinished: bool = False) -> dict[str, Any]:
    """Score the run's checkpoint on `split`. A run whose training has not finished (no
    run.json, or a mid-epoch checkpoint) is refused unless `unfinished`; its metrics.json
    then says so, and `dst tables` leaves it out."""
    run_dir = Path(run_dir)
    config = TrainConfig.load(run_dir / "config.json")
    if device is not None:
        config = TrainConfig.from_json({**config.to_json(), "device": device})
    state = load_checkpoint(run_dir)
    finished = (run_dir / RUN_RECORD).is_file() and state.get("in_epoch") is None
    if not (finished or unfinished):
        raise DstError(f"{run_dir} has not finished training (its last checkpoint is from epoch "
                       f"{state['epoch']}); continue it with `dst train --resume {run_dir}`, or "
                       "pass --unfinished to score that checkpoint anyway")
    if state["loaded_from"] != CHECKPOINT:
        warnings.warn(f"{run_dir / CHECKPOINT} is damaged; scoring {state['loaded_from']}, "
                      f"the checkpoint of epoch {state['epoch']}", stacklevel=2)
    run = build(config)
    restore(run, state)
    run.model.eval()

    dataset = ShardDataset(run.data, split)
    tasks = {t.name: t for t in run.tasks}
    metrics = {t: MetricAccumulator(spec) for t, spec in tasks.items()}
    batches = [list(range(i, min(i + EVAL_BATCH, len(dataset))))
               for i in range(0, len(dataset), EVAL_BATCH)]
    with torch.no_grad():
        for batch in iterate(dataset, batches, config.workers, run.device.type == "cuda"):
            images = batch["images"].to(run.device)
            requests = {}
            for name in tasks:
                rows = torch.nonzero(batch["Z"][name]).squeeze(1)
                if rows.numel():
                    requests[name] = TaskRequest(rows.to(run.device), False)
            outputs = run.model(images, requests)
            for name, output in outputs.items():
                target = batch["labels"][name][requests[name].rows.cpu()]
                metrics[name].update(output.cpu(), target)

    per_task = {t: m.result() for t, m in metrics.items()}
    for name, metric in metrics.items():
        if tasks[name].kind == "contrastive" and metric.distances:
            per_task[name]["roc"] = write_roc(run_dir, name, metric, split)
    errors = [r["error"] for r in per_task.values() if not math.isnan(r["error"])]
    unscored = [t for t, r in per_task.items() if math.isnan(r["error"])]
    if unscored:
        # The paper averages over every task; a table cell of this run would average fewer.
        warnings.warn(f"{run_dir}: no labelled {split} sample for task(s) "
                      f"{', '.join(unscored)}; the average error is over the other "
                      f"{len(errors)} task(s)", stacklevel=2)
    result = {
        "app": config.app,
        "scheduler": config.scheduler,
        "scheduler_options": config.to_json()["scheduler_options"],
        "seed": config.seed,
        "preset": config.preset,
        "epoch": state["epoch"],
        "checkpoint": state["loaded_from"],
        "finished": finished,
        "split": split,
        "tasks": per_task,
        "average_error": sum(errors) / len(errors) if errors else float("nan"),
    }
    write_metrics(run_dir, result)
    return result


def write_roc(run_dir: Path, task: str, metric: MetricAccumulator, split: str) -> str:
    """The matching task's ROC curve as CSV and PNG (the paper's Figure 14); returns the CSV's
    file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thresholds, far, frr = roc_curve(metric.distances, metric.genuine)
    stem = f"roc-{task}-{split}"
    tmp = run_dir / f"{stem}.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["threshold", "false_accept_rate", "true_accept_rate"])
        writer.writerows(zip(thresholds, far, [1 - r for r in frr], strict=True))
    os.replace(tmp, run_dir / f"{stem}.csv")

    figure, axes = plt.subplots(figsize=(4.5, 4))
    axes.plot(far, [1 - r for r in frr])
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set_xlabel("false accept rate")
    axes.set_ylabel("true accept rate")
    axes.set_title(f"{task}: EER {equal_error_rate(metric.distances, metric.genuine):.2f}%")
    figure.tight_layout()
    figure.savefig(run_dir / f"{stem}.png", dpi=120)
    plt.close(figure)
    return f"{stem}.csv"


def write_metrics(run_dir: Path, result: dict[str, Any]) -> None:
    write_json(run_dir / metrics_file(result["split"]), result)

    row: dict[str, Any] = {"run": run_dir.name, "app": result["app"],
                           "scheduler": result["scheduler"], "seed": result["seed"],
                           "epoch": result["epoch"]}
    for task, values in result["tasks"].items():
        for key, value in values.items():
            if key not in ("samples", "roc"):
                row[f"{task}.{key}"] = value
    row["average_error"] = result["average_error"]
    name = metrics_file(result["split"], ".csv")
    tmp = run_dir / f"{name}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    os.replace(tmp, run_dir / name)
