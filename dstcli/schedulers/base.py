"""The contract between the trainer and a training method.

The trainer calls a scheduler at fixed points and never looks inside it:

    attach(model, optimizer)          once, before training (extra parameters, hooks)
    gates(epoch)                      which tasks train in `epoch` (k >= 2)
    step_gates(epoch, step)           the same per step; defaults to the epoch's gates
    backward(losses, ctx)             combine the per-task losses of a step and run backward
    after_step(ctx)                   after the optimizer step (methods that re-evaluate)
    end_epoch(epoch, V, metrics)      the epoch's mean loss per task and its training-set
                                      metrics (the paper derives every method's figures from
                                      the training set); returns log columns

Epoch 1 is the paper's pass without weight update: the trainer measures every task's loss
`V[1, t]` and hands it to `end_epoch(1, V)`, so every method can use it (the `w_t` normaliser,
GradNorm's reference losses, DST's incompleteness). Losses are always dicts keyed by task name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from dstcli.models.multitask import RepresentationSplit
from dstcli.schedulers.options import SchedulerOptions


@dataclass(frozen=True)
class TaskInfo:
    name: str
    kind: str
    depth: int
    labelled: int  # labelled training samples (the paper's c_t)


@dataclass
class StepContext:
    epoch: int
    step: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    counts: dict[str, int]  # labelled samples of each task in this batch
    tasks: dict[str, Any] = field(default_factory=dict)  # name -> TaskSpec
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # on the labelled rows
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    # Set when the scheduler asks for it (`needs_representation`): the shared tensors z, cut.
    representations: list[RepresentationSplit] | None = None
    # Re-run the same batch's forward without gradients (FAMO); returns per-task mean losses.
    reevaluate: Callable[[], dict[str, float]] | None = None
    # The loss scale of `--amp fp16` (identity otherwise): a method that supports loss
    # scaling runs its backward on `scale_loss(total)`; the trainer unscales before the step.
    scale_loss: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda loss: loss)


class Scheduler:
    """Base class: equal weights, every task on. Subclasses override what they change."""

    # Per-task columns this method adds to epochs.csv, beside the trainer's own.
    log_columns: ClassVar[tuple[str, ...]] = ("w", "G")
    # The trainer cuts the shared representation for this method (GradDrop, MGDA-UB).
    needs_representation: ClassVar[bool] = False
    # How a dropped task's loss is measured: "forward" (no_grad in the same pass) or "probe"
    # (on a fixed subset of the training data at the end of the epoch).
    dropped_loss: str = "forward"
    # Why the method would not be itself when each of several processes (torchrun) runs its
    # backward on a share of the batch and the trainer averages the gradients after it; None
    # when it would. It completes "--scheduler NAME ..." in the refusal.
    distributed_refusal: ClassVar[str | None] = None
    # Whether the method's gradients all come from one backward pass of a loss the trainer can
    # scale (`--amp fp16`): methods that read gradients themselves (norms, per-task gradients,
    # Gram matrices) would read them scaled, so they refuse fp16 and take bf16 instead.
    supports_loss_scaling: ClassVar[bool] = True

    def __init__(self, options: SchedulerOptions, tasks: list[TaskInfo], seed: int):
        self.options = options
        self.tasks = list(tasks)
        self.names = [t.name for t in self.tasks]
        self.seed = seed
        self.initial_losses: dict[str, float] = {}
        self.weights: dict[str, float] = {t: 1.0 for t in self.names}

    # -- hooks -----------------------------------------------------------------------------

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called once before training; methods with parameters of their own add them here."""

    def gates(self, epoch: int) -> dict[str, bool]:
        return {t: True for t in self.names}

    def step_gates(self, epoch: int, step: int) -> dict[str, bool]:
        return self.gates(epoch)

    def backward(self, losses: dict[str, torch.Tensor], ctx: StepContext) -> None:
        """Default: `sum_t w_t L_t` over the tasks present, one backward pass."""
        total = sum(self.weights[t] * loss for t, loss in losses.items())
        if isinstance(total, torch.Tensor) and total.requires_grad:
            ctx.scale_loss(total).backward()

    def after_step(self, ctx: StepContext) -> None:
        """Called after the optimizer step."""

    def end_epoch(self, epoch: int, losses: dict[str, float],
                  metrics: dict[str, dict[str, float]] | None = None
                  ) -> dict[str, dict[str, Any]]:
        """Take the epoch's mean loss per task (and its training-set metrics, each with an
        `error` in percent); return {task: {column: value}} for the log."""
        if epoch == 1:
            self.initial_losses = dict(losses)
            self.on_initial_losses()
        gates = self.gates(epoch + 1)
        return {t: {"w": self.weights[t], "G": int(gates[t])} for t in self.names}

    def on_initial_losses(self) -> None:
        """V[1] is known; the default sets the `w_t` normaliser if the method has one."""
        if getattr(self.options, "loss_norm", "none") == "initial":
            self.weights = initial_loss_weights(self.initial_losses)

    # -- resume ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"initial_losses": self.initial_losses, "weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.initial_losses = dict(state["initial_losses"])
        self.weights = dict(state["weights"])


def initial_loss_weights(initial: dict[str, float]) -> dict[str, float]:
    """`w_t = mean_s V[1,s] / V[1,t]`: every task starts at the same weighted loss.

    A task whose first loss is not positive (nothing to equalise) keeps weight 1.
    """
    mean = sum(initial.values()) / len(initial)
    return {t: (mean / v if v > 0 else 1.0) for t, v in initial.items()}
