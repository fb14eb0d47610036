"""Gradient-combining baselines on the shared parameters: PCGrad, CAGrad, IMTL, Aligned-MTL.

Every step of these methods takes one gradient per task on the shared parameters (K full
backward passes, `torch.autograd.grad(..., retain_graph=True)`), stacks them as a (K, D) matrix
G, and reduces the K x K Gram matrix `G G^T` to a weight per task; the shared parameters get
`sum_t w_t g_t`. PCGrad's projections, CAGrad's sub-problem, IMTL-G's linear system and
Aligned-MTL's eigendecomposition all need only inner products of task gradients, so each
method is a pure function of the Gram matrix (float64 numpy), tested on worked examples.

A task's own (head) parameters get the plain gradient of its own loss, taken in the same
backward pass as its shared gradient. A task with no labelled sample in the batch is absent
from the step's losses and takes no part (docs/baselines.md section 11); its head keeps
`grad = None`. The helpers here also serve the representation methods (GradDrop, MGDA-UB).

docs/schedulers/gradient.md describes each method, its cost and its departures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from dstcli.errors import DstError
from dstcli.models.multitask import RepresentationSplit
from dstcli.schedulers.base import Scheduler, StepContext, TaskInfo
from dstcli.schedulers.options import SchedulerOptions
from dstcli.schedulers.weighting_tools import StepMeans
from dstcli.seeding import derived_seed

__all__ = [
    "AlignedMTL", "CAGrad", "GradientMethod", "IMTL", "PCGrad", "ParameterSpaceMethod",
    "aligned_basis", "aligned_weights", "cagrad_weights", "imtl_weights", "pcgrad_weights",
    "project_simplex", "require_representation", "split_gradients", "task_gradients",
    "write_gradient",
]

# The stream of PCGrad's random projection orders (see dstcli.seeding); far from the shared
# streams so that a stream added there does not collide with it.
PCGRAD_STREAM = 8_001


# ---------------------------------------------------------------------------------------------
# Per-task gradients


def _accumulate(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None]) -> None:
    for p, g in zip(params, grads, strict=True):
        if g is None:
            continue
        p.grad = g.detach() if p.grad is None else p.grad + g.detach()


def task_gradients(losses: Sequence[torch.Tensor], shared: Sequence[torch.Tensor],
                   own: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Each loss's gradient on the shared parameters, flattened: a (K, D) matrix.

    `own[k]` are the parameters that belong to task k alone (its head): they get loss k's
    gradient in their `.grad`, from the same backward pass. A shared parameter a task's loss
    does not reach (a head that branches early) contributes zeros.
    """
    sizes = [p.numel() for p in shared]
    G = torch.zeros(len(losses), sum(sizes), dtype=shared[0].dtype, device=shared[0].device)
    for k, (loss, params) in enumerate(zip(losses, own, strict=True)):
        last = k == len(losses) - 1
        grads = torch.autograd.grad(loss, [*shared, *params], retain_graph=not last,
                                    allow_unused=True)
        offset = 0
        for size, g in zip(sizes, grads[:len(shared)], strict=True):
            if g is not None:
                G[k, offset:offset + size] = g.reshape(-1)
            offset += size
        _accumulate(params, grads[len(shared):])
    return G


def write_gradient(params: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    """Add a flat (D,) gradient to the `.grad` of the parameters it was flattened from."""
    offset = 0
    for p in params:
        piece = flat[offset:offset + p.numel()].view_as(p)
        p.grad = piece if p.grad is None else p.grad + piece
        offset += p.numel()


def split_gradients(losses: dict[str, torch.Tensor], cuts: Sequence[RepresentationSplit],
                    own: dict[str, Sequence[torch.Tensor]]
                    ) -> list[tuple[list[str], torch.Tensor]]:
    """Each loss's gradient with respect to the heads' copy of each shared representation it
    reads: per cut, (its tasks among `losses`, a (K_cut, B, ...) tensor).

    Partial backward passes, one per task: they run through the heads only and stop at the
    cuts' `z_heads`, leaves. `own[t]` (the parameters between the cuts and task t's output)
    get loss t's gradient in `.grad` from the same pass; a parameter several tasks own (the
    bilateral network's decoder) gets the sum.
    """
    readers = [[t for t in losses if t in c.readers] for c in cuts]
    out = [torch.zeros(len(r), *c.z_heads.shape, dtype=c.z_heads.dtype, device=c.z_heads.device)
           for r, c in zip(readers, cuts, strict=True)]
    names = list(losses)
    for k, task in enumerate(names):
        read = [i for i, r in enumerate(readers) if task in r]
        grads = torch.autograd.grad(losses[task], [*(cuts[i].z_heads for i in read), *own[task]],
                                    retain_graph=k < len(names) - 1, allow_unused=True)
        for i, g in zip(read, grads, strict=False):
            if g is not None:
                out[i][readers[i].index(task)] = g
        _accumulate(own[task], grads[len(read):])
    return list(zip(readers, out, strict=True))


def require_representation(model: nn.Module, method: str, single: bool = False) -> None:
    """Refuse a model without shared tensors the heads read (with `single`: one tensor that
    every head reads)."""
    readers = (model.representation_readers() if hasattr(model, "representation_readers")
               and hasattr(model, "forward_split") else None)
    if readers is None:
        raise DstError(f"scheduler {method} edits the gradient of the shared representation "
                       "z, but this model's heads branch at several depths (or it has no "
                       "shared encoder), so no tensor is read by all the tasks of an input; "
                       "choose a method on the shared parameters (pcgrad, cagrad, nash, imtl, "
                       "aligned)")
    if single and len(readers) != 1:
        raise DstError(f"scheduler {method} needs one shared tensor that every task reads, and "
                       f"this model has {len(readers)} (one per encoder: a bilateral network); "
                       "choose graddrop, which works on each, or a method on the shared "
                       "parameters (pcgrad, cagrad, nash, imtl, aligned)")


def gram_matrix(G: torch.Tensor) -> np.ndarray:
    """`G G^T` as float64 numpy: the small solvers run on the CPU in double precision."""
    flat = G.reshape(G.shape[0], -1).double()  # (K, D); under bf16 autocast z's are bf16
    return (flat @ flat.T).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# Pure solvers on the K x K Gram matrix M = G G^T


def pcgrad_weights(gram: np.ndarray, orders: Sequence[Sequence[int]]) -> np.ndarray:
    """PCGrad as weights on the original gradients: `sum_t g_t' = sum_j w_j g_j`.

    Task t's projected gradient stays a combination `c_t^T G` of the originals, so
    `g_t' . g_j = (c_t^T M)_j`; `orders[t]` is the order in which t meets the others (t itself
    is skipped, and never conflicts with itself anyway).
    """
    K = len(gram)
    total = np.zeros(K)
    for t in range(K):
        coef = np.zeros(K)
        coef[t] = 1.0
        for j in orders[t]:
            if j == t:
                continue
            dot = coef @ gram[:, j]  # g_t' . g_j
            if dot < 0:  # a conflict implies g_j != 0, so the division is safe
                coef[j] -= dot / gram[j, j]
        total += coef
    return total


def project_simplex(v: np.ndarray) -> np.ndarray:
    """The Euclidean projection of v onto the probability simplex (sort-based)."""
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    ranks = np.arange(1, len(v) + 1)
    rho = np.nonzero(u - cumulative / ranks > 0)[0][-1]
    return np.maximum(v - cumulative[rho] / (rho + 1), 0.0)


def cagrad_weights(gram: np.ndarray, c: float, max_iter: int = 500,
                   tol: float = 1e-10) -> np.ndarray:
    """CAGrad's update `(g0 + c ||g0|| g_w / ||g_w||) / (1 + c^2)` as weights on the g_t.

    w minimises `F(w) = g_w . g0 + c ||g0|| ||g_w||` over the simplex (`g0` the mean gradient,
    `g_w = sum w_t g_t`), a convex problem solved by projected gradient descent with
    backtracking. The reference calls scipy's SLSQP; any solver of this convex problem finds
    the same minimum.
    """
    K = len(gram)
    mean = np.full(K, 1.0 / K)
    if c == 0:
        return mean / (1.0 + c**2)

    # F scales with M, and the minimiser does not, so work at a scale near 1.
    A = gram / max(np.trace(gram) / K, np.finfo(float).tiny)
    A_mean = A @ mean
    radius = c * math.sqrt(max(mean @ A_mean, 0.0))  # c ||g0||
    eps = 1e-12  # keeps ||g_w|| differentiable where g_w = 0

    def objective(w: np.ndarray) -> float:
        return float(w @ A_mean + radius * math.sqrt(max(w @ A @ w, 0.0) + eps))

    w, step = mean.copy(), 1.0
    value = objective(w)
    for _ in range(max_iter):
        Aw = A @ w
        grad = A_mean + radius * Aw / math.sqrt(max(w @ Aw, 0.0) + eps)
        while True:
            new = project_simplex(w - step * grad)
            new_value = objective(new)
            moved = new - w
            if new_value <= value + grad @ moved + (moved @ moved) / (2 * step) or step < 1e-12:
                break
            step /= 2
        w, value = new, new_value
        if np.linalg.norm(moved) < tol:
            break
        step *= 2  # let the step grow back after a cautious stretch

    norm_w = math.sqrt(max(w @ A @ w, 0.0))
    lam = radius / norm_w if norm_w > 1e-12 else 0.0
    return (mean + lam * w) / (1.0 + c**2)


def imtl_weights(gram: np.ndarray) -> np.ndarray:
    """IMTL-G: alpha with `sum alpha = 1` whose `d = sum alpha_t g_t` has equal projections on
    every unit gradient u_t.

    With `D = [g_1 - g_t]` and `U = [u_1 - u_t]` (t >= 2): `alpha_{2:K} = g_1 U^T (D U^T)^-1`.
    Every entry is an inner product `g_a . u_b = M_ab / ||g_b||`. A singular `D U^T` (e.g. two
    parallel gradients) gets the least-squares solution instead of the inverse.
    """
    K = len(gram)
    if K == 1:
        return np.ones(1)
    norms = np.sqrt(np.diag(gram))
    GU = gram / norms[None, :]  # GU[a, b] = g_a . u_b
    DU = GU[0, 0] - GU[0, 1:][None, :] - GU[1:, 0][:, None] + GU[1:, 1:]  # (K-1, K-1)
    g1U = GU[0, 0] - GU[0, 1:]  # (K-1,)
    rest = np.linalg.lstsq(DU.T, g1U, rcond=None)[0]
    return np.concatenate([[1.0 - rest.sum()], rest])


def aligned_basis(gram: np.ndarray, scale: str = "min") -> np.ndarray:
    """Aligned-MTL's K x K map B: the columns of `G^T B` are orthogonal with equal norms.

    `M = V diag(lambda) V^T`; eigenvalues below the rank tolerance are dropped;
    `B = sigma V diag(lambda)^-1/2 V^T`, sigma the smallest singular value of G (`min`), the
    median one, or their root mean square (`rmse`).
    """
    lam, V = np.linalg.eigh(gram)
    # The gradients are float32, so eigenvalues below its precision are noise.
    tol = lam.max() * len(gram) * np.finfo(np.float32).eps
    keep = lam > tol
    lam, V = lam[keep], V[:, keep]
    if scale == "min":
        sigma = math.sqrt(lam.min())
    elif scale == "median":
        sigma = math.sqrt(np.sort(lam)[(len(lam) - 1) // 2])  # the lower median, as torch's
    elif scale == "rmse":
        sigma = math.sqrt(lam.mean())
    else:
        raise ValueError(f"--aligned-scale {scale!r}: choose one of min, median, rmse")
    return (V * (sigma / np.sqrt(lam))[None, :]) @ V.T


def aligned_weights(gram: np.ndarray, scale: str = "min") -> np.ndarray:
    """Aligned-MTL's weights: the sum of the aligned gradients is `sum_t alpha_t g_t`."""
    return aligned_basis(gram, scale).sum(axis=1)


# ---------------------------------------------------------------------------------------------
# Schedulers


class GradientMethod(Scheduler):
    """Shared machinery: the model's parameters by role, and per-epoch means of log columns.

    Subclasses call `record({column: {task: value}})` once per step; `end_epoch` reports each
    column's mean over the steps in which the task took part (NaN if it never did).
    """

    method: ClassVar[str] = "gradient"
    log_columns: ClassVar[tuple[str, ...]] = ("w", "G")
    tracked: ClassVar[tuple[str, ...]] = ("w",)
    # Each step combines the tasks' own gradients; on a share of the batch that is another
    # combination than on the whole batch, so several processes are refused.
    distributed_refusal: ClassVar[str] = (
        "combines each task's gradient of a step (gradient surgery): every process would "
        "combine only its share's gradients, and the average of those is not the method")
    supports_loss_scaling: ClassVar[bool] = False

    def __init__(self, options: SchedulerOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        self.shared: list[nn.Parameter] = []
        self.heads: dict[str, list[nn.Parameter]] = {}
        self._logged: dict[str, StepMeans] = {}  # per log column

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if not (hasattr(model, "shared_parameters") and hasattr(model, "task_parameters")):
            raise DstError(f"scheduler {self.method}: the model does not tell its shared "
                           "parameters from its task-specific ones")
        self.shared = [p for p in model.shared_parameters() if p.requires_grad]
        if not self.shared:
            raise DstError(f"scheduler {self.method} combines the tasks' gradients on shared "
                           "parameters, and this model shares none (one network per task?)")
        # A task's own parameters: its head; for the methods on a shared representation, all
        # between that representation and the task's output (the bilateral network's shared
        # decoder included), since the partial backward that gives the task's gradient on z
        # passes through them.
        own = model.head_parameters if self.needs_representation else model.task_parameters
        self.heads = {t: [p for p in own(t) if p.requires_grad] for t in self.names}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(),
                "logged": {c: m.state_dict() for c, m in self._logged.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for column, values in state.get("logged", {}).items():
            self._column(column).load_state_dict(values)

    def _column(self, column: str) -> StepMeans:
        return self._logged.setdefault(column, StepMeans(self.names))

    def present(self, losses: dict[str, torch.Tensor]) -> list[str]:
        """The tasks of this step, in the run's task order."""
        return [t for t in self.names if t in losses and losses[t].requires_grad]

    def record(self, columns: dict[str, dict[str, float]]) -> None:
        for column, values in columns.items():
            self._column(column).add(values)

    def end_epoch(self, epoch: int, losses: dict[str, float],
                  metrics: dict[str, dict[str, float]] | None = None
                  ) -> dict[str, dict[str, Any]]:
        rows = super().end_epoch(epoch, losses, metrics)
        never = dict.fromkeys(self.names, float("nan"))
        means = {c: self._column(c).means(never) for c in self.tracked}
        self._logged.clear()
        for t in self.names if epoch >= 2 else ():
            for column in self.tracked:
                rows[t][column] = means[column][t]
        return rows


class ParameterSpaceMethod(GradientMethod):
    """K full backward passes, a weight per task from the Gram matrix, one combined update."""

    def backward(self, losses: dict[str, torch.Tensor], ctx: StepContext) -> None:
        names = self.present(losses)
        if not names:
            return

        G = task_gradients(self.task_losses(losses, names), self.shared,
                           [self.own_parameters(t) for t in names])  # (K, D)
        weights = self.combine(gram_matrix(G), names, ctx)

        update = torch.as_tensor(weights, dtype=G.dtype, device=G.device) @ G  # (D,)
        write_gradient(self.shared, update)
        self.after_update()
        self.record({"w": dict(zip(names, weights.tolist(), strict=True))})

    def combine(self, gram: np.ndarray, names: list[str], ctx: StepContext) -> np.ndarray:
        """Weights on the task gradients. A task whose gradient is exactly zero takes no part:
        the normalisations of PCGrad, IMTL, Nash-MTL and Aligned-MTL divide by its norm."""
        active = np.diag(gram) > 0
        weights = np.zeros(len(names))
        if active.any():
            sub = gram[np.ix_(active, active)]
            kept = [n for n, a in zip(names, active, strict=True) if a]
            weights[active] = self.solve(sub, kept, ctx)
        return weights

    def solve(self, gram: np.ndarray, names: list[str], ctx: StepContext) -> np.ndarray:
        raise NotImplementedError

    def task_losses(self, losses: dict[str, torch.Tensor], names: list[str]
                    ) -> list[torch.Tensor]:
        return [losses[t] for t in names]

    def own_parameters(self, task: str) -> list[nn.Parameter]:
        return self.heads[task]

    def after_update(self) -> None:
        """Called once the shared gradient is written (Nash-MTL clips it here)."""


class PCGrad(ParameterSpaceMethod):
    """Projecting conflicting gradients (Yu et al., NeurIPS 2020); the update is `sum g_t'`.

    `w` logs each task's coefficient in the update, `sum_t g_t' = sum_j w_j g_j`.
    """

    method = "pcgrad"

    def solve(self, gram: np.ndarray, names: list[str], ctx: StepContext) -> np.ndarray:
        # A stream per step, so a run resumed mid-epoch draws the orders the uninterrupted
        # one drew.
        rng = np.random.default_rng(derived_seed(self.seed, PCGRAD_STREAM, ctx.epoch, ctx.step))
        orders = [rng.permutation(len(names)).tolist() for _ in names]
        return pcgrad_weights(gram, orders)


class CAGrad(ParameterSpaceMethod):
    """Conflict-averse gradient descent (Liu et al., NeurIPS 2021), rescale = 1."""

    method = "cagrad"

    def solve(self, gram: np.ndarray, names: list[str], ctx: StepContext) -> np.ndarray:
        return cagrad_weights(gram, self.options.cagrad_c)


class AlignedMTL(ParameterSpaceMethod):
    """Aligned-MTL (Senushkin et al., CVPR 2023) on the shared parameters."""

    method = "aligned"

    def solve(self, gram: np.ndarray, names: list[str], ctx: StepContext) -> np.ndarray:
        return aligned_weights(gram, self.options.aligned_scale)


class IMTL(ParameterSpaceMethod):
    """Impartial MTL (Liu et al., ICLR 2021).

    IMTL-L learns `s_t` (0 at the start) and trains on `e^{s_t} L_t - s_t`; IMTL-G combines
    the tasks' gradients with the weights of `imtl_weights`. `hybrid` (the paper's IMTL) feeds
    the scaled losses' gradients to IMTL-G, so each head and each `s_t` get the gradient of
    their own task's scaled loss. `w` logs IMTL-G's alpha (1 under `loss`), `scale` `e^{s_t}`.
    """

    method = "imtl"
    log_columns = ("w", "G", "scale")
    tracked = ("w", "scale")

    def __init__(self, options: SchedulerOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        self.mode = options.imtl_mode
        self.log_scale: dict[str, nn.Parameter] = {}
        if self.mode == "gradient":  # no loss scales to log
            self.log_columns, self.tracked = ("w", "G"), ("w",)

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        super().attach(model, optimizer)
        if self.mode == "gradient":
            return
        device = self.shared[0].device
        # One scalar per task, so that an absent task's s keeps grad None and Adam skips it.
        self.log_scale = {t: nn.Parameter(torch.zeros((), device=device)) for t in self.names}
        optimizer.add_param_group({"params": list(self.log_scale.values()), "weight_decay": 0.0})

    def task_losses(self, losses: dict[str, torch.Tensor], names: list[str]
                    ) -> list[torch.Tensor]:
        if self.mode == "gradient":
            return [losses[t] for t in names]
        return [self.log_scale[t].exp() * losses[t] - self.log_scale[t] for t in names]

    def own_parameters(self, task: str) -> list[nn.Parameter]:
        if self.mode == "gradient":
            return self.heads[task]
        return [*self.heads[task], self.log_scale[task]]

    def backward(self, losses: dict[str, torch.Tensor], ctx: StepContext) -> None:
        names = self.present(losses)
        if names and self.mode != "gradient":
            self.record({"scale": {t: float(self.log_scale[t].detach().exp()) for t in names}})
        if self.mode != "loss":
            super().backward(losses, ctx)
            return

        if not names:
            return
        total = sum(self.task_losses(losses, names))
        total.backward()
        self.record({"w": dict.fromkeys(names, 1.0)})

    def solve(self, gram: np.ndarray, names: list[str], ctx: StepContext) -> np.ndarray:
        return imtl_weights(gram)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(),
                "log_scale": {t: float(s.detach()) for t, s in self.log_scale.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            for t, value in state.get("log_scale", {}).items():
                if t in self.log_scale:
                    self.log_scale[t].fill_(value)
