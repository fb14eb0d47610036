"""Dynamic Weight Average (Liu, Johns, Davison, CVPR 2019).

From the epoch-mean training losses of the last two training epochs,

    r_t = V[k-1, t] / V[k-2, t],  w = K softmax(r / T)

and w = 1 in the first two training epochs (2 and 3 here; epoch 1 is the pass without update,
whose losses are not used). Updated once per epoch.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dstcli.schedulers.base import Scheduler, TaskInfo
from dstcli.schedulers.specs.weighting import DWAOptions


def dwa_weights(earlier: dict[str, float], later: dict[str, float], temperature: float
                ) -> dict[str, float]:
    """K softmax(r / T) with r_t = later_t / earlier_t.

    A task whose ratio is undefined (no sample in an epoch, or a zero loss) counts as steady,
    r_t = 1, rather than poisoning the softmax of every task.
    """
    names = list(later)
    ratios = []
    for t in names:
        r = later[t] / earlier[t] if earlier.get(t, 0) > 0 else float("nan")
        ratios.append(r if math.isfinite(r) else 1.0)
    w = torch.softmax(torch.tensor(ratios, dtype=torch.float64) / temperature, dim=0)
    return {t: float(v) * len(names) for t, v in zip(names, w, strict=True)}


class DWA(Scheduler):
    """One backward per step with the epoch's fixed weights."""

    def __init__(self, options: DWAOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        self.history: list[dict[str, float]] = []  # the last two training epochs' V

    def end_epoch(self, epoch: int, losses: dict[str, float],
                  metrics: dict[str, dict[str, float]] | None = None
                  ) -> dict[str, dict[str, Any]]:
        if epoch >= 2:
            self.history = [*self.history, dict(losses)][-2:]
            if len(self.history) == 2:
                self.weights = dwa_weights(*self.history, self.options.temperature)
        # The logged w is the one the next epoch trains with, as for the base scheduler.
        return super().end_epoch(epoch, losses, metrics)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.history = [dict(h) for h in state.get("history", [])]
