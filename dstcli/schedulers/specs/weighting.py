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
from dstcli.records import EPOCHS_FILE, metrics_file
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

    def checks(self) -> list[str]:
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

    def checks(self) -> list[str]:
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

    def checks(self) -> list[str]:
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
    stl_results: str | None = opt(None, "Single-task training-set errors to compare against "
                                        "(required): an stl run folder (its epochs.csv), a "
                                        "folder of them (averaged), a metrics-train.json of "
                                        "`dst eval --split train`, or a CSV with task and "
                                        "error columns.")
    adaptive_beta: float = opt(1.0, "Exponent of Adaptive Scheduling's weights "
                                    "w_t = (b_t / s_t)^-beta; 0 gives equal weights.")

    def checks(self) -> list[str]:
        found = _non_negative("adaptive-beta", self.adaptive_beta)
        if self.stl_results is None:
            found.append("--stl-results is required by adaptive: train an stl run first "
                         "(dst train --scheduler stl) and pass its run folder")
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

    def checks(self) -> list[str]:
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

    def checks(self) -> list[str]:
        return (_positive("famo-lr", self.famo_lr)
                + _non_negative("famo-weight-decay", self.famo_weight_decay))


# ---------------------------------------------------------------------------------------------
# Single-task results for Adaptive Scheduling

def read_stl_errors(path: Path) -> dict[str, float]:
    """Each task's single-task training-set error in percent, from what `--stl-results` names.

    The paper takes every method's task figures from the training set, and the epoch's error
    Adaptive Scheduling compares with is a training-set error, so test scores are refused (they
    would also leak the test set into training). Accepted: an stl run folder, whose epochs.csv
    logs each epoch's training error (the lowest over the training epochs is taken, as baselines
    .md asks for the best); a `metrics-train.json` of `dst eval --split train`; a folder of run
    folders (errors averaged over the runs, e.g. seeds); a CSV either in `dst eval`'s layout
    (`<task>.error` columns) or long (`task` and `error` columns), several rows of one task
    being averaged.
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
    raise DstError(f"{path}: expected an stl run folder, a metrics-train.json or a .csv")


def _read_folder(path: Path) -> dict[str, float]:
    if _is_run(path):
        return _read_run(path)
    runs = sorted(p for p in path.iterdir() if p.is_dir() and _is_run(p))
    if not runs:
        raise DstError(f"{path} is neither an stl run folder (epochs.csv) nor a folder of them; "
                       "train one with `dst train --scheduler stl`")
    return _average([_read_run(p) for p in runs])


def _is_run(path: Path) -> bool:
    return (path / EPOCHS_FILE).is_file() or (path / metrics_file("train")).is_file()


def _read_run(path: Path) -> dict[str, float]:
    """The lowest training error of each task over the run's training epochs; a run logged
    before epochs.csv had that column falls back to its metrics-train.json."""
    lowest: dict[str, float] = {}
    log = path / EPOCHS_FILE
    if log.is_file():
        with open(log, newline="") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            value = row.get("train_error") or ""
            if row.get("phase") == "train" and value not in ("", "nan"):
                lowest[row["task"]] = min(float(value), lowest.get(row["task"], math.inf))
    if lowest:
        return _checked(lowest, log)
    if (path / metrics_file("train")).is_file():
        return _read_json(path / metrics_file("train"))
    raise DstError(f"{path} logs no training error per epoch ({EPOCHS_FILE} has no train_error "
                   "values: trained by an older dst, or not past epoch 1); score it on the "
                   f"training set with `dst eval {path} --split train` and pass the folder again")


def _read_json(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
        split = data.get("split")
        tasks = data["tasks"]
        errors = {str(t): float(m["error"]) for t, m in tasks.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DstError(f"{path} is not a metrics file of `dst eval` (need tasks.<name>.error; "
                       f"{type(e).__name__}: {e})") from None
    if split is not None and split != "train":
        raise DstError(f"{path} holds {split}-set scores; single-task references must come from "
                       "the training set (test scores would leak into training): pass the stl "
                       "run folder, or the metrics-train.json of `dst eval RUN --split train`")
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
