"""Options of the equal-weighting methods: `mtl` (all tasks, one network) and `stl`."""

from dataclasses import dataclass
from typing import Literal

from dstcli.schedulers import register_scheduler
from dstcli.schedulers.options import LOSS_NORM_HELP, SchedulerOptions, opt


@register_scheduler(
    "mtl",
    impl="dstcli.schedulers.equal:EqualWeighting",
    summary="Joint training of every task every step: the sum of the task losses",
)
@dataclass(frozen=True)
class MTLOptions(SchedulerOptions):
    loss_norm: Literal["initial", "none"] = opt("none", LOSS_NORM_HELP)


@register_scheduler(
    "stl",
    impl="dstcli.schedulers.equal:EqualWeighting",
    summary="Single-task learning: one network per task, each trained on its own labels",
    stl=True,
)
@dataclass(frozen=True)
class STLOptions(SchedulerOptions):
    pass
