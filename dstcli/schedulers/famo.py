"""FAMO: Fast Adaptive Multitask Optimization (Liu, Liu, Stone, Liu, NeurIPS 2023).

Task logits `xi` (initialised to 0) give weights `z = softmax(xi)`. The model takes the gradient
of `sum_t z_t log(L_t - L*_t) / c` with `c = sum_t z_t / (L_t - L*_t)` (z and c constant), which
is the gradient of `sum_t z_t L_t / (c L_t)`: weights that sum to 1 applied to the raw losses.
After the optimizer step the same batch is evaluated again without gradients, and

    delta_t = log(L_t^before - L*) - log(L_t^after - L*)

moves the logits: Adam on `J_softmax(xi)^T delta`, so a task whose loss fell least gains
weight. L* = 0 (the losses here are non-negative). Cost: one backward and one extra forward.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from dstcli.schedulers.base import Scheduler, StepContext, TaskInfo
from dstcli.schedulers.specs.weighting import FAMOOptions
from dstcli.schedulers.weighting_tools import model_device, present_tasks, scalar_parameters

# Added to every loss before its logarithm: FAMO needs L - L* > 0, and a batch can reach zero.
LOSS_EPS = 1e-8


class FAMO(Scheduler):
    distributed_refusal: ClassVar[str] = (
        "steers logits of its own from each step's task losses before and after the update: "
        "every process would see only its share's losses, and the logits would drift apart")

    def __init__(self, options: FAMOOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        self.logit_values = dict.fromkeys(self.names, 0.0)
        self.weights = dict.fromkeys(self.names, 1.0 / len(self.names))
        self.logits: dict[str, nn.Parameter] = {}
        self.logit_optimizer: torch.optim.Optimizer | None = None
        self.pending_optimizer_state: dict[str, Any] | None = None
        self.before: dict[str, float] = {}  # this step's losses, for the update after it

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.logits = scalar_parameters(self.logit_values, model_device(model))
        self.logit_optimizer = torch.optim.Adam(list(self.logits.values()),
                                                lr=self.options.famo_lr,
                                                weight_decay=self.options.famo_weight_decay)
        if self.pending_optimizer_state is not None:
            self.logit_optimizer.load_state_dict(self.pending_optimizer_state)
            self.pending_optimizer_state = None

    def softmax(self, tasks: list[str]) -> torch.Tensor:
        """z over the given tasks (the tasks absent from a batch take no share)."""
        return torch.softmax(torch.stack([self.logits[t] for t in tasks]), dim=0)

    def backward(self, losses: dict[str, torch.Tensor], ctx: StepContext) -> None:
        present = present_tasks(self.names, losses)
        self.before = {}
        if not present:
            return

        z = self.softmax(present).detach()  # (k,)
        shifted = torch.stack([losses[t] for t in present]).clamp_min(0) + LOSS_EPS  # (k,)
        c = (z / shifted.detach()).sum()
        ctx.scale_loss((z * shifted.log()).sum().div(c)).backward()
        self.before = {t: float(v) for t, v in zip(present, shifted.detach(), strict=True)}

    def after_step(self, ctx: StepContext) -> None:
        if not self.before or ctx.reevaluate is None:
            return
        # Under --amp fp16 a step skipped for overflow changed nothing: the losses barely move
        # and the logits take a near-zero update, as FAMO would for a step that did not help.
        after = ctx.reevaluate()
        tasks = [t for t in self.before if t in after]
        if not tasks:
            return

        delta = torch.tensor([self.before[t] for t in tasks], dtype=torch.float64).log() \
            - torch.tensor([max(after[t], 0.0) + LOSS_EPS for t in tasks],
                           dtype=torch.float64).log()
        params = [self.logits[t] for t in tasks]
        with torch.enable_grad():
            z = self.softmax(tasks)
            grads = torch.autograd.grad(z, params, grad_outputs=delta.to(z))
        self.logit_optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        self.logit_optimizer.step()

    def end_epoch(self, epoch: int, losses: dict[str, float],
                  metrics: dict[str, dict[str, float]] | None = None
                  ) -> dict[str, dict[str, Any]]:
        if self.logits:
            z = self.softmax(self.names).detach()
            self.weights = {t: float(v) for t, v in zip(self.names, z, strict=True)}
        return super().end_epoch(epoch, losses, metrics)

    def state_dict(self) -> dict[str, Any]:
        if self.logits:
            self.logit_values = {t: p.item() for t, p in self.logits.items()}
        state = {**super().state_dict(), "logits": dict(self.logit_values)}
        if self.logit_optimizer is not None:
            state["logit_optimizer"] = self.logit_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.logit_values = dict(state["logits"])
        with torch.no_grad():
            for t, p in self.logits.items():
                p.fill_(self.logit_values[t])
        if "logit_optimizer" in state:
            if self.logit_optimizer is None:
                self.pending_optimizer_state = state["logit_optimizer"]
            else:
                self.logit_optimizer.load_state_dict(state["logit_optimizer"])
