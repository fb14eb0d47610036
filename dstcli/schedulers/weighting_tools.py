"""Small pieces the loss-weighting methods share: which tasks a step trains, learned scalars per
task, and the mean weight a task got over an epoch (for the log)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dstcli.schedulers.base import Scheduler, StepContext, TaskInfo
from dstcli.schedulers.options import SchedulerOptions


def present_tasks(names: list[str], losses: dict[str, torch.Tensor]) -> list[str]:
    """The tasks this step trains, in task order: those with a loss that carries a gradient.

    A task with no labelled row in the batch has no loss at all, so it takes no part in any
    weight or normalisation of the step.
    """
    return [t for t in names if t in losses and losses[t].requires_grad]


def scalar_parameters(values: dict[str, float], device: torch.device) -> dict[str, nn.Parameter]:
    """One 0-d parameter per task.

    Separate tensors rather than one vector: the trainer clears gradients to None, and Adam
    skips a parameter without a gradient, so a task absent from a batch keeps its value and
    its moment estimates instead of drifting on momentum.
    """
    return {t: nn.Parameter(torch.tensor(float(v), device=device)) for t, v in values.items()}


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class StepMeans:
    """Running mean of a per-task value (a weight, a kept share) over the steps of one epoch
    that trained the task, for the log; kept in checkpoints so a resumed epoch's mean covers
    all its steps."""

    def __init__(self, names: list[str]):
        self.sums = dict.fromkeys(names, 0.0)
        self.steps = dict.fromkeys(names, 0)

    def add(self, values: dict[str, float]) -> None:
        for t, v in values.items():
            self.sums[t] += float(v)
            self.steps[t] += 1

    def means(self, fallback: dict[str, float]) -> dict[str, float]:
        """The epoch's means, then a fresh start; a task never trained gets its fallback."""
        out = {t: (self.sums[t] / self.steps[t] if self.steps[t] else fallback[t])
               for t in self.sums}
        self.sums = dict.fromkeys(self.sums, 0.0)
        self.steps = dict.fromkeys(self.steps, 0)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "steps": dict(self.steps)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums.update(state["sums"])
        self.steps.update(state["steps"])


class StepWeighting(Scheduler):
    """A method whose weights change every step: `sum_t w_t L_t` over the step's tasks, with
    `w` from `step_weights`; the log's `w` is each task's mean over the epoch's steps."""

    def __init__(self, options: SchedulerOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        self.applied = StepMeans(self.names)

    def step_weights(self, present: list[str], losses: dict[str, torch.Tensor],
                     ctx: StepContext) -> dict[str, float]:
        raise NotImplementedError

    def backward(self, losses: dict[str, torch.Tensor], ctx: StepContext) -> None:
        present = present_tasks(self.names, losses)
        if not present:
            return

        weights = self.step_weights(present, losses, ctx)
        self.weights.update(weights)
        self.applied.add(weights)
        super().backward({t: losses[t] for t in present}, ctx)

    def end_epoch(self, epoch: int, losses: dict[str, float],
                  metrics: dict[str, dict[str, float]] | None = None
                  ) -> dict[str, dict[str, Any]]:
        out = super().end_epoch(epoch, losses, metrics)
        # The weights change every batch: log the epoch's mean rather than the last batch's.
        for t, w in self.applied.means(self.weights).items():
            out[t]["w"] = w
        return out

    # A mid-epoch checkpoint keeps the epoch's weights so far, so that the logged mean of a
    # resumed epoch covers all its steps.
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "applied": self.applied.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "applied" in state:
            self.applied.load_state_dict(state["applied"])
