"""Nash-MTL (Navon et al., ICML 2022): the Nash bargaining solution of the task gradients.

The weights alpha > 0 solve `(G G^T) alpha = 1 / alpha` (elementwise), G the (K, D) matrix of
task gradients on the shared parameters; the update is `sum_t alpha_t g_t`, its norm clipped.

The reference (`AvivNavon/nash-mtl`, `methods/weight_methods.py`) reaches alpha through up to
20 convex sub-problems solved by cvxpy/ECOS, each linearising the concave part of the
constraint. We solve the same system directly: it is the stationarity condition of the strictly
convex `f(b) = 1/2 b^T M b - sum_t log b_t` on b > 0, so its solution is f's unique minimiser,
which damped Newton reaches in a handful of K x K solves (f is self-concordant, so the damped
step keeps b positive and converges from any start). No cvxpy dependency, and alpha is solved
to tolerance rather than stopped after 20 rounds. Where no solution exists (some positive
combination of the gradients is zero: f is unbounded below), we keep the previous weights, as
the reference does when its solver fails.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from dstcli.schedulers.base import StepContext, TaskInfo
from dstcli.schedulers.gradient import ParameterSpaceMethod, write_gradient
from dstcli.schedulers.options import SchedulerOptions

__all__ = ["NashMTL", "nash_weights"]


def nash_weights(gram: np.ndarray, start: np.ndarray | None = None, max_iter: int = 100,
                 tol: float = 1e-9) -> tuple[np.ndarray, bool]:
    """alpha > 0 with `gram @ alpha = 1 / alpha`, and whether it was found.

    Solved on `M = gram / ||gram||_F` (as the reference normalises) for b, then rescaled:
    `alpha = b / sqrt(||gram||_F)` solves the original system. `start` is a guess for alpha
    (the previous step's), rescaled the same way.
    """
    K = len(gram)
    scale = float(np.linalg.norm(gram))
    if not (scale > 0 and math.isfinite(scale)):
        return np.ones(K), False
    M = gram / scale

    b = np.ones(K)
    if start is not None and np.all(np.isfinite(start)) and np.all(start > 0):
        b = np.asarray(start, dtype=np.float64) * math.sqrt(scale)

    for _ in range(max_iter):
        grad = M @ b - 1.0 / b
        hessian = M + np.diag(1.0 / b**2)
        try:
            step = np.linalg.solve(hessian, grad)
        except np.linalg.LinAlgError:
            # Only when b has run off to where 1 / b^2 vanishes: no solution to find.
            return np.ones(K), False
        decrement = math.sqrt(max(float(grad @ step), 0.0))  # Newton decrement of f
        if decrement < tol:  # near the minimum the residual is of the decrement's order
            break
        # The damped step 1 / (1 + decrement) stays inside the Dikin ellipsoid, so b stays > 0.
        b = b - (1.0 if decrement < 0.25 else 1.0 / (1.0 + decrement)) * step

    residual = np.linalg.norm(M @ b - 1.0 / b) / np.linalg.norm(1.0 / b)
    found = bool(np.all(b > 0) and np.all(np.isfinite(b)) and residual < 1e-6)
    return b / math.sqrt(scale), found


class NashMTL(ParameterSpaceMethod):
    """Nash-MTL on the shared parameters; `w` logs alpha (on the raw gradients)."""

    method = "nash"

    def __init__(self, options: SchedulerOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        self.alpha: dict[str, float] = {}
        self.steps = 0
        self.failures = 0  # steps of this epoch whose system had no solution

    def backward(self, losses: dict[str, torch.Tensor], ctx: StepContext) -> None:
        names = self.present(losses)
        if not names:
            return

        every = self.options.nash_update_every
        solve = self.steps % every == 0 or any(t not in self.alpha for t in names)
        self.steps += 1
        if solve:
            super().backward(losses, ctx)
            return

        # Between solves: the last alpha, one backward for the shared parameters and one
        # through the heads alone, which keep their own tasks' plain gradients.
        alpha = [self.alpha[t] for t in names]
        weighted = sum(a * losses[t] for a, t in zip(alpha, names, strict=True))
        grads = torch.autograd.grad(weighted, self.shared, retain_graph=True, allow_unused=True)
        flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                          for p, g in zip(self.shared, grads, strict=True)])
        write_gradient(self.shared, flat)
        heads = [p for t in names for p in self.heads[t]]
        # Tasks without parameters of their own (the bilateral network's segmentation and
        # matching) leave nothing to differentiate here.
        head_grads = torch.autograd.grad(sum(losses[t] for t in names), heads,
                                         allow_unused=True) if heads else ()
        for p, g in zip(heads, head_grads, strict=True):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        self.after_update()
        self.record({"w": dict(zip(names, alpha, strict=True))})

    def solve(self, gram: np.ndarray, names: list[str], ctx: StepContext) -> np.ndarray:
        previous = (np.array([self.alpha[t] for t in names])
                    if all(t in self.alpha for t in names) else None)
        alpha, found = nash_weights(gram, start=previous)
        if not found and previous is not None:
            # A warm start far from the solution (a task's gradient jumped in size since the
            # last solve) can outlast the Newton iterations; a cold start cannot.
            alpha, found = nash_weights(gram)
        if not found:
            self.failures += 1
            # The reference's fallback: the last weights, ones before any solve.
            alpha = previous if previous is not None else np.ones(len(names))
        self.alpha.update(zip(names, alpha.tolist(), strict=True))
        return alpha

    def after_update(self) -> None:
        if self.options.nash_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.shared, self.options.nash_max_norm)

    def end_epoch(self, epoch: int, losses: dict[str, float],
                  metrics: dict[str, dict[str, float]] | None = None
                  ) -> dict[str, dict[str, Any]]:
        if self.failures:
            warnings.warn(f"nash: in epoch {epoch}, {self.failures} step(s) had no bargaining "
                          "solution (a positive combination of the task gradients vanished); "
                          "they reused the previous weights", stacklevel=2)
        self.failures = 0
        return super().end_epoch(epoch, losses, metrics)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "alpha": dict(self.alpha), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.alpha = dict(state.get("alpha", {}))
        self.steps = int(state.get("steps", 0))
