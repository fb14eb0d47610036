"""Adaptive Scheduling (Jean, Firat, Johnson, arXiv 1909.06434), implicit form.

Every task's error is compared with its single-task (STL) error `b_t` from `--stl-results`;
a task further behind its STL error gets a larger share of the gradient:

    rho_t = b_t / s_t  (errors: rho_t < 1 means worse than STL)
    w_t   = K max(rho_t, eps)^(-beta) / sum_j max(rho_j, eps)^(-beta)

with `s_t` the task's training-set error of the epoch just finished and `b_t` the STL run's
lowest training-set error over its epochs, measured the same way (the paper derives every
method's figures from the training set; test scores are refused, see read_stl_errors). The
weights are uniform in the first training epoch and updated after each one. The loss is
`sum_t w_t L_t`, one backward.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, ClassVar

from dstcli.errors import ConfigError, DstError
from dstcli.schedulers.base import Scheduler, TaskInfo
from dstcli.schedulers.specs.weighting import AdaptiveOptions, read_stl_errors

# An error below this many percentage points counts as this many: a task with zero training
# error (or a perfect STL run) must not make rho infinite or zero.
MIN_ERROR = 0.01
MIN_RHO = 1e-3  # the eps of max(rho, eps)

UNVERIFIED = ("adaptive: the weight formula w_t ~ (b_t / s_t)^-beta is a reconstruction from "
              "the abstract of Jean et al. 2019 and has not been checked against the paper; "
              "treat its results as provisional")


def adaptive_weights(errors: dict[str, float], stl_errors: dict[str, float], beta: float
                     ) -> tuple[dict[str, float], dict[str, float]]:
    """(weights summing to K, rho) for every task of `stl_errors`.

    A task without a finite error this epoch counts as level with STL (rho = 1).
    """
    # TODO(reconstruction): the exact formula and constants of Jean et al. were not available;
    # this follows docs/baselines.md section 5. Re-check it against the paper.
    rho = {}
    for t, b in stl_errors.items():
        s = errors.get(t, float("nan"))
        rho[t] = max(b, MIN_ERROR) / max(s, MIN_ERROR) if math.isfinite(s) else 1.0
    raw = {t: max(r, MIN_RHO) ** -beta for t, r in rho.items()}
    total = sum(raw.values())
    return {t: v * len(raw) / total for t, v in raw.items()}, rho


class AdaptiveScheduling(Scheduler):
    """One backward per step with weights updated once per epoch."""

    log_columns: ClassVar[tuple[str, ...]] = ("w", "G", "rho")

    def __init__(self, options: AdaptiveOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        if options.stl_results is None:
            raise ConfigError(["--stl-results is required by adaptive: pass the run folder "
                               "of an stl run"])
        path = Path(options.stl_results)
        try:
            self.stl_errors = read_stl_errors(path)
        except DstError as e:
            raise ConfigError([f"--stl-results: {e}"]) from None
        missing = [t for t in self.names if t not in self.stl_errors]
        if missing:
            raise DstError(f"--stl-results {path} has no single-task error for task(s) "
                           f"{', '.join(missing)}; evaluate an stl run of the same tasks")
        self.stl_errors = {t: self.stl_errors[t] for t in self.names}
        self.rho: dict[str, float] = {}
        warnings.warn(UNVERIFIED, UserWarning, stacklevel=2)

    def end_epoch(self, epoch: int, losses: dict[str, float],
                  metrics: dict[str, dict[str, float]] | None = None
                  ) -> dict[str, dict[str, Any]]:
        # Epoch 1 measures an untrained network: its errors say nothing about which task lags.
        if epoch >= 2 and metrics:
            errors = {t: m["error"] for t, m in metrics.items() if "error" in m}
            self.weights, self.rho = adaptive_weights(errors, self.stl_errors,
                                                      self.options.adaptive_beta)
        out = super().end_epoch(epoch, losses, metrics)
        for t in self.names:
            out[t]["rho"] = self.rho.get(t, float("nan"))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rho": dict(self.rho),
                "stl_errors": dict(self.stl_errors)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rho = dict(state.get("rho", {}))
