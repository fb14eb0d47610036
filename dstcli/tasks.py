"""Per-sample losses and test metrics for each task kind.

The trainer masks with Z and averages per task (the mean over a task's labelled samples), so
the functions here work on the labelled rows only and return one value per sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dstcli.apps.base import TaskSpec


def per_sample_loss(task: TaskSpec, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(n,) unreduced loss of one task on its labelled rows."""
    if task.kind == "classification":
        return F.cross_entropy(output.float(), target.long(), reduction="none")
    raise ValueError(f"no loss for task kind {task.kind!r} (task {task.name})")


class MetricAccumulator:
    """Collects one task's test predictions batch by batch; `result()` gives its metrics.

    Every result has `error` in percent (lower is better), the figure the paper averages.
    """

    def __init__(self, task: TaskSpec):
        self.task = task
        self.correct = 0
        self.total = 0

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        if self.task.kind == "classification":
            self.correct += int((output.argmax(dim=1) == target).sum())
            self.total += int(target.numel())
        else:
            raise ValueError(f"no metric for task kind {self.task.kind!r}")

    def state_dict(self) -> dict[str, int]:
        return {"correct": self.correct, "total": self.total}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.correct, self.total = state["correct"], state["total"]

    def result(self) -> dict[str, float]:
        if self.total == 0:
            return {"samples": 0, "accuracy": float("nan"), "error": float("nan")}
        accuracy = 100.0 * self.correct / self.total
        return {"samples": self.total, "accuracy": accuracy, "error": 100.0 - accuracy}
