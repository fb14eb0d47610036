"""Loss-Balanced Task Weighting (Liu, Liang, Gitter, AAAI 2019 student abstract).

    w_t = sg[(L_t / L_t^ref)^alpha],  loss = sum_t w_t L_t

As in the authors' code, the reference `L_t^ref` is the task's loss in the first batch of each
epoch (here: the first batch of the epoch in which the task has a label), and the weights are
recomputed every batch and rescaled so that they sum to the number of tasks the batch trains.
"""

from __future__ import annotations

from typing import Any

import torch

from dstcli.schedulers.base import StepContext, TaskInfo
from dstcli.schedulers.specs.weighting import LBTWOptions
from dstcli.schedulers.weighting_tools import StepWeighting

# Floor of a reference loss: a first batch already at zero loss must not divide by zero.
MIN_REFERENCE = 1e-12


def lbtw_weights(losses: dict[str, float], reference: dict[str, float], alpha: float
                 ) -> dict[str, float]:
    """(L_t / L_t^ref)^alpha, rescaled to sum to the number of tasks given."""
    raw = {t: (loss / reference[t]) ** alpha for t, loss in losses.items()}
    total = sum(raw.values())
    if not total > 0:
        return dict.fromkeys(losses, 1.0)
    return {t: v * len(raw) / total for t, v in raw.items()}


class LBTW(StepWeighting):
    """One backward per step; the weights are a function of the step's losses."""

    def __init__(self, options: LBTWOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        self.reference: dict[str, float] = {}
        self.reference_epoch: int | None = None

    def step_weights(self, present: list[str], losses: dict[str, torch.Tensor],
                     ctx: StepContext) -> dict[str, float]:
        if ctx.epoch != self.reference_epoch:
            self.reference, self.reference_epoch = {}, ctx.epoch
        values = {t: float(losses[t].detach()) for t in present}
        for t in present:
            self.reference.setdefault(t, max(values[t], MIN_REFERENCE))
        return lbtw_weights(values, self.reference, self.options.alpha)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "reference": dict(self.reference),
                "reference_epoch": self.reference_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.reference = dict(state.get("reference", {}))
        self.reference_epoch = state.get("reference_epoch")
