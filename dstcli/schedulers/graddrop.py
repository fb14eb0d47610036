"""GradDrop (Chen et al., NeurIPS 2020, "Just Pick a Sign"), on the shared representation z.

The forward pass is unchanged. Backward (docs/baselines.md section 6): take every task's
gradient with respect to z through its head alone (K partial backward passes); per element of
z, sum each task's gradient over the batch after multiplying by sign(z); the positive sign
purity P of those sums is the probability of keeping the positive gradients there, and a
uniform draw U picks the sign kept. The trunk gets `sum_t (leak_t + (1 - leak_t) M_t) grad_z L_t`
(one trunk backward); the heads keep their own tasks' plain gradients.

A network with several shared tensors (the bilateral network: each encoder's output, read by
the tasks of its input, matching by both) gets GradDrop on each, among the tasks that read it,
as docs/baselines.md recommends for multi-input networks; each encoder gets its own masked sum.

Left out: the authors' optional monotone transform f(P) and their `keep_gradnorm_constant`
rescaling (off by default there too).
"""

from __future__ import annotations

import torch
from torch import nn

from dstcli.errors import DstError
from dstcli.schedulers.base import StepContext, TaskInfo
from dstcli.schedulers.gradient import GradientMethod, require_representation, split_gradients
from dstcli.schedulers.options import SchedulerOptions
from dstcli.seeding import derived_seed

__all__ = ["GradDrop", "graddrop_combine", "graddrop_masks"]

# The stream of GradDrop's uniform draws U (see dstcli.seeding); far from the shared streams.
GRADDROP_STREAM = 6_001


def graddrop_masks(z: torch.Tensor, grads: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """GradDrop's keep masks, one per task and element of z: a (K, ...) 0/1 tensor.

    z: (B, ...) the shared representation; grads: (K, B, ...) each task's gradient with
    respect to z; u: (...) uniform draws in [0, 1), one per element.
    """
    signal = (z.sign().unsqueeze(0) * grads).sum(dim=1)  # (K, ...) batch-separated signal
    total, spread = signal.sum(dim=0), signal.abs().sum(dim=0)  # (...)
    # Where every task's signal is 0, the ratio is 0/0; any P there masks nothing (no s_t != 0
    # to keep), so the floor only avoids a NaN and changes no other element.
    purity = 0.5 * (1.0 + total / spread.clamp_min(torch.finfo(spread.dtype).tiny))
    keep_positive = (purity > u) & (signal > 0)
    keep_negative = (purity < u) & (signal < 0)
    return (keep_positive | keep_negative).to(grads.dtype)


def graddrop_combine(grads: torch.Tensor, masks: torch.Tensor, leak: torch.Tensor
                     ) -> torch.Tensor:
    """The gradient sent into the trunk: `sum_t (leak_t + (1 - leak_t) M_t) * grad_t`.

    grads: (K, B, ...); masks: (K, ...), broadcast over the batch; leak: (K,).
    """
    shape = (-1,) + (1,) * (masks.dim() - 1)
    factor = leak.view(shape) + (1.0 - leak.view(shape)) * masks  # (K, ...)
    return (factor.unsqueeze(1) * grads).sum(dim=0)  # (B, ...)


class GradDrop(GradientMethod):
    """Gradient sign dropout at z; `keep` logs the fraction of each task's gradient elements
    that reached the trunk (leak included), `w` is 1 (GradDrop has no task weights)."""

    method = "graddrop"
    needs_representation = True
    log_columns = ("w", "G", "keep")
    tracked = ("keep",)

    def __init__(self, options: SchedulerOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        leak = tuple(options.leak)
        if len(leak) not in (1, len(self.names)):
            raise DstError(f"--leak {','.join(map(str, leak))}: give one value for every task "
                           f"or one per task ({len(self.names)}: {', '.join(self.names)})")
        self.leak = dict(zip(self.names, leak * len(self.names) if len(leak) == 1 else leak,
                             strict=True))
        self._generator = torch.Generator()

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        require_representation(model, self.method)
        super().attach(model, optimizer)

    def uniform(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        # Drawn on the CPU from the step's own stream (see backward): the same draws on any
        # device, and a run resumed mid-epoch draws what the uninterrupted one drew.
        return torch.rand(shape, generator=self._generator).to(device)

    def backward(self, losses: dict[str, torch.Tensor], ctx: StepContext) -> None:
        names = self.present(losses)
        cuts = ctx.representations
        if not names or not cuts:
            return

        per_cut = split_gradients({t: losses[t] for t in names}, cuts,
                                  {t: self.heads[t] for t in names})
        self._generator.manual_seed(derived_seed(self.seed, GRADDROP_STREAM, ctx.epoch,
                                                 ctx.step))
        kept: dict[str, list[float]] = {}
        for i, (rep, (readers, grads)) in enumerate(zip(cuts, per_cut, strict=True)):
            if not readers:
                continue
            z = rep.z.detach()
            u = self.uniform(z.shape[1:], z.device)  # (C, H, W)
            masks = graddrop_masks(z, grads, u)  # (K, C, H, W), grads (K, B, C, H, W)
            leak = torch.tensor([self.leak[t] for t in readers], dtype=grads.dtype,
                                device=grads.device)
            # Two cuts of one trunk would share its graph; the bilateral's encoders do not.
            rep.z.backward(graddrop_combine(grads, masks, leak), retain_graph=i < len(cuts) - 1)
            share = leak + (1.0 - leak) * masks.flatten(1).mean(dim=1)  # (K,)
            for t, value in zip(readers, share.tolist(), strict=True):
                kept.setdefault(t, []).append(value)
        self.record({"keep": {t: sum(v) / len(v) for t, v in kept.items()}})
