"""The training loop: batches, masked per-task losses, the scheduler, checkpoints and logs.

    dst train --app omniglot --scheduler mtl --data prepared/omniglot --out runs/mtl-s0

Epoch 1 is the paper's pass without weight update: every task's loss is measured (V[1]) and
nothing is trained. Epochs 2 .. epochs+1 train. After each epoch the run folder gets a
checkpoint (written atomically, the previous one kept until the new one is whole) and one row
per task in `epochs.csv`. A run continues with `--resume`, and because each epoch's data order
and random state derive from the seed and the epoch alone, a resumed run ends exactly where the
uninterrupted run ends (on CPU).

Under `torchrun` each process trains on its share of every batch and the gradients, losses and
counts are summed across processes (dstcli/distributed.py, docs/scale.md). `--amp bf16`,
`--channels-last` and `--compile` are the speed flags, all off by default.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from dstcli import distributed
from dstcli.apps import APPS
from dstcli.apps.base import TaskSpec
from dstcli.config import TrainConfig, parse_branch
from dstcli.data.shards import PreparedData, ShardDataset, open_prepared
from dstcli.distributed import World
from dstcli.errors import ConfigError, DstError, Interrupted
from dstcli.models.builders import MODELS
from dstcli.models.multitask import TaskRequest
from dstcli.models.presets import get_preset
from dstcli.records import RUN_RECORD, machine, write_json
from dstcli.schedulers import resolve
from dstcli.schedulers.base import Scheduler, StepContext, TaskInfo
from dstcli.seeding import DATA_ORDER, INIT_PASSES, PROBE, TORCH_STATE, derived_seed
from dstcli.tasks import MetricAccumulator, per_sample_loss

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
CHECKPOINT_VERSION = 1
# train_error: the task's error (%) on the samples it was computed on during the epoch, in
# training mode; Adaptive Scheduling compares it with the same figure of an STL run.
BASE_COLUMNS = ("epoch", "phase", "task", "V", "labelled", "measured_on", "seconds",
                "train_error")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFinite(DstError):
    """A NaN or Inf in a loss, a gradient or the weights: the run stops, and the last good
    checkpoint (none is ever written with non-finite weights) is kept."""


class NonFiniteLoss(NonFinite):
    pass


class NonFiniteGradient(NonFinite):
    pass


class NonFiniteWeights(NonFinite):
    pass


def resolve_device(name: str, world: World | None = None) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DstError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    cuda = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    if world is not None and world.active and cuda:
        if ":" in name:
            raise DstError(f"--device {name} under torchrun: use --device cuda or auto; each "
                           "process takes the GPU of its LOCAL_RANK")
        return torch.device("cuda", world.local_rank)
    if name == "auto":
        return torch.device("cuda" if cuda else "cpu")
    return torch.device(name)


def speed_problems(config: TrainConfig, device: torch.device, world: World) -> list[str]:
    """The checks that need the resolved device and the process count, each naming its flag."""
    found = []
    if (config.amp == "bf16" and device.type == "cuda"
            and not torch.cuda.is_bf16_supported()):
        found.append(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bfloat16; "
                     "train with --amp fp16 or none")
    if config.amp == "fp16":
        if not fp16_supported(device):
            found.append(f"--amp fp16 needs a CUDA GPU (float16 training with loss scaling); "
                         f"on {device.type} use --amp bf16 or none")
        entry, _ = resolve(config.scheduler)
        if not entry.load().supports_loss_scaling:
            found.append(f"--amp fp16: --scheduler {config.scheduler} reads the gradients "
                         "themselves (norms or per-task gradients), which loss scaling would "
                         "change; train it with --amp bf16 or none")
    if config.compile:
        try:
            import torch._dynamo as dynamo

            supported = dynamo.is_dynamo_supported()
        except Exception:  # noqa: BLE001 - any failure to import means no torch.compile here
            supported = False
        if not supported:
            found.append("--compile: torch.compile is not supported by this Python and torch; "
                         "drop --compile")
        elif device.type == "cpu" and not c_compiler():
            found.append("--compile on CPU needs a C++ compiler (set CC or install gcc) for "
                         "torch.compile's generated code; drop --compile or install one")
    if world.active:
        entry, _ = resolve(config.scheduler)
        refusal = entry.load().distributed_refusal
        if refusal:
            found.append(
                f"--scheduler {config.scheduler} {refusal} (across "
                f"{world.size} processes). Train it in one process, or choose a method that "
                "runs under torchrun: mtl, dst, random, gradnorm, lbtw, uw, dwa, rlw, adaptive")
        if config.checkpoint_every:
            found.append(f"--checkpoint-every {config.checkpoint_every}: mid-epoch checkpoints "
                         "are not written under torchrun (each process holds part of the "
                         "epoch's sums); use 0, the run checkpoints at every epoch end")
    return found


def fp16_supported(device: torch.device) -> bool:
    """float16 autocast with a gradient scaler: CUDA only. (CPU float16 kernels are slow and
    partial; bfloat16 is the CPU's mixed precision.)"""
    return device.type == "cuda"


def c_compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") \
        or shutil.which(os.environ.get("CC", "cc"))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The shuffled batches of one epoch, a function of (seed, epoch) only."""
    g = torch.Generator().manual_seed(derived_seed(seed, DATA_ORDER, epoch))
    order = torch.randperm(n, generator=g).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _identity(batch: Any) -> Any:
    return batch


def iterate(dataset: ShardDataset, batches: list[list[int]], workers: int, pin: bool
            ) -> Iterator[dict[str, Any]]:
    """The batches in order. With workers, each worker process opens the HDF5 files itself
    (ShardDataset reopens them per process) and reads a whole batch at once, sorted per shard;
    it hands uint8 tensors over, normalised on the device by the encoder."""
    if workers == 0:
        for b in batches:
            yield dataset.__getitems__(b)
        return
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, collate_fn=_identity, num_workers=workers,
        pin_memory=pin, persistent_workers=False, prefetch_factor=4,
    )
    yield from loader


@dataclass
class Run:
    """Everything a training run holds, built from a config (fresh or from a checkpoint)."""

    config: TrainConfig
    data: PreparedData
    tasks: list[TaskSpec]  # the data's tasks as this run trains them
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    device: torch.device
    world: World = field(default_factory=World)
    scaler: torch.amp.GradScaler | None = None  # --amp fp16


def build(config: TrainConfig, world: World | None = None) -> Run:
    """Model, optimizer and scheduler for a validated config, seeded from the run's seed (the
    same on every process, so every process starts from the same weights)."""
    world = world or World()
    data = open_prepared(Path(config.data))
    entry, _ = resolve(config.scheduler)
    device = resolve_device(config.device, world)
    problems = speed_problems(config, device, world)
    if problems:
        raise ConfigError(problems)
    seed_everything(config.seed)
    tasks = run_tasks(config, data)
    model = build_model(config, data, tasks, device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        compile_encoders(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    infos = [TaskInfo(t.name, t.kind, t.depth, data.labelled_count(t.name)) for t in tasks]
    scheduler = entry.load()(config.scheduler_options, infos, config.seed)
    scheduler.attach(model, optimizer)
    # Loss scaling keeps float16 gradients from underflowing; it starts high and backs off
    # on overflow (a step with an Inf or NaN gradient is skipped, not applied).
    scaler = torch.amp.GradScaler(device.type) if config.amp == "fp16" else None
    return Run(config, data, tasks, model, optimizer, scheduler, device, world, scaler)


def build_model(config: TrainConfig, data: PreparedData, tasks: list[TaskSpec],
                device: torch.device) -> torch.nn.Module:
    """The run's network at the current random state (its initialisation)."""
    entry, _ = resolve(config.scheduler)
    weights = Path(config.encoder_weights) if config.encoder_weights else None
    return MODELS.get(config.model or APPS.get(config.app).model)(
        tasks, data.channels, get_preset(config.preset), stl=entry.stl,
        encoder_weights=weights, input_size=data.input_size, tie=config.tie or 0.0,
        encoder_norm=config.encoder_norm or "none").to(device)


def initial_losses_over_inits(run: Run, dataset: ShardDataset, first: EpochResult,
                              console: Console) -> dict[str, float]:
    """V[1] averaged over `--init-passes` initialisations (the paper's section 4.4.2): the
    run's own and init_passes - 1 others, each measured over the whole training split without
    update. Training then starts from the run's own weights."""
    totals = {t: [v] for t, v in first.losses.items()}
    for k in range(1, run.config.init_passes):
        torch.manual_seed(derived_seed(run.config.seed, INIT_PASSES, k))
        other = dataclasses.replace(run, model=build_model(run.config, run.data, run.tasks,
                                                           run.device))
        for t, v in run_epoch(other, dataset, 1, console, progress=False).losses.items():
            totals[t].append(v)
    return {t: float(np.nanmean(values)) for t, values in totals.items()}


def compile_encoders(model: torch.nn.Module) -> None:
    """torch.compile each VGG16 encoder in place (`Module.compile`), so that the state dict keeps
    its keys and checkpoints stay interchangeable with uncompiled runs. The heads stay eager:
    which heads run changes from step to step with the gates."""
    from dstcli.models.vgg import VGG16Encoder

    for module in model.modules():
        if isinstance(module, VGG16Encoder):
            module.compile()


def autocast(run: Run) -> Any:
    """The forward's mixed-precision context (`--amp bf16|fp16`); losses are taken in
    float32."""
    if run.config.amp in AMP_DTYPES:
        return torch.autocast(run.device.type, dtype=AMP_DTYPES[run.config.amp])
    return nullcontext()


def to_device(run: Run, images: torch.Tensor) -> torch.Tensor:
    images = images.to(run.device, non_blocking=True)
    if run.config.channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def run_tasks(config: TrainConfig, data: PreparedData) -> list[TaskSpec]:
    """The prepared data's tasks with the run's changes: only `--tasks` if given, a moved head
    (its depth moves with it: the head keeps its layers), the contrastive margin."""
    moved = dict(parse_branch(entry) for entry in config.branch)
    tasks = []
    for t in data.tasks:
        if config.tasks and t.name not in config.tasks:
            continue
        if t.name in moved:
            t = dataclasses.replace(t, branch=moved[t.name],
                                    depth=t.depth - t.branch + moved[t.name])
        if t.kind == "contrastive" and config.margin is not None:
            t = dataclasses.replace(t, scale=config.margin)
        tasks.append(t)
    return tasks


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def save_checkpoint(run: Run, run_dir: Path, epoch: int,
                    in_epoch: EpochProgress | None = None) -> None:
    """Write `checkpoint.pt` atomically; `epoch` is the last complete epoch, `in_epoch` how far
    the next one got (mid-epoch checkpoints). The previous file survives a failed write.
    Non-finite weights are never written: the checkpoint already there stays the good one."""
    check_finite_weights(run, run_dir, epoch, in_epoch)

    state = {
        "checkpoint_version": CHECKPOINT_VERSION,
        "epoch": epoch,
        "in_epoch": dataclasses.asdict(in_epoch) if in_epoch is not None else None,
        "app": run.config.app,
        "tasks": [t.to_json() for t in run.tasks],
        "config": run.config.to_json(),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "rng": _rng_state(),
    }
    tmp = run_dir / (CHECKPOINT + ".tmp")
    current = run_dir / CHECKPOINT
    try:
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except OSError as e:
        tmp.unlink(missing_ok=True)
        kept = current if current.exists() else None
        raise DstError(
            f"could not write {tmp} ({e}); "
            + (f"{kept} from before is intact: free space and resume with `dst train "
               f"--resume {run_dir}`" if kept else "no earlier checkpoint exists")
        ) from e
    # Keep the previous checkpoint until the new one is complete on disk.
    if current.exists():
        os.replace(current, run_dir / PREVIOUS_CHECKPOINT)
    os.replace(tmp, current)


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - a damaged file falls back to the previous one
            last_error = e
            continue
        if state.get("checkpoint_version") != CHECKPOINT_VERSION:
            raise DstError(f"{path} has checkpoint version {state.get('checkpoint_version')}, "
                           f"this dst reads {CHECKPOINT_VERSION}")
        state["loaded_from"] = name  # the previous file when the current one is damaged
        return state
    if "last_error" in locals():
        raise DstError(f"no readable checkpoint in {run_dir} ({last_error})")
    raise DstError(f"{run_dir} has no {CHECKPOINT}: nothing to resume or evaluate")


def restore(run: Run, state: dict[str, Any]) -> None:
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])


def write_tasks(run: Run, path: Path) -> None:
    """The run's tasks as the scheduler saw them (depth d_t, labelled count c_t), so that a
    run folder can be replayed without its prepared data."""
    tasks = [{**t.to_json(), "labelled": run.data.labelled_count(t.name)}
             for t in run.tasks]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(tasks, indent=2) + "\n")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------
# The per-epoch log


class EpochLog:
    """`epochs.csv`: one row per epoch and task, header written once."""

    def __init__(self, path: Path, extra_columns: tuple[str, ...]):
        self.path = path
        self.columns = BASE_COLUMNS + tuple(c for c in extra_columns if c not in BASE_COLUMNS)

    def truncate_after(self, epoch: int) -> None:
        """Drop rows of epochs after the checkpoint (written before a crash)."""
        if not self.path.exists():
            return
        with open(self.path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= epoch]
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.path)

    def append(self, rows: list[dict[str, Any]]) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)


# ---------------------------------------------------------------------------------------------
# One epoch


@dataclass
class EpochResult:
    losses: dict[str, float]  # V[epoch, t]: mean over the task's labelled samples
    counts: dict[str, int]  # labelled samples the loss was measured on
    metrics: dict[str, dict[str, float]]  # training-set metrics of the tasks that were computed
    steps: int
    probed: tuple[str, ...] = ()  # tasks whose loss came from the probe subset


@dataclass
class EpochProgress:
    """How far an epoch got: what a mid-epoch checkpoint needs to continue it exactly."""

    epoch: int
    step: int  # batches completed
    sums: dict[str, float]
    counts: dict[str, int]
    metrics: dict[str, dict[str, Any]]


class TrainingInterrupted(Interrupted):
    """Ctrl-C during training; the checkpoint is saved."""


class _InterruptFlag:
    """Ctrl-C asks the loop to stop at the next step boundary, where the state is whole."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run_epoch(run: Run, dataset: ShardDataset, epoch: int, console: Console,
              progress: bool = True, resume_from: EpochProgress | None = None,
              on_step: Any = None) -> EpochResult:
    """Train (epoch >= 2) or only measure (epoch 1) for one pass over the training split.

    V[epoch, t] is the sum of the task's per-sample losses over the epoch divided by its
    labelled count, not a mean of batch means. With `dropped_loss = "probe"`, a task dropped
    for the whole epoch is not computed during it and is measured on the probe subset after.
    `resume_from` continues a checkpointed epoch after its completed steps; `on_step(progress)`
    is called after every step with the epoch's progress so far.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    config, model, device, world = run.config, run.model, run.device, run.world
    measuring = epoch == 1
    tasks = {t.name: t for t in run.tasks}
    sums = {t: torch.zeros((), dtype=torch.float64, device=device) for t in tasks}
    counts = dict.fromkeys(tasks, 0)
    metrics = {t: MetricAccumulator(spec) for t, spec in tasks.items()}
    first = 0
    if resume_from is None:
        torch.manual_seed(derived_seed(config.seed, TORCH_STATE, epoch))
    else:
        # The random state was restored from the checkpoint, as it was after that step.
        first = resume_from.step
        for t in tasks if world.main else ():  # one process brings the sums so far
            sums[t] += resume_from.sums[t]
            counts[t] = resume_from.counts[t]
            metrics[t].load_state_dict(resume_from.metrics[t])
    # Every process draws the same global batches and takes its share of each: the same number
    # of steps everywhere, and the shares together are the one-process epoch.
    batches = [world.share(b) for b in
               epoch_batches(len(dataset), config.batch_size, config.seed, epoch)]
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    # Train mode in the measuring pass too: with batch norm, V[1] must be measured as the
    # training epochs measure V (batch statistics), or I = V[k] / V[1] compares two modes.
    # Running statistics are estimates, not weights: updating them updates no weight.
    model.train()
    scheduler = run.scheduler
    probe = not measuring and scheduler.dropped_loss == "probe"
    split = not measuring and scheduler.needs_representation

    bar = Progress("[progress.description]{task.description}", BarColumn(),
                   MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True,
                   disable=not (progress and console.is_terminal))
    with bar, torch.set_grad_enabled(not measuring):
        job = bar.add_task(f"epoch {epoch}", total=len(batches), completed=first)
        for step, batch in enumerate(iterate(dataset, batches[first:], config.workers,
                                             device.type == "cuda"), start=first):
            gates = (dict.fromkeys(tasks, False) if measuring
                     else scheduler.step_gates(epoch, step))
            images = to_device(run, batch["images"])
            requests, targets = {}, {}
            for name in tasks if images.shape[0] else ():  # a share can be empty
                if probe and not gates[name]:
                    continue
                rows = torch.nonzero(batch["Z"][name]).squeeze(1)
                if rows.numel() == 0:
                    continue
                requests[name] = TaskRequest(rows.to(device), gates[name])
                targets[name] = batch["labels"][name][rows].to(device, non_blocking=True)
            representations = None
            with autocast(run):
                if not images.shape[0]:
                    outputs = {}
                elif split:
                    outputs, representations = model.forward_split(images, requests)
                else:
                    outputs = model(images, requests)
            if config.amp != "none":
                outputs = {t: o.float() for t, o in outputs.items()}

            labelled = global_counts(run, requests) if world.active and not measuring else None
            losses: dict[str, torch.Tensor] = {}
            for name, output in outputs.items():
                per_sample = per_sample_loss(tasks[name], output, targets[name])  # (n,)
                sums[name] += per_sample.detach().sum().double()
                counts[name] += per_sample.numel()
                metrics[name].update(output.detach(), targets[name])
                if requests[name].train and labelled is None:
                    losses[name] = per_sample.mean()
                elif requests[name].train:
                    # The mean over the global batch's labelled rows: with the gradients
                    # averaged over processes afterwards, this is the one-process gradient.
                    losses[name] = per_sample.sum() * (world.size / labelled[name])
            if not world.active:  # across processes: checked on the summed losses below
                check_finite(sums, f"at epoch {epoch}, step {step}")

            if not measuring:
                def reevaluate(images=images, requests=requests, targets=targets):
                    # In train mode, as the step's own forward was (the two losses are
                    # compared); the batch-norm running statistics are put back, so that one
                    # step does not count twice in them.
                    kept = [b.clone() for b in model.buffers()]
                    with torch.no_grad(), autocast(run):
                        again = model(images, requests)
                        for buffer, value in zip(model.buffers(), kept, strict=True):
                            buffer.copy_(value)
                    return {t: float(per_sample_loss(tasks[t], o.float(), targets[t]).mean())
                            for t, o in again.items()}

                run.optimizer.zero_grad(set_to_none=True)
                ctx = StepContext(epoch, step, model, run.optimizer,
                                  {t: int(r.rows.numel()) for t, r in requests.items()},
                                  tasks, outputs, targets, representations, reevaluate,
                                  scale_loss=run.scaler.scale if run.scaler else _identity)
                scheduler.backward(losses, ctx)
                penalty = regularization(model)
                if penalty is not None:
                    ctx.scale_loss(penalty).backward()
                distributed.average_gradients(world, params, device)
                # A finite loss can still give a NaN or Inf gradient, which Adam would spread
                # into every weight it touches. fp16 is left to its scaler: overflowing
                # gradients are expected there, and it skips those steps itself.
                if run.scaler is None and not gradients_finite(params):
                    stop_on_gradients(run, sums, counts, epoch, step)
                if run.scaler is not None:
                    # Unscales, skips the step if a gradient overflowed (the same on every
                    # process: the gradients were averaged first), then adapts the scale.
                    run.scaler.step(run.optimizer)
                    run.scaler.update()
                else:
                    run.optimizer.step()
                scheduler.after_step(ctx)
            bar.advance(job)
            if on_step is not None:
                on_step(EpochProgress(epoch, step + 1, {t: float(v) for t, v in sums.items()},
                                      dict(counts),
                                      {t: m.state_dict() for t, m in metrics.items()}))

    sum_over_processes(world, sums, counts, device)
    if world.active:
        # Each process held only its share's sums during the steps: only now can every process
        # see (and stop on) a non-finite loss together.
        check_finite(sums, f"during epoch {epoch} (the step is not known under torchrun: the "
                           "check runs at the epoch's end)")
    probed: tuple[str, ...] = ()
    if probe:
        probed = tuple(t for t in tasks if counts[t] == 0)
        if probed:
            probe_sums = {t: torch.zeros((), dtype=torch.float64, device=device) for t in tasks}
            probe_counts = dict.fromkeys(tasks, 0)
            probe_losses(run, dataset, probed, probe_sums, probe_counts)
            sum_over_processes(world, probe_sums, probe_counts, device)
            # In every process count, as in the steps: a non-finite V would otherwise reach the
            # scheduler looking like a missing one (NaN).
            check_finite({t: probe_sums[t] for t in probed},
                         f"at epoch {epoch}, in the probe pass after its last step (the dropped "
                         "tasks' losses on the probe subset)")
            for t in probed:
                sums[t] += probe_sums[t]
                counts[t] += probe_counts[t]
    if world.active:
        merge_metrics(world, metrics)
        distributed.average_buffers(world, model)
    # Every sum was checked finite above, so a NaN V means one thing only: no labelled sample
    # of the task was measured (the "missing" loss DST carries forward).
    means = {t: (float(sums[t]) / counts[t] if counts[t] else float("nan")) for t in tasks}
    measured = {t: m.result() for t, m in metrics.items() if m.total}
    return EpochResult(means, counts, measured, len(batches), probed)


def global_counts(run: Run, requests: dict[str, TaskRequest]) -> dict[str, float]:
    """Each task's labelled rows in the global batch, summed over the processes' shares (a
    share can hold a task's labels while another holds none: the mean of the shares' means
    would weigh a lone sample as much as a whole share)."""
    names = [t.name for t in run.tasks]
    local = torch.tensor([float(requests[t].rows.numel()) if t in requests else 0.0
                          for t in names], dtype=torch.float64, device=run.device)
    distributed.sum_tensor(run.world, local)
    return dict(zip(names, local.tolist(), strict=True))


def sum_over_processes(world: World, sums: dict[str, torch.Tensor], counts: dict[str, int],
                       device: torch.device) -> None:
    """Per-task loss sums and labelled counts summed across processes (in place), so that V,
    and every gate derived from it, is the same on every process."""
    if not world.active:
        return
    names = list(sums)
    packed = torch.stack([sums[t] for t in names]
                         + [torch.tensor(float(counts[t]), dtype=torch.float64, device=device)
                            for t in names])
    distributed.sum_tensor(world, packed)
    for i, t in enumerate(names):
        sums[t] = packed[i].clone()
        counts[t] = int(round(float(packed[len(names) + i])))


def merge_metrics(world: World, metrics: dict[str, MetricAccumulator]) -> None:
    """Every process's training-set metrics combined, so end_epoch sees the whole epoch."""
    states = distributed.gather(world, {t: m.state_dict() for t, m in metrics.items()})
    for t, m in metrics.items():
        parts = [s[t] for s in states]
        m.load_state_dict({
            "sum": sum(p["sum"] for p in parts), "total": sum(p["total"] for p in parts),
            "union": sum(p["union"] for p in parts),
            "distances": [d for p in parts for d in p["distances"]],
            "genuine": [g for p in parts for g in p["genuine"]],
        })


PROBE_SAMPLES = 512


def probe_indices(n: int, seed: int) -> list[int]:
    """The fixed probe subset: the same samples every epoch, chosen by the run's seed."""
    g = torch.Generator().manual_seed(derived_seed(seed, PROBE))
    return sorted(torch.randperm(n, generator=g)[:min(n, PROBE_SAMPLES)].tolist())


def probe_losses(run: Run, dataset: ShardDataset, names: tuple[str, ...],
                 sums: dict[str, torch.Tensor], counts: dict[str, int]) -> None:
    """Measure dropped tasks on the probe subset, without gradients, into sums and counts."""
    tasks = {t.name: t for t in run.tasks}
    indices = probe_indices(len(dataset), run.config.seed)
    batches = [run.world.share(indices[i:i + run.config.batch_size])
               for i in range(0, len(indices), run.config.batch_size)]
    with torch.no_grad():
        for batch in iterate(dataset, batches, run.config.workers, run.device.type == "cuda"):
            if not batch["images"].shape[0]:
                continue
            requests, targets = {}, {}
            for name in names:
                rows = torch.nonzero(batch["Z"][name]).squeeze(1)
                if rows.numel():
                    requests[name] = TaskRequest(rows.to(run.device), False)
                    targets[name] = batch["labels"][name][rows].to(run.device)
            with autocast(run):
                outputs = run.model(to_device(run, batch["images"]), requests)
            for name, output in outputs.items():
                per_sample = per_sample_loss(tasks[name], output.float(), targets[name])
                sums[name] += per_sample.sum().double()
                counts[name] += per_sample.numel()


def regularization(model: torch.nn.Module) -> torch.Tensor | None:
    """A model's own penalty (the bilateral network's soft sharing), outside every method's
    weighting: it ties parameters, it is no task."""
    penalty = getattr(model, "regularization", None)
    return penalty() if penalty is not None else None


def check_finite(sums: dict[str, torch.Tensor], where: str) -> None:
    """Stop at the first non-finite loss, naming the task and `where` (the epoch and the step,
    or the pass). One host sync."""
    stacked = torch.stack(list(sums.values()))
    if bool(torch.isfinite(stacked).all()):
        return

    bad = [t for t, s in sums.items() if not torch.isfinite(s)]
    raise NonFiniteLoss(
        f"the loss of task {bad[0]} became {float(sums[bad[0]])} {where}"
        + (f" (also: {', '.join(bad[1:])})" if len(bad) > 1 else "")
        + "; the last good checkpoint is kept. Lower --lr, or check that task's labels"
    )


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every element of every tensor is finite: one fused max-abs over the list (a
    value per tensor) and one host sync. (The max, unlike a 2-norm, cannot overflow on large
    finite values, and it propagates NaN.)"""
    if not tensors:
        return True
    with torch.no_grad():
        return bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors, math.inf))).all())


def gradients_finite(params: list[torch.nn.Parameter]) -> bool:
    return all_finite([p.grad for p in params if p.grad is not None])


def stop_on_gradients(run: Run, sums: dict[str, torch.Tensor], counts: dict[str, int],
                      epoch: int, step: int) -> None:
    """Raise for a non-finite gradient at this step, before the optimizer applies it.

    Under torchrun every process sees the same averaged gradients and so gets here at the same
    step: the losses summed over the processes then say whether a task's loss went bad first
    (each process alone holds only its share), and that task is named instead."""
    if run.world.active:
        summed = dict(sums)
        sum_over_processes(run.world, summed, dict(counts), run.device)
        check_finite(summed, f"at epoch {epoch}, step {step}")

    names = {id(p): n for n, p in run.model.named_parameters()}
    bad = next(p for group in run.optimizer.param_groups for p in group["params"]
               if p.grad is not None and not bool(torch.isfinite(p.grad).all()))
    raise NonFiniteGradient(
        f"a gradient became non-finite (NaN or Inf) at epoch {epoch}, step {step} (first: "
        f"{names.get(id(bad), 'a parameter of the method')}), while every task's loss was "
        "finite: the step was not applied and the last good checkpoint is kept. The labels are "
        "not at fault; lower --lr, or look for an operation whose gradient overflows"
    )


def check_finite_weights(run: Run, run_dir: Path, epoch: int,
                         in_epoch: EpochProgress | None) -> None:
    """Refuse to checkpoint NaN or Inf weights (the model's parameters and buffers, and a
    method's own parameters in the optimizer)."""
    tensors = [v for v in run.model.state_dict().values() if v.is_floating_point()]
    tensors += [p for group in run.optimizer.param_groups for p in group["params"]]
    if all_finite(tensors):
        return

    when = (f"after {in_epoch.step} steps of epoch {in_epoch.epoch}" if in_epoch is not None
            else f"at the end of epoch {epoch}")
    raise NonFiniteWeights(
        f"the weights hold NaN or Inf {when}: that state is not checkpointed, and the last good "
        f"checkpoint in {run_dir} is kept. Resume from it with a lower --lr"
    )


# ---------------------------------------------------------------------------------------------
# The run


def header(tasks: list[str]) -> str:
    return f"{'epoch':>5} {'phase':<7} {'seconds':>8} {'mean loss':>10} {'tasks on':>8}"


def line(epoch: int, phase: str, seconds: float, losses: dict[str, float], on: int,
         total: int) -> str:
    finite = [v for v in losses.values() if np.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else float("nan")
    return f"{epoch:>5d} {phase:<7} {seconds:>8.1f} {mean:>10.4f} {f'{on}/{total}':>8}"


def train(config: TrainConfig, resume: bool = False, console: Console | None = None,
          progress: bool = True, on_finish: Callable[[Run], None] | None = None) -> Path:
    """Run (or continue) a training run; returns the run folder.

    Under torchrun (WORLD_SIZE > 1) every process calls this; only rank 0 writes files and
    prints. `on_finish(run)` is called on every process at the end (tests read each rank's
    model there)."""
    world = distributed.from_env()
    run = build(config, world)
    created = distributed.init(world, run.device)
    try:
        if not world.main:
            console, progress = Console(quiet=True), False
        _train(run, resume, console or Console(stderr=True), progress)
        if on_finish is not None:
            on_finish(run)
    finally:
        distributed.close(created)
    return Path(config.out)


def _train(run: Run, resume: bool, console: Console, progress: bool) -> None:
    config, world = run.config, run.world
    run_dir = Path(config.out)
    start, partial = 1, None
    log = EpochLog(run_dir / "epochs.csv", run.scheduler.log_columns)
    if resume:
        state = load_checkpoint(run_dir)
        restore(run, state)
        start = state["epoch"] + 1
        if state.get("in_epoch"):
            partial = EpochProgress(**state["in_epoch"])
            restore_rng(state)
        if world.main:
            log.truncate_after(state["epoch"])
        where = f" and {partial.step} steps of epoch {start}" if partial else ""
        console.print(f"resuming {run_dir} after epoch {state['epoch']}{where}")
    else:
        if (run_dir / CHECKPOINT).exists():
            raise DstError(f"{run_dir} already holds a run; continue it with --resume "
                           f"{run_dir}, or choose another --out")
        # Every process has looked before rank 0 writes anything.
        distributed.barrier(world)
        if world.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if log.path.exists():
                log.path.unlink()
            config.save(run_dir / "config.json")
            write_tasks(run, run_dir / "tasks.json")
    if world.active:
        console.print(f"{world.size} processes, each on its share of every batch of "
                      f"{config.batch_size}")

    dataset = ShardDataset(run.data, "train")
    names = [t.name for t in run.tasks]
    last = config.epochs + 1
    if config.encoder_norm == "batch" and start == 1:
        # A departure from the paper's VGG16 that changes results: say so where it runs.
        console.print("note: the encoder has batch normalisation after each convolution (the "
                      f"{config.preset} preset's default; the paper's VGG16 has none: "
                      "--encoder-norm none)")
    if start <= last:
        console.print(header(names))
    with _InterruptFlag() as interrupt:
        for epoch in range(start, last + 1):
            began = time.perf_counter()
            on = len(names) if epoch == 1 else sum(run.scheduler.gates(epoch).values())

            def after_step(done: EpochProgress, epoch=epoch) -> None:
                every = config.checkpoint_every
                # Every process must stop at the same step, or the others wait forever.
                if distributed.any_rank(world, interrupt.requested, run.device):
                    if not world.active:
                        save_checkpoint(run, run_dir, epoch - 1, done)
                        raise TrainingInterrupted(
                            f"interrupted at epoch {epoch}, step {done.step}; the checkpoint "
                            f"is saved. Resume with: dst train --resume {run_dir}")
                    raise TrainingInterrupted(
                        f"interrupted at epoch {epoch}, step {done.step}; the last checkpoint "
                        f"is the end of epoch {epoch - 1}. Resume with: torchrun ... -m dstcli "
                        f"train --resume {run_dir}")
                if every and done.step % every == 0:
                    save_checkpoint(run, run_dir, epoch - 1, done)

            result = run_epoch(run, dataset, epoch, console, progress,
                               partial if epoch == start else None, after_step)
            if epoch == 1 and config.init_passes > 1:
                result.losses = initial_losses_over_inits(run, dataset, result, console)
            extra = run.scheduler.end_epoch(epoch, result.losses, result.metrics)
            seconds = time.perf_counter() - began
            phase = "measure" if epoch == 1 else "train"
            if world.main:
                # The log first: rows of an epoch whose checkpoint never landed are dropped on
                # resume.
                log.append([{"epoch": epoch, "phase": phase, "task": t,
                             "V": result.losses[t], "labelled": result.counts[t],
                             "seconds": round(seconds, 3),
                             "measured_on": "probe" if t in result.probed else "epoch",
                             "train_error": result.metrics.get(t, {}).get("error", ""),
                             **extra.get(t, {})} for t in names])
                save_checkpoint(run, run_dir, epoch)
            console.print(line(epoch, phase, seconds, result.losses, on, len(names)))
    if world.main:
        gpu = torch.cuda.get_device_name(run.device) if run.device.type == "cuda" else None
        described = machine(run.device.type, gpu, torch.get_num_threads(), world.size)
        write_json(run_dir / RUN_RECORD, {"finished_epoch": last, "machine": described})
    distributed.barrier(world)  # the files are whole before any process returns
