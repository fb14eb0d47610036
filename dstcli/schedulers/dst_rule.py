"""The DST activation-probability rule as one pure function of the loss history.

Dropped Scheduled Task (DST) keeps task `t` active in the epoch after `k` with probability

    P[k,t] = l_d P_d + l_c P_c + l_u P_u + l_r P_r + l_b P_b

where `P_d` favours deep tasks, `P_c` tasks with many labelled samples, `P_u` tasks whose
incompleteness `I = V[k] / V[1]` is at least the mean, `P_r` stagnant tasks (a small smoothed
rate of loss decrease `R'`), and `P_b = 1` keeps every task from being switched off for good.

`docs/dst-spec.md` in the shared docs is the authority: it settles the points the paper (section
2.1, Algorithm 1) leaves open, e.g. `R` is the relative *decrease* of the loss, and it fixes the
guards for zero losses implemented here. Nothing here imports torch, so the rule can be tested,
plotted and replayed on a logged run.

Row 0 of every array is epoch `k = 1`, the pass without weight update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["DSTComponents", "dst_components", "dst_probabilities"]

# Floor for P_u in R = R_local / P_u: a task whose loss reached 0 has P_u = 0 and must not
# divide by zero (spec, "Dynamic metrics").
_MIN_P_U = 1e-8
_LAMBDA_SUM_TOL = 1e-6
_LAMBDA_NAMES = ("l_d", "l_c", "l_u", "l_r", "l_b")


@dataclass(frozen=True, eq=False)
class DSTComponents:
    """Every intermediate of the rule, each an (E, K) float64 array; row 0 is epoch k = 1.

    `P_d`, `P_c` and `P_b` do not change over epochs and are broadcast to (E, K) so that every
    field can be logged and plotted the same way.
    """

    P_d: np.ndarray  # depth metric
    P_c: np.ndarray  # labelled-count metric
    P_u: np.ndarray  # relative incompleteness
    P_r: np.ndarray  # stagnancy
    P_b: np.ndarray  # regulariser, always 1
    I: np.ndarray  # noqa: E741  incompleteness V[k] / V[1], the paper's name
    R: np.ndarray  # local rate of loss decrease, scaled by 1 / P_u
    R_prime: np.ndarray  # exponential moving average of the non-negative R
    P: np.ndarray  # activation probability


def _vector(name: str, values, n_tasks: int, problems: list[str]) -> np.ndarray | None:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        problems.append(f"{name} must be a sequence of numbers, got {values!r}")
        return None
    if arr.ndim != 1 or arr.shape[0] != n_tasks:
        problems.append(
            f"{name} must hold one value per task (length {n_tasks}, the number of columns "
            f"of losses), got shape {arr.shape}"
        )
        return None
    if not np.all(np.isfinite(arr)):
        problems.append(f"{name} must be finite, got {arr.tolist()}")
        return None
    return arr


def _validate(losses, depths, counts, lambdas, beta, count_metric):
    """Check every argument, collect all problems, raise one ValueError listing them."""
    problems: list[str] = []

    V = None
    try:
        V = np.asarray(losses, dtype=np.float64)
    except (TypeError, ValueError):
        problems.append("losses must be an (E, K) array of numbers (epochs x tasks)")
    if V is not None:
        if V.ndim != 2 or V.shape[0] < 1 or V.shape[1] < 1:
            problems.append(
                f"losses must be a 2-D (E, K) array with E >= 1 epochs and K >= 1 tasks, "
                f"got shape {V.shape}"
            )
            V = None
        elif not np.all(np.isfinite(V)):
            bad = np.argwhere(~np.isfinite(V))[0]
            problems.append(
                f"losses must be finite, got {V[tuple(bad)]} at row {bad[0]} "
                f"(epoch k={bad[0] + 1}), task {bad[1]}"
            )
            V = None
        elif np.any(V < 0):
            # The ratios I and R assume a loss that falls towards 0; a negative mean loss
            # would push P_u below 0 and P out of [l_b, 1].
            bad = np.argwhere(V < 0)[0]
            problems.append(
                f"losses must be non-negative mean losses, got {V[tuple(bad)]} at row "
                f"{bad[0]} (epoch k={bad[0] + 1}), task {bad[1]}"
            )
            V = None

    d = c = None
    if V is not None:
        n_tasks = V.shape[1]
        d = _vector("depths", depths, n_tasks, problems)
        if d is not None and np.any(d <= 0):
            problems.append(f"depths must be positive, got {d.tolist()}")
            d = None
        c = _vector("counts", counts, n_tasks, problems)
        if c is not None:
            for t in np.flatnonzero(c == 0):
                problems.append(
                    f"counts[{t}] is 0: task {t} has no labelled training sample, so DST "
                    "cannot schedule it; give it labels or leave the task out"
                )
            if np.any(c < 0):
                problems.append(f"counts must be positive, got {c.tolist()}")

    try:
        lam = [float(x) for x in lambdas]
    except (TypeError, ValueError):
        problems.append(f"lambdas must be 5 numbers {_LAMBDA_NAMES}, got {lambdas!r}")
        lam = None
    if lam is not None:
        if len(lam) != 5:
            problems.append(f"lambdas must be 5 numbers {_LAMBDA_NAMES}, got {len(lam)}: {lam}")
        elif not all(0.0 <= x <= 1.0 for x in lam):
            problems.append(f"lambdas must each lie in [0, 1], got {lam}")
        elif abs(math.fsum(lam) - 1.0) > _LAMBDA_SUM_TOL:
            problems.append(f"lambdas must sum to 1, got {lam} (sum {math.fsum(lam)})")

    try:
        beta_ok = 0.0 <= float(beta) <= 1.0
    except (TypeError, ValueError):
        beta_ok = False
    if not beta_ok:
        problems.append(f"beta must be a number in [0, 1], got {beta!r}")

    if count_metric not in ("ratio", "inverse"):
        problems.append(f"count_metric must be 'ratio' or 'inverse', got {count_metric!r}")

    if problems:
        raise ValueError("invalid DST arguments: " + "; ".join(problems))
    return V, d, c, tuple(lam), float(beta)


def dst_components(
    losses,
    depths: Sequence[float],
    counts: Sequence[float],
    lambdas: Sequence[float] = (0.2, 0.2, 0.2, 0.2, 0.2),
    beta: float = 0.1,
    *,
    count_metric: Literal["ratio", "inverse"] = "ratio",
) -> DSTComponents:
    """The DST rule with all its intermediates.

    Args:
        losses: (E, K) mean losses over labelled training samples; row 0 is V[1, :], the pass
            without weight update, row k-1 is epoch k.
        depths: K task depths (layers from the input to the task's output), positive.
        counts: K labelled training counts, positive.
        lambdas: weights (l_d, l_c, l_u, l_r, l_b), each in [0, 1], summing to 1.
        beta: discount of the moving average R', in [0, 1]; larger follows recent epochs more.
        count_metric: "ratio" is the spec's P_c = c_t / max(c); "inverse" is the paper's
            Eq. 22 P_c = min(c) / c_t, kept for the ablation that favours scarce tasks.

    Returns:
        DSTComponents of (E, K) float64 arrays; `P[k-1, t]` decides task t in epoch k + 1.

    Raises:
        ValueError: naming every argument that is out of range.
    """
    V, d, c, (l_d, l_c, l_u, l_r, l_b), beta = _validate(
        losses, depths, counts, lambdas, beta, count_metric
    )
    n_epochs, n_tasks = V.shape
    shape = (n_epochs, n_tasks)

    P_d = np.broadcast_to(d / d.max(), shape).copy()
    if count_metric == "ratio":
        P_c = np.broadcast_to(c / c.max(), shape).copy()
    else:
        P_c = np.broadcast_to(c.min() / c, shape).copy()
    P_b = np.ones(shape)

    # A task that starts at zero loss has nothing to learn; I = 1 keeps it neutral instead
    # of dividing by zero.
    V1 = V[0]
    first_positive = V1 > 0
    I = np.where(first_positive, V / np.where(first_positive, V1, 1.0), 1.0)  # noqa: E741

    # Row 0 stays P_u = P_r = 1, R = R' = 0: nothing has been learned yet.
    P_u = np.ones(shape)
    P_r = np.ones(shape)
    R = np.zeros(shape)
    R_prime = np.zeros(shape)

    for k in range(1, n_epochs):
        mean_I = I[k].mean()
        if mean_I > 0:
            # Capped at 1: fast learners are held back, slow ones are not boosted past 1.
            P_u[k] = np.minimum(1.0, I[k] / mean_I)

        prev = V[k - 1]
        prev_positive = prev > 0
        decrease = np.where(prev_positive, (prev - V[k]) / np.where(prev_positive, prev, 1.0), 0.0)
        # Dividing by P_u ranks the relatively incomplete one first among equally stagnant
        # tasks.
        R[k] = decrease / np.maximum(P_u[k], _MIN_P_U)

        # A rising loss (R < 0) says nothing about stagnancy, so R' holds its last value.
        rising = R[k] < 0
        if k == 1:
            R_prime[k] = np.where(rising, 0.0, R[k])
        else:
            R_prime[k] = np.where(rising, R_prime[k - 1], beta * R[k] + (1 - beta) * R_prime[k - 1])

        mean_R = R_prime[k].mean()
        moving = R_prime[k] > 0
        if mean_R > 0:
            ratio = mean_R / np.where(moving, R_prime[k], 1.0)
            # A task with R' = 0 is fully stagnant and keeps P_r = 1.
            P_r[k] = np.where(moving, np.minimum(1.0, ratio), 1.0)

    P = l_d * P_d + l_c * P_c + l_u * P_u + l_r * P_r + l_b * P_b
    # Rounding (and the 1e-6 slack on sum(lambdas)) can push P a hair past 1; P feeds a
    # Bernoulli draw, which rejects p > 1.
    np.clip(P, 0.0, 1.0, out=P)
    return DSTComponents(
        P_d=P_d, P_c=P_c, P_u=P_u, P_r=P_r, P_b=P_b, I=I, R=R, R_prime=R_prime, P=P
    )


def dst_probabilities(losses, depths, counts, lambdas=(0.2, 0.2, 0.2, 0.2, 0.2), beta=0.1):
    """Activation probabilities P[k, t] as an (E, K) float64 array; see `dst_components`."""
    return dst_components(losses, depths, counts, lambdas, beta).P
