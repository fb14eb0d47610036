"""Dynamic Task Prioritization (Guo, Haque, Huang, Yeung, Fei-Fei, ECCV 2018).

Each task has a key performance indicator `kappa_t` in [0, 1] (higher is better), measured on
every training batch and smoothed by a moving average `k_t <- a kappa_t + (1 - a) k_t` (a =
--kpi-ema, the weight of the newest value; the first KPI initialises it). The focal weight

    w_t = -(1 - k_t)^gamma log k_t,  k_t clipped to [0.01, 0.99]

favours the tasks that perform worst; the loss is `sum_t sg[w_t] L_t`, unnormalised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from dstcli.apps.base import TaskSpec
from dstcli.errors import DstError
from dstcli.schedulers.base import StepContext, TaskInfo
from dstcli.schedulers.specs.weighting import DTPOptions
from dstcli.schedulers.weighting_tools import StepWeighting
from dstcli.tasks import batch_error

KPI_MIN, KPI_MAX = 0.01, 0.99  # log 0 is infinite; a KPI of 1 would give weight 0


def top1_accuracy(task: TaskSpec, output: torch.Tensor, target: torch.Tensor) -> float:
    """The share of the batch's labelled rows whose highest score is the label."""
    return float((output.argmax(dim=1) == target).float().mean())


def landmark_pck(task: TaskSpec, output: torch.Tensor, target: torch.Tensor) -> float:
    """The share of visible landmarks within 5% of the face-box width (PCK at 0.05); NaN when
    no landmark of the batch is visible (no evidence either way)."""
    visible = target[..., 2] > 0  # (n, L)
    if not bool(visible.any()):
        return math.nan
    distance = torch.linalg.vector_norm(output.float() - target[..., :2].float(), dim=-1)
    hits = (distance / task.scale < 0.05) & visible
    return float(hits.sum()) / int(visible.sum())


def pose_within(task: TaskSpec, output: torch.Tensor, target: torch.Tensor) -> float:
    """The share of faces whose three angles are all within 10 degrees."""
    error = (output.float() - target.float()).abs().amax(dim=1)  # (n,)
    return float((error < math.radians(10)).float().mean())


def denoise_fidelity(task: TaskSpec, output: torch.Tensor, target: torch.Tensor) -> float:
    """1 - RMSE on [0, 1] pixels: 1 for a perfect clean image."""
    return max(0.0, 1.0 - batch_error(task, output, target) / 100.0)


def mask_iou(task: TaskSpec, output: torch.Tensor, target: torch.Tensor) -> float:
    """The batch's IoU of predicted and true foreground."""
    return max(0.0, 1.0 - batch_error(task, output, target) / 100.0)


def pair_accuracy(task: TaskSpec, output: torch.Tensor, target: torch.Tensor) -> float:
    """The share of pairs on the right side of half the margin: a batch holds too few genuine
    pairs for a stable EER, which baselines.md leaves to a validation set."""
    accepted = output.float() < task.scale / 2
    return float((accepted == (target > 0.5)).float().mean())


# The KPI of each task kind, computed on a training batch's labelled rows.
KPIS: dict[str, Callable[[TaskSpec, torch.Tensor, torch.Tensor], float]] = {
    "classification": top1_accuracy,
    "landmarks": landmark_pck,
    "pose": pose_within,
    "denoise": denoise_fidelity,
    "segmentation": mask_iou,
    "contrastive": pair_accuracy,
}

def kpi_function(kind: str, task: str
                 ) -> Callable[[TaskSpec, torch.Tensor, torch.Tensor], float]:
    """The KPI of a task kind, or a clear error for a kind that has none."""
    if kind in KPIS:
        return KPIS[kind]
    raise DstError(f"dtp has no KPI for task kind {kind!r} (task {task}); the kinds with one "
                   f"are {', '.join(KPIS)}. Choose another --scheduler for this app")


def focal_weight(kpi: float, gamma: float) -> float:
    """-(1 - k)^gamma log k, with k clipped to [KPI_MIN, KPI_MAX]."""
    k = min(max(kpi, KPI_MIN), KPI_MAX)
    return -((1.0 - k) ** gamma) * math.log(k)


class DTP(StepWeighting):
    """One backward per step, weights from the batch KPIs."""

    log_columns: ClassVar[tuple[str, ...]] = ("w", "G", "kpi")
    distributed_refusal: ClassVar[str] = (
        "keeps a moving average of each task's KPI over the step's batch: every process would "
        "average only its share's KPIs, so the weights, and the update, would differ between "
        "processes")

    def __init__(self, options: DTPOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        # Fail when the run starts, not at its first step, for a kind without a KPI.
        self.kpis = {t.name: kpi_function(t.kind, t.name) for t in self.tasks}
        self.kpi: dict[str, float] = {}  # the moving average, unclipped

    def update_kpi(self, task: str, value: float) -> float:
        """The task's moving-average KPI after `value`; a NaN value (a batch that says nothing
        of the task) leaves the average as it was."""
        if math.isnan(value):
            return self.kpi.get(task, math.nan)
        a = self.options.kpi_ema
        self.kpi[task] = value if task not in self.kpi else a * value + (1 - a) * self.kpi[task]
        return self.kpi[task]

    def step_weights(self, present: list[str], losses: dict[str, torch.Tensor],
                     ctx: StepContext) -> dict[str, float]:
        weights = {}
        for t in present:
            value = self.kpis[t](ctx.tasks[t], ctx.outputs[t].detach(), ctx.targets[t])
            kpi = self.update_kpi(t, value)
            # No KPI yet (the task's first batches showed nothing measurable): weight 1, the
            # equal-weight baseline, rather than the largest focal weight a KPI of 0 would give.
            weights[t] = 1.0 if math.isnan(kpi) else focal_weight(kpi, self.options.gamma)
        return weights

    def end_epoch(self, epoch: int, losses: dict[str, float],
                  metrics: dict[str, dict[str, float]] | None = None
                  ) -> dict[str, dict[str, Any]]:
        out = super().end_epoch(epoch, losses, metrics)
        for t in out:
            out[t]["kpi"] = self.kpi.get(t, float("nan"))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "kpi": dict(self.kpi)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.kpi = dict(state.get("kpi", {}))
