"""Options of the loss-weighting baselines: GradNorm, LBTW, DTP, Adaptive Scheduling, and (beyond
the paper's tables) UW, DWA, RLW and FAMO.

Each method combines every task's loss in every step with a weight of its own; none drops a
task. What each computes, its cost and where it departs from its paper is in
`docs/schedulers/weighting.md`. torch-free, like every module here, and so is the reader of the
single-task results that Adaptive Scheduling compares against.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from dstcli.errors import DstError
from dstcli.schedulers import register_scheduler
from dstcli.schedulers.options import SchedulerOptions, opt

ALPHA_HELP = ("Exponent on each task's loss ratio: larger values pull the weights harder "
              "toward the tasks that are training slowest.")


def _positive(name: str, value: float) -> list[str]:
    if not (math.isfinite(value) and value > 0):
        return [f"--{name} {value}: must be a positive number"]
    return []


def _non_negative(name: str, value: float) -> list[str]:
    if not (math.isfinite(value) and value >= 0):
        return [f"--{name} {value}: must be 0 or more"]
    return []


@register_scheduler(
    "gradnorm",
    impl="dstcli.schedulers.gradnorm:GradNorm",
    summary="GradNorm (Chen et al. 2018): learned weights that balance the gradient norms at "
            "the last shared layer",
    variants={"gradnorm-0.5": {"alpha": 0.5}, "gradnorm-1.0": {"alpha": 1.0},
              "gradnorm-1.5": {"alpha": 1.5}},
)
@dataclass(frozen=True)
class GradNormOptions(SchedulerOptions):
    alpha: float = opt(1.5, ALPHA_HELP)
    weight_lr: float | None = opt(None, "Learning rate of GradNorm's task weights; default: "
                                        "the model's --lr.")

    def problems(self) -> list[str]:
        found = _non_negative("alpha", self.alpha)
        if self.weight_lr is not None:
            found += _positive("weight-lr", self.weight_lr)
        return found


@register_scheduler(
    "lbtw",
    impl="dstcli.schedulers.lbtw:LBTW",
    summary="Loss-Balanced Task Weighting (Liu et al. 2019): w_t = (L_t / L_t at the epoch's "
            "first batch)^alpha",
    variants={"lbtw-0.5": {"alpha": 0.5}, "lbtw-1.0": {"alpha": 1.0}},
)
@dataclass(frozen=True)
class LBTWOptions(SchedulerOptions):
    alpha: float = opt(0.5, ALPHA_HELP)

    def problems(self) -> list[str]:
        return _non_negative("alpha", self.alpha)


@register_scheduler(
    "dtp",
    impl="dstcli.schedulers.dtp:DTP",
    summary="Dynamic Task Prioritization (Guo et al. 2018): focal weights from each task's "
            "training-batch KPI",
)
@dataclass(frozen=True)
class DTPOptions(SchedulerOptions):
    gamma: float = opt(1.0, "DTP's focusing exponent: w_t = -(1 - kpi_t)^gamma log kpi_t; "
                            "0 keeps only the -log kpi_t term.")
    kpi_ema: float = opt(0.5, "Weight of the newest batch KPI in DTP's moving average, in "
                              "(0, 1]; 1 uses the batch KPI alone. Unverified default.")

    def problems(self) -> list[str]:
        found = _non_negative("gamma", self.gamma)
        if not (0 < self.kpi_ema <= 1):
            found.append(f"--kpi-ema {self.kpi_ema}: must be in (0, 1] (the weight of the "
                         "newest KPI)")
        return found


@register_scheduler(
    "adaptive",
    impl="dstcli.schedulers.adaptive:AdaptiveScheduling",
    summary="Adaptive Scheduling (Jean et al. 2019), implicit: larger weights for tasks further "
            "behind their single-task error",
)
@dataclass(frozen=True)
class AdaptiveOptions(SchedulerOptions):
    stl_results: str | None = opt(None, "Single-task results to compare against (required): a "
                                        "metrics.json from `dst eval` of an stl run, a run "
                                        "folder holding one, a folder of such run folders "
                                        "(averaged), or a CSV with task and error columns.")
    adaptive_beta: float = opt(1.0, "Exponent of Adaptive Scheduling's weights "
                                    "w_t = (b_t / s_t)^-beta; 0 gives equal weights.")

    def problems(self) -> list[str]:
        found = _non_negative("adaptive-beta", self.adaptive_beta)
        if self.stl_results is None:
            found.append("--stl-results is required by adaptive: train and evaluate an stl run "
                         "first (dst train --scheduler stl, then dst eval --split train) and "
                         "pass its metrics.json or run folder")
            return found
        try:
            read_stl_errors(Path(self.stl_results))
        except DstError as e:
            found.append(f"--stl-results: {e}")
        return found


@register_scheduler(
    "uw",
    impl="dstcli.schedulers.uncertainty:UncertaintyWeighting",
    summary="Uncertainty weighting (Kendall et al. 2018): learned log-variances, "
            "sum 0.5 (exp(-s_t) L_t + s_t)",
)
@dataclass(frozen=True)
class UWOptions(SchedulerOptions):
    pass


@register_scheduler(
    "dwa",
    impl="dstcli.schedulers.dwa:DWA",
    summary="Dynamic Weight Average (Liu et al. 2019): K softmax of the ratio of the last two "
            "epochs' training losses",
)
@dataclass(frozen=True)
class DWAOptions(SchedulerOptions):
    temperature: float = opt(2.0, "DWA's softmax temperature: larger values give more "
                                  "even weights.")

    def problems(self) -> list[str]:
        return _positive("temperature", self.temperature)


@register_scheduler(
    "rlw",
    impl="dstcli.schedulers.rlw:RandomLossWeighting",
    summary="Random loss weighting (Lin et al. 2022): softmax of fresh normal draws each step; "
            "the weights sum to 1",
)
@dataclass(frozen=True)
class RLWOptions(SchedulerOptions):
    pass


@register_scheduler(
    "famo",
    impl="dstcli.schedulers.famo:FAMO",
    summary="FAMO (Liu et al. 2023): softmax weights on the log losses, learned from each "
            "step's loss decrease",
)
@dataclass(frozen=True)
class FAMOOptions(SchedulerOptions):
    famo_lr: float = opt(0.025, "Adam learning rate of FAMO's task logits.")
    famo_weight_decay: float = opt(1e-3, "Weight decay of FAMO's task logits (LibMTL's "
                                         "value; the authors' command line uses 0.01).")

    def problems(self) -> list[str]:
        return (_positive("famo-lr", self.famo_lr)
                + _non_negative("famo-weight-decay", self.famo_weight_decay))


# ---------------------------------------------------------------------------------------------
# Single-task results for Adaptive Scheduling

METRICS_FILE = "metrics.json"


def read_stl_errors(path: Path) -> dict[str, float]:
    """Each task's single-task error in percent, from what `--stl-results` names.

    Accepted: a `metrics.json` written by `dst eval` (`tasks[name]["error"]`); a run folder
    holding one; a folder of run folders, each holding one (errors averaged over the runs,
    e.g. seeds); a CSV either in `dst eval`'s layout (`<task>.error` columns) or long
    (`task` and `error` columns), several rows of one task being averaged.
    """
    path = Path(path)
    if not path.exists():
        raise DstError(f"{path} does not exist")
    if path.is_dir():
        return _read_folder(path)
    if path.suffix.lower() == ".json":
        return _read_json(path)
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    raise DstError(f"{path}: expected a metrics.json, a .csv or a folder")


def _read_folder(path: Path) -> dict[str, float]:
    if (path / METRICS_FILE).is_file():
        return _read_json(path / METRICS_FILE)
    runs = sorted(p / METRICS_FILE for p in path.iterdir() if (p / METRICS_FILE).is_file())
    if not runs:
        raise DstError(f"{path} holds no {METRICS_FILE}, nor run folders with one; run "
                       "`dst eval` on the stl run first")
    return _average([_read_json(p) for p in runs])


def _read_json(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
        tasks = data["tasks"]
        errors = {str(t): float(m["error"]) for t, m in tasks.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DstError(f"{path} is not a metrics.json of `dst eval` (need tasks.<name>.error; "
                       f"{type(e).__name__}: {e})") from None
    return _checked(errors, path)


def _read_csv(path: Path) -> dict[str, float]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise DstError(f"{path} cannot be read as CSV ({e})") from None
    columns = rows[0].keys() if rows else []
    try:
        if "task" in columns and "error" in columns:
            per_row = [{r["task"]: float(r["error"])} for r in rows]
        else:
            wide = [c for c in columns if c.endswith(".error")]
            if not wide:
                raise DstError(f"{path} has neither task and error columns nor <task>.error "
                               "columns (the layout of dst eval's metrics.csv)")
            per_row = [{c[: -len(".error")]: float(r[c]) for c in wide} for r in rows]
    except (TypeError, ValueError) as e:
        raise DstError(f"{path}: an error value is not a number ({e})") from None
    return _checked(_average(per_row), path)


def _average(tables: list[dict[str, float]]) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for table in tables:
        for task, error in table.items():
            values.setdefault(task, []).append(error)
    return {t: sum(v) / len(v) for t, v in values.items()}


def _checked(errors: dict[str, float], path: Path) -> dict[str, float]:
    if not errors:
        raise DstError(f"{path} lists no task")
    bad = sorted(t for t, e in errors.items() if not (math.isfinite(e) and 0 <= e <= 100))
    if bad:
        raise DstError(f"{path}: the error of {', '.join(bad)} is not a percentage in [0, 100]")
    return errors
