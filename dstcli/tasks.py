"""Per-sample losses and metrics for each task kind (see TASK_KINDS in dstcli.apps.base).

The trainer masks with Z and averages per task (the mean over a task's labelled samples), so
the functions here work on the labelled rows only and return one value per sample:

    classification  cross-entropy (Eqs. 11, 12, 18)
    landmarks       squared error over the visible coordinates, divided by their count (Eq. 14)
    pose            squared error averaged over the three angles (Eq. 15)
    denoise         squared error averaged over the pixels, on [0, 1] (Eq. 16)

Every metric reports `error` in percent, lower is better, the figure the paper averages:
100 - accuracy; the landmarks' mean distance over visible points divided by the face-box width
(TaskSpec.scale); the pose's mean absolute angle error divided by pi; the denoised image's RMSE
on [0, 1] pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dstcli.apps.base import TaskSpec


def per_sample_loss(task: TaskSpec, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(n,) unreduced loss of one task on its labelled rows."""
    kind = task.kind
    if kind == "classification":
        return F.cross_entropy(output.float(), target.long(), reduction="none")
    if kind == "landmarks":
        points, visible = target[..., :2].float(), target[..., 2].float()  # (n, L, 2), (n, L)
        squared = ((output.float() - points) ** 2).sum(dim=-1) * visible  # (n, L)
        return squared.sum(dim=1) / (2 * visible.sum(dim=1)).clamp(min=1)
    if kind == "pose":
        return ((output.float() - target.float()) ** 2).mean(dim=1)
    if kind == "denoise":
        clean = target.float() / 255.0
        return ((output.float() - clean) ** 2).flatten(1).mean(dim=1)
    raise ValueError(f"no loss for task kind {kind!r} (task {task.name})")


class MetricAccumulator:
    """Collects one task's predictions batch by batch; `result()` gives its metrics."""

    def __init__(self, task: TaskSpec):
        self.task = task
        self.total = 0  # samples seen
        self.sum = 0.0  # correct predictions, or the summed per-sample error

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        kind = self.task.kind
        if kind == "classification":
            self.sum += int((output.argmax(dim=1) == target).sum())
        elif kind == "landmarks":
            visible = target[..., 2].float()  # (n, L)
            distance = torch.linalg.vector_norm(output.float() - target[..., :2].float(), dim=-1)
            per_sample = (distance * visible).sum(dim=1) / visible.sum(dim=1).clamp(min=1)
            self.sum += float(per_sample.sum())
        elif kind == "pose":
            self.sum += float((output.float() - target.float()).abs().mean(dim=1).sum())
        elif kind == "denoise":
            # Summed squared error per pixel; the result takes the root of the mean.
            self.sum += float(per_sample_loss(self.task, output, target).sum())
        else:
            raise ValueError(f"no metric for task kind {kind!r} (task {self.task.name})")
        self.total += int(target.shape[0])

    def state_dict(self) -> dict[str, float]:
        return {"sum": self.sum, "total": self.total}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.sum, self.total = state["sum"], int(state["total"])

    def result(self) -> dict[str, float]:
        if self.total == 0:
            return {"samples": 0, "error": float("nan")}
        mean = self.sum / self.total
        kind = self.task.kind
        if kind == "classification":
            accuracy = 100.0 * mean
            return {"samples": self.total, "accuracy": accuracy, "error": 100.0 - accuracy}
        if kind == "landmarks":
            return {"samples": self.total, "nme": 100.0 * mean / self.task.scale,
                    "error": 100.0 * mean / self.task.scale}
        if kind == "pose":
            return {"samples": self.total, "mae_radians": mean,
                    "error": 100.0 * mean / math.pi}
        rmse = math.sqrt(mean)
        return {"samples": self.total, "rmse": rmse, "error": 100.0 * rmse}


def batch_error(task: TaskSpec, output: torch.Tensor, target: torch.Tensor) -> float:
    """The task's error in percent on one batch (DTP's KPI is 1 - error / 100)."""
    metric = MetricAccumulator(task)
    metric.update(output.detach(), target)
    return metric.result()["error"]
