"""Random Loss Weighting (Lin et al., TMLR 2022): `w = softmax(xi)`, `xi ~ N(0, I)` drawn afresh
every step, loss `sum_t w_t L_t`. The weights sum to 1, not K.

The draw of a step is a function of (seed, epoch, step) alone, so a resumed run draws what the
uninterrupted run drew, and two runs with the same seed weight the same steps alike.
"""

from __future__ import annotations

import torch

from dstcli.schedulers.base import StepContext, TaskInfo
from dstcli.schedulers.specs.weighting import RLWOptions
from dstcli.schedulers.weighting_tools import StepWeighting
from dstcli.seeding import derived_seed

# This method's random stream, apart from dstcli.seeding's (data order, gates, ...).
RLW_STREAM = 1001


def rlw_weights(seed: int, epoch: int, step: int, names: list[str], present: list[str]
                ) -> dict[str, float]:
    """The step's weights of the present tasks: a softmax over their share of one draw.

    The draw covers every task, so a task's logit does not depend on which others have labels
    in the batch; the softmax runs over the present ones, so the weights still sum to 1.
    """
    g = torch.Generator().manual_seed(derived_seed(seed, RLW_STREAM, epoch, step))
    xi = torch.randn(len(names), generator=g, dtype=torch.float64)
    index = [names.index(t) for t in present]
    w = torch.softmax(xi[index], dim=0)
    return {t: float(v) for t, v in zip(present, w, strict=True)}


class RandomLossWeighting(StepWeighting):
    """One backward per step."""

    def __init__(self, options: RLWOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        # The mean weight of a draw, until the first step has drawn one.
        self.weights = dict.fromkeys(self.names, 1.0 / len(self.names))

    def step_weights(self, present: list[str], losses: dict[str, torch.Tensor],
                     ctx: StepContext) -> dict[str, float]:
        return rlw_weights(self.seed, ctx.epoch, ctx.step, self.names, present)

