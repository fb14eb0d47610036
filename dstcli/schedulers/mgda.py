"""MGDA-UB (Sener and Koltun, NeurIPS 2018): the min-norm combination of the tasks' gradients
with respect to the shared representation z, the cheap upper bound of MGDA.

Each step: K partial backward passes through the heads give `grad_z L_t`; they are scaled by
`--mgda-norm`; Frank-Wolfe (with away steps) finds alpha on the simplex minimising
`||sum_t alpha_t grad_z L_t||`; the encoder gets the gradient of `sum_t alpha_t L_t` through z
(one trunk backward). The heads keep their own tasks' plain gradients, as in the paper's
Algorithm 2 (the official code weights them by alpha too, LibMTL does not).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dstcli.schedulers.base import StepContext
from dstcli.schedulers.gradient import (
    GradientMethod,
    gram_matrix,
    require_representation,
    split_gradients,
)

__all__ = ["MGDAUB", "gradient_normalisers", "min_norm_weights"]


def min_norm_weights(gram: np.ndarray, max_iter: int = 250, tol: float = 1e-5) -> np.ndarray:
    """alpha on the simplex minimising `||sum_t alpha_t g_t||^2 = alpha^T M alpha`.

    Frank-Wolfe with away steps, from the uniform point, with exact line search; it stops after
    `max_iter` steps (the official solver's 250) or once the duality gap falls below `tol`
    times the largest squared gradient norm. Plain Frank-Wolfe cannot take weight off a task
    it should drop except in ever smaller steps (about 2% off the minimum after 250 steps on
    four random gradients); the away step moves weight off the worst task in the support, and
    the iteration converges linearly to the same minimum.
    """
    K = len(gram)
    alpha = np.full(K, 1.0 / K)
    scale = max(float(np.max(np.diag(gram))), np.finfo(float).tiny)
    for _ in range(max_iter):
        M_alpha = gram @ alpha  # half the objective's gradient
        value = alpha @ M_alpha
        toward = int(np.argmin(M_alpha))
        support = np.nonzero(alpha > 0)[0]
        away = int(support[np.argmax(M_alpha[support])])
        gap = value - M_alpha[toward]  # bounds half the distance to the minimum
        if gap <= tol * scale:
            break

        if gap >= M_alpha[away] - value:
            direction = -alpha.copy()
            direction[toward] += 1.0
            longest = 1.0
        else:
            direction = alpha.copy()
            direction[away] -= 1.0
            longest = alpha[away] / (1.0 - alpha[away]) if alpha[away] < 1 else np.inf
        curvature = direction @ gram @ direction
        if curvature <= 0:
            break
        step = min(max(-(direction @ M_alpha) / curvature, 0.0), longest)
        alpha = np.maximum(alpha + step * direction, 0.0)
        alpha /= alpha.sum()
    return alpha


def gradient_normalisers(gram: np.ndarray, losses: np.ndarray, mode: str) -> np.ndarray:
    """The official normalisers: none 1, l2 `||g_t||`, loss `L_t`, loss+ `L_t ||g_t||`."""
    norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
    found = {"none": np.ones(len(gram)), "l2": norms, "loss": losses,
             "loss+": losses * norms}
    if mode not in found:
        raise ValueError(f"--mgda-norm {mode!r}: choose one of {', '.join(found)}")
    # A zero normaliser comes with a zero gradient (or a zero loss): leave that gradient as is.
    return np.where(found[mode] > 0, found[mode], 1.0)


class MGDAUB(GradientMethod):
    """MGDA-UB on the shared representation; `w` logs alpha (sums to 1)."""

    method = "mgda"
    needs_representation = True

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        require_representation(model, self.method, single=True)
        super().attach(model, optimizer)

    def backward(self, losses: dict[str, torch.Tensor], ctx: StepContext) -> None:
        names = self.present(losses)
        if not names or not ctx.representations:
            return

        rep, = ctx.representations
        (_, grads), = split_gradients({t: losses[t] for t in names}, [rep],
                                      {t: self.heads[t] for t in names})  # (K, B, C, H, W)
        gram = gram_matrix(grads)
        values = np.array([float(losses[t].detach()) for t in names])
        norms = gradient_normalisers(gram, values, self.options.mgda_norm)
        alpha = min_norm_weights(gram / np.outer(norms, norms))

        weights = torch.as_tensor(alpha, dtype=grads.dtype, device=grads.device)
        combined = torch.tensordot(weights, grads, dims=1)  # (B, C, H, W)
        rep.z.backward(combined)
        self.record({"w": dict(zip(names, alpha.tolist(), strict=True))})
