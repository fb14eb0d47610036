"""Per-sample losses and metrics for each task kind (see TASK_KINDS in dstcli.apps.base).

The trainer masks with Z and averages per task (the mean over a task's labelled samples), so
the functions here work on the labelled rows only and return one value per sample:

    classification  cross-entropy (Eqs. 11, 12, 18)
    landmarks       squared error over the visible coordinates, divided by their count (Eq. 14)
    pose            squared error averaged over the three angles (Eq. 15)
    denoise         squared error averaged over the pixels, on [0, 1] (Eq. 16)
    segmentation    binary cross-entropy averaged over the pixels (Eq. 19, which sums them:
                    the mean keeps the loss's scale independent of the resolution)
    contrastive     y D^2 / 2 + (1 - y) max(0, m - D)^2 / 2 on the pair distance D (Eq. 20)

Every metric reports `error` in percent, lower is better, the figure the paper averages:
100 - accuracy; the landmarks' mean distance over visible points divided by the face-box width
(TaskSpec.scale); the pose's mean absolute angle error divided by pi; the denoised image's RMSE
on [0, 1] pixels; 100 - IoU x 100 of a mask (over all the split's pixels); the equal error
rate of matching, in percent, from the pair distances of the whole split.
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
    if kind == "segmentation":
        return F.binary_cross_entropy_with_logits(
            output.float(), target.float(), reduction="none").flatten(1).mean(dim=1)
    if kind == "contrastive":
        distance, genuine = output.float(), target.float()
        margin = task.scale
        return 0.5 * (genuine * distance ** 2
                      + (1 - genuine) * torch.clamp(margin - distance, min=0) ** 2)
    raise ValueError(f"no loss for task kind {kind!r} (task {task.name})")


class MetricAccumulator:
    """Collects one task's predictions batch by batch; `result()` gives its metrics."""

    def __init__(self, task: TaskSpec):
        self.task = task
        self.total = 0  # samples seen
        self.sum = 0.0  # correct predictions, or the summed per-sample error
        self.union = 0.0  # segmentation: `sum` holds the intersection
        self.distances: list[float] = []  # contrastive: every pair's distance and label
        self.genuine: list[float] = []

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
        elif kind == "segmentation":
            predicted, truth = output > 0, target > 0
            self.sum += float((predicted & truth).sum())
            self.union += float((predicted | truth).sum())
        elif kind == "contrastive":
            self.distances += output.float().cpu().tolist()
            self.genuine += target.float().cpu().tolist()
        else:
            raise ValueError(f"no metric for task kind {kind!r} (task {self.task.name})")
        self.total += int(target.shape[0])

    def state_dict(self) -> dict[str, object]:
        return {"sum": self.sum, "total": self.total, "union": self.union,
                "distances": list(self.distances), "genuine": list(self.genuine)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.sum, self.total = state["sum"], int(state["total"])
        self.union = state.get("union", 0.0)
        self.distances = list(state.get("distances", []))
        self.genuine = list(state.get("genuine", []))

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
        if kind == "segmentation":
            iou = 100.0 * self.sum / self.union if self.union else 100.0
            return {"samples": self.total, "iou": iou, "error": 100.0 - iou}
        if kind == "contrastive":
            eer = equal_error_rate(self.distances, self.genuine)
            return {"samples": self.total, "eer": eer, "error": eer}
        rmse = math.sqrt(mean)
        return {"samples": self.total, "rmse": rmse, "error": 100.0 * rmse}


def batch_error(task: TaskSpec, output: torch.Tensor, target: torch.Tensor) -> float:
    """The task's error in percent on one batch (DTP's KPI is 1 - error / 100)."""
    metric = MetricAccumulator(task)
    metric.update(output.detach(), target)
    return metric.result()["error"]


def roc_curve(distances, genuine) -> tuple[list[float], list[float], list[float]]:
    """False accept and false reject rates at every distance threshold (accept: D <= t).

    Returns (thresholds, FAR, FRR), thresholds ascending, starting below every distance
    (nothing accepted: FAR 0, FRR 1) and ending at the largest (everything accepted).
    """
    pairs = sorted(zip(distances, genuine, strict=True))
    n_genuine = sum(1 for _, g in pairs if g > 0.5)
    n_impostor = len(pairs) - n_genuine
    thresholds, far, frr = [-math.inf], [0.0], [1.0]
    accepted_genuine = accepted_impostor = 0
    for i, (d, g) in enumerate(pairs):
        if g > 0.5:
            accepted_genuine += 1
        else:
            accepted_impostor += 1
        if i + 1 < len(pairs) and pairs[i + 1][0] == d:
            continue  # a threshold accepts all pairs at that distance together
        thresholds.append(d)
        far.append(accepted_impostor / n_impostor if n_impostor else 0.0)
        frr.append(1 - accepted_genuine / n_genuine if n_genuine else 0.0)
    return thresholds, far, frr


def equal_error_rate(distances, genuine) -> float:
    """The EER in percent: where the false accept and false reject rates cross.

    Between the two thresholds where FAR - FRR changes sign, the rates are interpolated
    linearly, the usual convention for a finite list of scores.
    """
    if not distances:
        return float("nan")
    _, far, frr = roc_curve(distances, genuine)
    for i in range(1, len(far)):
        if far[i] >= frr[i]:
            d0, d1 = far[i - 1] - frr[i - 1], far[i] - frr[i]
            share = 0.0 if d1 == d0 else -d0 / (d1 - d0)
            return 100.0 * (far[i - 1] + share * (far[i] - far[i - 1]))
    return 100.0 * far[-1]
