"""Options of the gradient-based baselines: GradDrop, PCGrad, CAGrad, MGDA-UB, Nash-MTL, IMTL
and Aligned-MTL (docs/baselines.md sections 6 and 8; docs/schedulers/gradient.md).

Each method combines per-task gradients instead of per-task losses, so it needs the shared
network: none of them is registered for STL.
"""

import math
from dataclasses import dataclass
from typing import Literal

from dstcli.schedulers import register_scheduler
from dstcli.schedulers.options import SchedulerOptions, opt


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@register_scheduler(
    "graddrop",
    impl="dstcli.schedulers.graddrop:GradDrop",
    summary="GradDrop: keep, per element of the shared representation, the gradients that "
            "agree with a randomly chosen sign, drawn by their sign purity",
)
@dataclass(frozen=True)
class GradDropOptions(SchedulerOptions):
    leak: tuple[float, ...] = opt(
        (0.0,),
        "GradDrop leak in [0, 1]: 0 masks a task's gradient fully (pure GradDrop), 1 passes it "
        "unchanged. One value for every task, or one per task in the data's task order "
        "(comma-separated).",
    )

    def checks(self) -> list[str]:
        if not self.leak:
            return ["--leak: give one value for every task, or one per task"]
        bad = [v for v in self.leak if not (_finite(v) and 0.0 <= v <= 1.0)]
        if bad:
            return [f"--leak {','.join(map(str, self.leak))}: every leak must lie in [0, 1] "
                    f"(got {', '.join(map(str, bad))})"]
        return []


@register_scheduler(
    "pcgrad",
    impl="dstcli.schedulers.gradient:PCGrad",
    summary="PCGrad: project each task's gradient off the gradients it conflicts with, then "
            "sum",
)
@dataclass(frozen=True)
class PCGradOptions(SchedulerOptions):
    pass


@register_scheduler(
    "cagrad",
    impl="dstcli.schedulers.gradient:CAGrad",
    summary="CAGrad: the update nearest the mean gradient that improves the worst task within "
            "a ball of radius c ||g0||",
)
@dataclass(frozen=True)
class CAGradOptions(SchedulerOptions):
    cagrad_c: float = opt(
        0.4,
        "CAGrad's c >= 0, the radius of the ball around the mean gradient, relative to its norm "
        "(0: the mean gradient; the official code's 0.4, LibMTL's 0.5).",
    )

    def checks(self) -> list[str]:
        if not (_finite(self.cagrad_c) and self.cagrad_c >= 0):
            return [f"--cagrad-c {self.cagrad_c}: must be a finite number >= 0"]
        return []


@register_scheduler(
    "mgda",
    impl="dstcli.schedulers.mgda:MGDAUB",
    summary="MGDA-UB: the minimum-norm convex combination of the task gradients with respect "
            "to the shared representation (Frank-Wolfe)",
)
@dataclass(frozen=True)
class MGDAOptions(SchedulerOptions):
    mgda_norm: Literal["none", "l2", "loss", "loss+"] = opt(
        "loss+",
        "How MGDA-UB scales each task's gradient before the min-norm solve: none, l2 (by its "
        "norm), loss (by the task loss), loss+ (by both, the official setting).",
    )


@register_scheduler(
    "nash",
    impl="dstcli.schedulers.nash:NashMTL",
    summary="Nash-MTL: the bargaining solution alpha > 0 of (G^T G) alpha = 1 / alpha, update "
            "sum_t alpha_t g_t",
)
@dataclass(frozen=True)
class NashOptions(SchedulerOptions):
    nash_max_norm: float = opt(
        1.0,
        "Nash-MTL: clip the shared parameters' gradient to this norm after combining (0: no "
        "clipping).",
    )
    nash_update_every: int = opt(
        1,
        "Nash-MTL: solve for new weights every this many steps; between solves the last "
        "weights are reused with one backward pass.",
    )

    def checks(self) -> list[str]:
        found = []
        if not (_finite(self.nash_max_norm) and self.nash_max_norm >= 0):
            found.append(f"--nash-max-norm {self.nash_max_norm}: must be a finite number >= 0 "
                         "(0 turns clipping off)")
        if self.nash_update_every < 1:
            found.append(f"--nash-update-every {self.nash_update_every}: must be at least 1")
        return found


@register_scheduler(
    "imtl",
    impl="dstcli.schedulers.gradient:IMTL",
    summary="IMTL: learned loss scales (IMTL-L) and the update whose projections on every "
            "task's unit gradient are equal (IMTL-G)",
    variants={"imtl-g": {"imtl_mode": "gradient"}, "imtl-l": {"imtl_mode": "loss"}},
)
@dataclass(frozen=True)
class IMTLOptions(SchedulerOptions):
    imtl_mode: Literal["hybrid", "gradient", "loss"] = opt(
        "hybrid",
        "IMTL: hybrid (the paper's IMTL, both parts), gradient (IMTL-G alone) or loss (IMTL-L "
        "alone, one backward pass).",
    )


@register_scheduler(
    "aligned",
    impl="dstcli.schedulers.gradient:AlignedMTL",
    summary="Aligned-MTL: make the task gradients orthogonal with equal norms (an "
            "eigendecomposition of the K x K Gram matrix), then sum",
)
@dataclass(frozen=True)
class AlignedOptions(SchedulerOptions):
    aligned_scale: Literal["min", "median", "rmse"] = opt(
        "min",
        "Aligned-MTL: the common norm of the aligned gradients, from the singular values of "
        "the task-gradient matrix: min (the paper's), median, or rmse (root mean square).",
    )
