"""GradNorm (Chen et al., ICML 2018): learned task weights that balance gradient norms.

Each step, with `W` the last shared layer's weight and learned weights `w_t`:

    G_t = w_t |grad_W L_t|,  G_bar = mean G_t,  r_t = (L_t / L_t(0)) / mean_j (L_j / L_j(0))
    L_grad = sum_t |G_t - sg[G_bar r_t^alpha]|

The network is trained on `sum_t sg[w_t] L_t`; the weights get only dL_grad/dw, step in their
own parameter group of the model's optimizer, and are floored and rescaled to sum K after every
step. L_t(0) is V[1, t], the task's mean loss over the pass without update (epoch 1).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from dstcli.errors import DstError
from dstcli.schedulers.base import Scheduler, StepContext, TaskInfo
from dstcli.schedulers.specs.weighting import GradNormOptions
from dstcli.schedulers.weighting_tools import present_tasks, scalar_parameters

# Floor of a weight before the rescaling: a large --weight-lr can push a weight to zero or
# below, which would switch its task off or flip its gradient.
MIN_WEIGHT = 1e-3
# Floor of a reference loss, so that a task already at zero loss cannot divide by zero.
MIN_REFERENCE = 1e-12


class GradNorm(Scheduler):
    """K partial backwards to W for the gradient norms, then one full backward."""

    # The gradient norms G_t are read from the gradients themselves (scaled under fp16).
    supports_loss_scaling: ClassVar[bool] = False

    def __init__(self, options: GradNormOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        self.alpha = options.alpha
        self.w: dict[str, nn.Parameter] = {}
        self.shared_weights: list[torch.Tensor] = []
        # A task's first batch loss, standing in for L_t(0) only if V[1] is not known.
        self.first_losses: dict[str, float] = {}

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        weights = getattr(model, "last_shared_weights", None)
        if weights is None or not model.shared_parameters():
            raise DstError("gradnorm balances gradients at a layer every task shares, and this "
                           "network shares none (an stl model?); train it with --scheduler mtl "
                           "or another multi-task method")
        self.shared_weights = list(weights())

        self.w = scalar_parameters(self.weights, self.shared_weights[0].device)
        lr = self.options.weight_lr
        if lr is None:
            lr = optimizer.param_groups[0]["lr"]
        optimizer.add_param_group({"params": list(self.w.values()), "lr": lr,
                                   "weight_decay": 0.0})

    def reference_losses(self, present: list[str], losses: dict[str, torch.Tensor]
                         ) -> dict[str, float]:
        """L_t(0): V[1, t] when the pass without update measured it, else the first batch's."""
        for t in present:
            if t not in self.first_losses:
                self.first_losses[t] = float(losses[t].detach())
        out = {}
        for t in present:
            v1 = self.initial_losses.get(t, float("nan"))
            reference = v1 if v1 > 0 else self.first_losses[t]  # NaN > 0 is False
            out[t] = max(reference, MIN_REFERENCE)
        return out

    def backward(self, losses: dict[str, torch.Tensor], ctx: StepContext) -> None:
        present = present_tasks(self.names, losses)
        if len(present) < 2:
            # One task has nothing to be balanced against: train it, leave the weights be.
            if present:
                (self.w[present[0]].detach() * losses[present[0]]).backward()
            return
        reference = self.reference_losses(present, losses)

        norms = []
        for t in present:
            grads = torch.autograd.grad(losses[t], self.shared_weights, retain_graph=True,
                                        allow_unused=True)
            grads = [g for g in grads if g is not None]
            if not grads:
                raise DstError(f"gradnorm: the loss of task {t} does not pass through the "
                               "model's last shared layer, so its gradient norm there is "
                               "undefined; the model's last_shared_weights() must be read "
                               "by every task")
            # W may be several tensors (one per encoder of a bilateral network): one norm.
            norms.append(torch.sqrt(sum((g ** 2).sum() for g in grads)))
        w = torch.stack([self.w[t] for t in present])  # (k,)
        G = w * torch.stack(norms).detach()  # (k,), a function of w alone
        ratios = torch.stack([losses[t].detach() / reference[t] for t in present])
        target = G.detach().mean() * (ratios / ratios.mean()) ** self.alpha
        grad_loss = (G - target).abs().sum()
        w_grads = torch.autograd.grad(grad_loss, [self.w[t] for t in present])

        weighted = sum(w[i].detach() * losses[t] for i, t in enumerate(present))
        weighted.backward()
        # Set after the network's backward so that nothing else can add to them.
        for t, grad in zip(present, w_grads, strict=True):
            self.w[t].grad = grad

    def after_step(self, ctx: StepContext) -> None:
        with torch.no_grad():
            values = torch.stack([self.w[t] for t in self.names]).clamp_min(MIN_WEIGHT)
            values = values * (len(self.names) / values.sum())
            for t, v in zip(self.names, values, strict=True):
                self.w[t].copy_(v)
        self.weights = {t: self.w[t].item() for t in self.names}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "first_losses": dict(self.first_losses)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.first_losses = dict(state.get("first_losses", {}))
        with torch.no_grad():
            for t, p in self.w.items():
                p.fill_(self.weights[t])
