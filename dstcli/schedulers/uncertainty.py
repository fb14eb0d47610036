"""Uncertainty weighting, UW (Kendall, Gal, Cipolla, CVPR 2018).

A learned log-variance `s_t = log sigma_t^2` per task (initialised to 0) and the loss

    sum_t 1/2 (exp(-s_t) L_t + s_t)

The `s_t` train with the model's optimizer, in a parameter group of their own without weight
decay (decay would pull every task toward weight 1/2). One backward per step.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from dstcli.schedulers.base import Scheduler, StepContext, TaskInfo
from dstcli.schedulers.options import SchedulerOptions
from dstcli.schedulers.weighting_tools import model_device, present_tasks, scalar_parameters

INITIAL_LOG_VARIANCE = 0.0  # the FAMO repository's start; LibMTL starts at -0.5


class UncertaintyWeighting(Scheduler):
    log_columns: ClassVar[tuple[str, ...]] = ("w", "G", "s")

    def __init__(self, options: SchedulerOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        self.log_variance = dict.fromkeys(self.names, INITIAL_LOG_VARIANCE)
        self.weights = {t: 0.5 * math.exp(-s) for t, s in self.log_variance.items()}
        self.s: dict[str, nn.Parameter] = {}

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.s = scalar_parameters(self.log_variance, model_device(model))
        optimizer.add_param_group({"params": list(self.s.values()),
                                   "lr": optimizer.param_groups[0]["lr"], "weight_decay": 0.0})

    def backward(self, losses: dict[str, torch.Tensor], ctx: StepContext) -> None:
        present = present_tasks(self.names, losses)
        if not present:
            return
        total = sum(0.5 * (torch.exp(-self.s[t]) * losses[t] + self.s[t]) for t in present)
        ctx.scale_loss(total).backward()

    def end_epoch(self, epoch: int, losses: dict[str, float],
                  metrics: dict[str, dict[str, float]] | None = None
                  ) -> dict[str, dict[str, Any]]:
        if self.s:
            self.log_variance = {t: p.item() for t, p in self.s.items()}
        self.weights = {t: 0.5 * math.exp(-s) for t, s in self.log_variance.items()}
        out = super().end_epoch(epoch, losses, metrics)
        for t in self.names:
            out[t]["s"] = self.log_variance[t]
        return out

    def state_dict(self) -> dict[str, Any]:
        if self.s:
            self.log_variance = {t: p.item() for t, p in self.s.items()}
        return {**super().state_dict(), "log_variance": dict(self.log_variance)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.log_variance = dict(state["log_variance"])
        with torch.no_grad():
            for t, p in self.s.items():
                p.fill_(self.log_variance[t])
