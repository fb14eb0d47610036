"""Dropping methods: DST (the paper's method) and random task drop, on one gate-drawing base.

After each epoch `k` a method gives every task an activation probability `P[k, t]`; the gate
`G[k, t] ~ Bernoulli(P[k, t])` decides whether the task trains in epoch `k + 1`. A dropped task
is left out of the loss, so the trainer computes it without gradients (or not at all, with
`--dropped-loss probe`) and its head gets no update. DST computes P from the loss history with
`dst_components` (the rule of docs/dst-spec.md, implemented once in `dst_rule`); random drop
uses a fixed P. See docs/schedulers/dst.md and docs/schedulers/random.md.

The gates come from a numpy Generator seeded by (run seed, GATES, epoch[, step]) and never from
the global generators, so a run's data order and dropout do not depend on which method draws
gates, and a resumed run draws exactly the gates the uninterrupted one drew.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from dstcli.errors import DstError
from dstcli.schedulers.base import Scheduler, TaskInfo
from dstcli.schedulers.dst_rule import DSTComponents, dst_components, dst_probabilities
from dstcli.schedulers.options import SchedulerOptions
from dstcli.schedulers.specs.dst import carry_forward_missing
from dstcli.seeding import GATES, derived_seed

__all__ = ["DSTComponents", "DSTScheduler", "GatedScheduler", "RandomDrop", "draw_gates",
           "dst_components", "dst_probabilities"]


def draw_gates(probabilities: np.ndarray, rng: np.random.Generator
               ) -> tuple[np.ndarray, int | None]:
    """One independent Bernoulli gate per task, and the all-dropped rule.

    Returns the (K,) boolean gates and, when every draw came out 0, the index of the task that
    was switched on instead (the largest P; the first of equals, so the choice is reproducible).
    An epoch without any task would train nothing and still cost a full pass.
    """
    on = rng.random(probabilities.shape[0]) < probabilities  # (K,)

    if on.any():
        return on, None

    forced = int(np.argmax(probabilities))
    on[forced] = True
    return on, forced


class GatedScheduler(Scheduler):
    """Bernoulli gates from a per-epoch activation probability; subclasses say what P is.

    `gates(epoch)` for training epoch `epoch` uses P of the epoch before (`gates(2)` is G[1]).
    With `--gate-every step`, every step draws afresh from that same P, and `gates(epoch)`
    (the console's count and the logged G) reports the draw of the epoch's first step; the
    log's `forced_steps` counts every step in which the all-dropped rule fired.
    """

    log_columns: ClassVar[tuple[str, ...]] = ("P", "G", "w", "forced", "trained_steps",
                                              "forced_steps")

    def __init__(self, options: SchedulerOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        self.dropped_loss = options.dropped_loss
        self.gate_every = options.gate_every
        # Row k-1 is P[k, :], computed at the end of epoch k.
        self.probabilities: list[np.ndarray] = []
        # Each step of the epoch in progress: the gates it trained with and the task the
        # all-dropped rule switched on (None when it did not fire), for the log's trained_steps
        # and forced_steps. Checkpointed, so that a mid-epoch resume counts the steps before it.
        self._used: dict[int, dict[int, tuple[np.ndarray, int | None]]] = {}

    def activation(self, epoch: int, losses: dict[str, float]
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """P[epoch, :] as a (K,) array, and any further per-task log columns."""
        raise NotImplementedError

    # -- gates -----------------------------------------------------------------------------

    def _draw(self, epoch: int, step: int | None) -> tuple[np.ndarray, int | None]:
        k = epoch - 1
        if not 1 <= k <= len(self.probabilities):
            raise RuntimeError(f"gates of epoch {epoch} need P[{k}], but P is known for epochs "
                               f"1..{len(self.probabilities)}: end_epoch({k}) has not run")

        parts = (GATES, epoch) if step is None else (GATES, epoch, step)
        rng = np.random.default_rng(derived_seed(self.seed, *parts))
        return draw_gates(self.probabilities[k - 1], rng)

    def _gate_draw(self, epoch: int) -> tuple[np.ndarray, int | None]:
        return self._draw(epoch, None if self.gate_every == "epoch" else 0)

    def gates(self, epoch: int) -> dict[str, bool]:
        on, _ = self._gate_draw(epoch)
        return {t: bool(g) for t, g in zip(self.names, on, strict=True)}

    def step_gates(self, epoch: int, step: int) -> dict[str, bool]:
        on, forced = self._draw(epoch, None if self.gate_every == "epoch" else step)
        self._used.setdefault(epoch, {})[step] = (on, forced)
        return {t: bool(g) for t, g in zip(self.names, on, strict=True)}

    # -- the epoch's end -------------------------------------------------------------------

    def end_epoch(self, epoch: int, losses: dict[str, float],
                  metrics: dict[str, dict[str, float]] | None = None
                  ) -> dict[str, dict[str, Any]]:
        if epoch != len(self.probabilities) + 1:
            raise RuntimeError(f"end_epoch({epoch}) after epochs 1..{len(self.probabilities)}: "
                               "epochs must end in order")
        missing = [t for t in self.names if t not in losses]
        if missing:
            raise RuntimeError(f"end_epoch({epoch}) got no loss for task(s) {missing}")
        # NaN means "no labelled sample measured" (carried forward); an infinite V is a loss
        # that blew up, which the trainer stops on before it gets here.
        infinite = [t for t in self.names if math.isinf(losses[t])]
        if infinite:
            raise DstError(f"the loss V of task {infinite[0]} is {losses[infinite[0]]} after "
                           f"epoch {epoch}: a non-finite loss is not a missing one (NaN, no "
                           "labelled sample measured). Lower --lr, or check that task's labels")

        if epoch == 1:
            self.initial_losses = dict(losses)
            self.on_initial_losses()

        P, columns = self.activation(epoch, losses)
        self.probabilities.append(P)

        on, forced = self._gate_draw(epoch + 1)
        used = list(self._used.pop(epoch, {}).values())
        self._used.clear()
        trained_steps = np.zeros(len(self.names), dtype=int)
        forced_steps = np.zeros(len(self.names), dtype=int)
        for step_on, step_forced in used:
            trained_steps += step_on
            if step_forced is not None:
                forced_steps[step_forced] += 1

        rows: dict[str, dict[str, Any]] = {}
        for i, t in enumerate(self.names):
            rows[t] = {name: float(values[i]) for name, values in columns.items()}
            rows[t].update(P=float(P[i]), G=int(on[i]), w=self.weights[t],
                           forced=int(forced == i), trained_steps=int(trained_steps[i]),
                           forced_steps=int(forced_steps[i]))
        return rows

    # -- resume ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        # The gates are a function of (seed, epoch, P); the steps already taken in the epoch
        # in progress (a mid-epoch checkpoint) are what its log counts, so they go too.
        used = [[epoch, step, on.tolist(), forced]
                for epoch, steps in self._used.items() for step, (on, forced) in steps.items()]
        return {**super().state_dict(), "probabilities": [p.tolist() for p in self.probabilities],
                "used": used}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.probabilities = [np.asarray(p, dtype=np.float64) for p in state["probabilities"]]
        self._used.clear()
        for epoch, step, on, forced in state.get("used", []):  # absent before forced_steps
            self._used.setdefault(epoch, {})[step] = (np.asarray(on, dtype=bool), forced)


class DSTScheduler(GatedScheduler):
    """Dropped Scheduled Task: P from depth, labelled count, incompleteness and stagnation."""

    log_columns: ClassVar[tuple[str, ...]] = ("P_d", "P_c", "P_u", "P_r", "P", "G", "w",
                                              "forced", "trained_steps", "forced_steps")

    def __init__(self, options: SchedulerOptions, tasks: list[TaskInfo], seed: int):
        super().__init__(options, tasks, seed)
        self.depths = [t.depth for t in self.tasks]
        self.counts = [t.labelled for t in self.tasks]
        # V[k, t] as measured, NaN where an epoch measured no labelled sample of the task.
        self.losses: list[list[float]] = []
        self.components: DSTComponents | None = None

    def activation(self, epoch: int, losses: dict[str, float]
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        history = self.losses + [[float(losses[t]) for t in self.names]]

        try:
            filled = carry_forward_missing(history, self.names)
            components = dst_components(
                np.asarray(filled), self.depths, self.counts, self.options.lambdas,
                self.options.beta, count_metric=self.options.count_metric,
            )
        except ValueError as e:
            raise DstError(f"DST cannot compute P after epoch {epoch}: {e}") from None

        self.losses = history
        self.components = components
        c = components
        return c.P[-1], {"P_d": c.P_d[-1], "P_c": c.P_c[-1], "P_u": c.P_u[-1], "P_r": c.P_r[-1]}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "losses": [list(row) for row in self.losses]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.losses = [list(row) for row in state["losses"]]
        self.components = None


class RandomDrop(GatedScheduler):
    """Random task drop (baselines section 7): every task has the same fixed P = --p."""

    def activation(self, epoch: int, losses: dict[str, float]
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return np.full(len(self.names), float(self.options.p)), {}


class EarlyStop(GatedScheduler):
    """Every task on until its training loss V reaches its STL loss; then off for good.

    Section 4.4.4 (i) of the paper. P is 1 for a running task and 0 for a stopped one; when
    every task has stopped, the all-dropped rule keeps the first task training.
    """

    def __init__(self, options: SchedulerOptions, tasks: list[TaskInfo], seed: int):
        from pathlib import Path

        from dstcli.schedulers.specs.dst import read_stl_losses

        super().__init__(options, tasks, seed)
        targets = read_stl_losses(Path(options.stl_results))
        missing = [t for t in self.names if t not in targets]
        if missing:
            raise DstError(f"--stl-results {options.stl_results}: no STL loss for task(s) "
                           f"{', '.join(missing)}; the STL run must train the same tasks")
        self.targets = {t: targets[t] for t in self.names}
        self.stopped: set[str] = set()

    def activation(self, epoch: int, losses: dict[str, float]
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if epoch >= 2:
            self.stopped |= {t for t in self.names if losses[t] <= self.targets[t]}
        return np.array([0.0 if t in self.stopped else 1.0 for t in self.names]), {}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stopped": sorted(self.stopped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.stopped = set(state.get("stopped", []))
