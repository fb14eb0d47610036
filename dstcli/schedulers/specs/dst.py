"""Options of the dropping methods: `dst` (Dropped Scheduled Task) and `random` (fixed P).

Both switch whole tasks off for an epoch (or a step) by a Bernoulli gate with the task's
activation probability P; they differ only in where P comes from. torch-free, like every spec,
so that `dst --help` and `dst replay` stay fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dstcli.schedulers import register_scheduler
from dstcli.schedulers.options import LOSS_NORM_HELP, SchedulerOptions, opt

LAMBDA_NAMES = ("l_d", "l_c", "l_u", "l_r", "l_b")
# The same slack the rule itself allows, so a value accepted here is accepted there.
LAMBDA_SUM_TOLERANCE = 1e-6

DROPPED_LOSS_HELP = (
    "How a dropped task's loss V is still measured each epoch. forward: in the same pass under "
    "no_grad (exact, costs that task's forward); probe: on a fixed subset of the training data "
    "after the epoch (cheaper for deep heads)."
)
GATE_EVERY_HELP = (
    "epoch: one Bernoulli draw per task per epoch, as in the paper; step: a fresh draw every "
    "step from the epoch's probabilities (beyond the paper)."
)


def _gate_problems(options: SchedulerOptions) -> list[str]:
    """Gate options that do not go together (the base class checks each one's choices)."""
    found = []
    if getattr(options, "gate_every", None) == "step" and getattr(
            options, "dropped_loss", None) == "probe":
        # A task off in only some steps would skip its forward there and be probed only if it
        # was off all epoch: its V would cover the steps it trained, not its labelled samples.
        found.append("--gate-every step with --dropped-loss probe: a task dropped in some steps "
                     "of an epoch would have its loss measured on the other steps only; use "
                     "--dropped-loss forward with --gate-every step")
    return found


def _unit_interval(value: float, flag: str, meaning: str) -> list[str]:
    if isinstance(value, int | float) and 0.0 <= value <= 1.0:
        return []
    return [f"{flag} {value!r}: {meaning} must be a number in [0, 1]"]


@register_scheduler(
    "dst",
    impl="dstcli.schedulers.dst:DSTScheduler",
    summary="Dropped Scheduled Task: each task trains in an epoch with a probability from its "
            "depth, labels, incompleteness and stagnation",
)
@dataclass(frozen=True)
class DSTOptions(SchedulerOptions):
    lambdas: tuple[float, ...] = opt(
        (0.2, 0.2, 0.2, 0.2, 0.2),
        "Weights of the metrics in P, in the order l_d,l_c,l_u,l_r,l_b (depth, labelled count, "
        "incompleteness, stagnation, regulariser): 5 values in [0,1] summing to 1.",
    )
    beta: float = opt(0.1, "Discount of the moving average R' of the loss decrease, in [0,1]; "
                           "larger follows recent epochs more.")
    loss_norm: Literal["initial", "none"] = opt("initial", LOSS_NORM_HELP)
    dropped_loss: Literal["forward", "probe"] = opt("forward", DROPPED_LOSS_HELP)
    gate_every: Literal["epoch", "step"] = opt("epoch", GATE_EVERY_HELP)
    count_metric: Literal["ratio", "inverse"] = opt(
        "ratio", "P_c of a task. ratio: c_t / max(c) (docs/dst-spec.md); inverse: min(c) / c_t, "
                 "the paper's Eq. 22 ablation that favours tasks with few labels.",
    )

    def checks(self) -> list[str]:
        return lambda_problems(self.lambdas) + _unit_interval(
            self.beta, "--beta", "the discount of R'") + _gate_problems(self)


def lambda_problems(lambdas: Sequence[float]) -> list[str]:
    """What is wrong with a --lambdas value; empty when it is 5 weights in [0, 1] summing to 1."""
    given = ",".join(str(x) for x in lambdas)
    names = ",".join(LAMBDA_NAMES)
    if len(lambdas) != len(LAMBDA_NAMES):
        return [f"--lambdas {given}: give {len(LAMBDA_NAMES)} weights ({names}), got "
                f"{len(lambdas)}; e.g. --lambdas 0.2,0.2,0.2,0.2,0.2"]
    outside = [f"{n}={x}" for n, x in zip(LAMBDA_NAMES, lambdas, strict=True)
               if not 0.0 <= x <= 1.0]
    if outside:
        return [f"--lambdas {given}: every weight must lie in [0, 1]; "
                f"out of range: {', '.join(outside)}"]
    total = math.fsum(lambdas)
    if abs(total - 1.0) > LAMBDA_SUM_TOLERANCE:
        return [f"--lambdas {given}: the weights must sum to 1 (they sum to {total:g}), so that "
                "P stays a probability; scale them, e.g. --lambdas 0.2,0.2,0.2,0.2,0.2"]
    return []


@register_scheduler(
    "random",
    impl="dstcli.schedulers.dst:RandomDrop",
    summary="Random task drop: every task trains in an epoch with the same fixed probability",
    variants={"random-0.5": {"p": 0.5}, "random-0.75": {"p": 0.75}},
)
@dataclass(frozen=True)
class RandomDropOptions(SchedulerOptions):
    p: float = opt(0.5, "Activation probability of every task, in [0,1]; 1 trains every task "
                        "every epoch (MTL with the same normaliser).")
    loss_norm: Literal["initial", "none"] = opt("initial", LOSS_NORM_HELP)
    dropped_loss: Literal["forward", "probe"] = opt("forward", DROPPED_LOSS_HELP)
    gate_every: Literal["epoch", "step"] = opt("epoch", GATE_EVERY_HELP)

    def checks(self) -> list[str]:
        return _unit_interval(self.p, "--p", "the activation probability") + _gate_problems(
            self)


def carry_forward_missing(losses: Sequence[Sequence[float]], tasks: Sequence[str]
                          ) -> list[list[float]]:
    """The loss history with each missing V[k, t] (NaN) replaced by the task's previous value.

    A task dropped with `--dropped-loss probe` whose probe subset holds none of its labelled
    samples has no loss for that epoch. Carrying the last value forward keeps its
    incompleteness where it was and makes its decrease that epoch 0, which the stagnancy term
    reads as an epoch without progress (R' decays by 1 - beta), instead of one NaN making every
    task's P undefined (the means in P_u and P_r run over all tasks). The spec does not cover
    a missing loss; this is the conservative reading. It lives
    here, torch-free, so that the scheduler and `dst replay` apply the same rule.

    Raises ValueError when V[1, t] itself is missing: nothing precedes it.
    """
    filled: list[list[float]] = []
    for k, row in enumerate(losses):
        if len(row) != len(tasks):
            raise ValueError(f"epoch {k + 1} has {len(row)} losses for {len(tasks)} tasks")
        current = []
        for t, v in enumerate(row):
            if math.isnan(v):
                if not filled:
                    raise ValueError(f"task {tasks[t]} has no loss in epoch 1 (no labelled "
                                     "sample was measured), so DST has no V[1] to start from")
                v = filled[-1][t]
            current.append(float(v))
        filled.append(current)
    return filled


def stl_run_folders(path: Path) -> list[Path]:
    """An STL run folder, or a folder of them (several seeds), each with its epochs.csv."""
    from dstcli.errors import DstError

    if (path / "epochs.csv").is_file():
        return [path]
    runs = sorted(p for p in path.iterdir() if (p / "epochs.csv").is_file()) \
        if path.is_dir() else []
    if not runs:
        raise DstError(f"{path} is neither an stl run folder (with epochs.csv) nor a folder of "
                       "them; train one with `dst train --scheduler stl`")
    return runs


def read_stl_losses(path: Path) -> dict[str, float]:
    """Each task's lowest training loss V over the STL run's training epochs (the mean over
    runs when the folder holds several), the point where early stop switches the task off."""
    import csv

    from dstcli.errors import DstError

    best: dict[str, list[float]] = {}
    for run in stl_run_folders(Path(path)):
        lowest: dict[str, float] = {}
        with open(run / "epochs.csv", newline="") as f:
            for row in csv.DictReader(f):
                value = float(row["V"]) if row.get("V") not in (None, "") else math.nan
                if row.get("phase") == "train" and math.isfinite(value):
                    lowest[row["task"]] = min(value, lowest.get(row["task"], math.inf))
        if not lowest:
            raise DstError(f"{run / 'epochs.csv'} has no training epoch to take losses from")
        for task, value in lowest.items():
            best.setdefault(task, []).append(value)
    return {task: sum(values) / len(values) for task, values in best.items()}


@register_scheduler(
    "early-stop",
    impl="dstcli.schedulers.dst:EarlyStop",
    summary="MTL that stops each task for good once its training loss reaches its STL loss "
            "(the paper's Table 7 ablation)",
)
@dataclass(frozen=True)
class EarlyStopOptions(SchedulerOptions):
    stl_results: str | None = opt(None, "Single-task losses to compare against (required): "
                                        "an stl run folder (its epochs.csv) or a folder of "
                                        "them (averaged); each task stops for good once its "
                                        "training loss reaches its lowest STL training loss.")
    loss_norm: Literal["initial", "none"] = opt("none", LOSS_NORM_HELP)
    dropped_loss: Literal["forward", "probe"] = opt("forward", DROPPED_LOSS_HELP)
    gate_every: Literal["epoch", "step"] = opt("epoch", GATE_EVERY_HELP)

    def checks(self) -> list[str]:
        from dstcli.errors import DstError

        found = _gate_problems(self)
        if self.stl_results is None:
            return found + ["--stl-results is required by early-stop: train an stl run first "
                            "(dst train --scheduler stl) and pass its run folder"]
        try:
            read_stl_losses(Path(self.stl_results))
        except DstError as e:
            found.append(f"--stl-results: {e}")
        return found
