"""Training faults: kill -9 and resume, Ctrl-C, a full disk while checkpointing, a NaN or Inf
loss, gradient or weight (in one process and under torchrun).

The kill and the Ctrl-C go to real `python -m dstcli train` processes; the rest run in process
with one function monkeypatched to fail the way the disk or the numbers would.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers import tiny_config

import dstcli.train as trainer
from dstcli.errors import DstError
from dstcli.schedulers import SCHEDULERS
from dstcli.train import CHECKPOINT, load_checkpoint, train

# 192 training drawings in batches of 16: 12 steps an epoch, two epochs (measure, train).
RUN = dict(epochs=1, batch_size=16, checkpoint_every=2)


def dst(*args: str) -> list[str]:
    return [sys.executable, "-m", "dstcli", *args]


def train_args(data: Path, out: Path) -> list[str]:
    return dst("train", "--data", str(data), "--out", str(out), "--preset", "cpu-tiny",
               "--epochs", str(RUN["epochs"]), "--batch-size", str(RUN["batch_size"]),
               "--checkpoint-every", str(RUN["checkpoint_every"]), "--lr", "0.001",
               "--device", "cpu", "--seed", "0")


def epoch_values(run_dir: Path) -> list[tuple[str, str, str]]:
    with open(run_dir / "epochs.csv", newline="") as f:
        return [(r["epoch"], r["task"], r["V"]) for r in csv.DictReader(f)]


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until path exists; fails if the process ends first or the time runs out."""
    end = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"training ended (rc {process.returncode}) before {path} appeared: "
                        f"{process.stderr.read() if process.stderr else ''}")
        if time.monotonic() > end:
            process.kill()
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def reference(omniglot_tiny, tmp_path_factory) -> Path:
    """The run that is never stopped (in a process of its own, like the ones it is compared
    with, so that thread settings cannot differ)."""
    out = tmp_path_factory.mktemp("runs") / "whole"
    subprocess.run(train_args(omniglot_tiny, out), check=True, capture_output=True, timeout=120)
    return out


def test_kill_9_at_a_random_step_then_resume_gives_the_same_run(omniglot_tiny, reference,
                                                                tmp_path):
    out = tmp_path / "killed"
    process = subprocess.Popen(train_args(omniglot_tiny, out), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    wait_for(out / CHECKPOINT, process)
    # A random moment after the first mid-epoch checkpoint: possibly during a later write.
    time.sleep(random.Random().uniform(0.0, 0.4))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    if process.returncode != -signal.SIGKILL:
        pytest.skip("training finished before the kill landed (machine too fast)")

    resumed = subprocess.run(dst("train", "--resume", str(out)), capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr

    a, b = load_checkpoint(reference), load_checkpoint(out)
    assert a["epoch"] == b["epoch"] == RUN["epochs"] + 1
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert epoch_values(reference) == epoch_values(out)


def test_ctrl_c_saves_a_checkpoint_and_names_the_resume_command(omniglot_tiny, tmp_path):
    out = tmp_path / "interrupted"
    process = subprocess.Popen(train_args(omniglot_tiny, out), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    wait_for(out / CHECKPOINT, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert f"dst train --resume {out}" in " ".join(stderr.split())
    assert "Traceback" not in stderr
    assert load_checkpoint(out)["in_epoch"] is not None  # saved mid-epoch, at the signal


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(omniglot_tiny, tmp_path,
                                                                      monkeypatch):
    real_save = torch.save
    calls = []

    def half_then_enospc(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            return real_save(obj, path, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer)
        Path(path).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(trainer.torch, "save", half_then_enospc)
    # A checkpoint every step: the first lands, the second meets the full disk.
    config = tiny_config(omniglot_tiny, tmp_path / "run", epochs=1, batch_size=32,
                         checkpoint_every=1)
    with pytest.raises(DstError) as caught:
        train(config, progress=False)
    monkeypatch.setattr(trainer.torch, "save", real_save)

    message = " ".join(str(caught.value).split())
    assert "No space left on device" in message
    assert "intact" in message and f"dst train --resume {tmp_path / 'run'}" in message
    assert not (tmp_path / "run" / (CHECKPOINT + ".tmp")).exists()
    kept = load_checkpoint(tmp_path / "run")
    assert kept["epoch"] == 0 and kept["in_epoch"]["step"] == 1


BAD_VALUES = pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])


def track_steps(monkeypatch) -> dict[str, int]:
    """The epoch and step the trainer is in, kept current through each run's `step_gates`
    (called once at the start of every training step, never in the probe pass)."""
    where: dict[str, int] = {}
    real_build = trainer.build

    def build(config, world=None):
        run = real_build(config, world)
        real_gates = run.scheduler.step_gates

        def step_gates(epoch, step):
            where.update(epoch=epoch, step=step)
            return real_gates(epoch, step)

        run.scheduler.step_gates = step_gates
        return run

    monkeypatch.setattr(trainer, "build", build)
    return where


def named_step(message: str, step: int) -> bool:
    return re.search(rf"\bstep {step}\b", message) is not None


def only_alpha_trains(data: Path, out: Path, dropped_loss: str = "forward", **overrides):
    """random at p = 0: the all-dropped rule trains Alpha alone; Beta and Gamma are dropped
    (measured under no_grad in the steps, or with probe only on the probe subset after)."""
    options = SCHEDULERS.get("random").options.parse({"p": "0", "dropped_loss": dropped_loss})
    return tiny_config(data, out, scheduler="random", scheduler_options=options, epochs=1,
                       batch_size=16, **overrides)


@BAD_VALUES
@pytest.mark.parametrize("dropped_loss", ["forward", "probe"])
def test_a_non_finite_loss_names_task_epoch_and_step_and_keeps_the_last_checkpoint(
        omniglot_tiny, tmp_path, monkeypatch, bad, dropped_loss):
    where = track_steps(monkeypatch)
    real_loss = trainer.per_sample_loss
    poisoned: list[int] = []

    def bad_from_step_5_of_epoch_2(task, output, target):
        loss = real_loss(task, output, target)
        if task.name == "Alpha" and where.get("epoch") == 2 and where["step"] >= 5:
            poisoned.append(where["step"])
            return loss + bad
        return loss

    monkeypatch.setattr(trainer, "per_sample_loss", bad_from_step_5_of_epoch_2)
    config = only_alpha_trains(omniglot_tiny, tmp_path / "run", dropped_loss)
    with pytest.raises(trainer.NonFiniteLoss) as caught:
        train(config, progress=False)

    message = " ".join(str(caught.value).split())
    assert f"task Alpha became {bad}" in message and "epoch 2" in message
    assert named_step(message, poisoned[0]), (poisoned[0], message)
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1


@BAD_VALUES
def test_a_non_finite_probe_loss_stops_the_run_naming_the_probe_pass(
        omniglot_tiny, tmp_path, monkeypatch, bad):
    # Beta is dropped in epoch 2 and, with probe, measured only in the probe pass after it:
    # its V must not reach the scheduler as a "missing" loss.
    real_loss, real_probe = trainer.per_sample_loss, trainer.probe_losses
    probing: list[bool] = []

    def probe(*args, **kwargs):
        probing.append(True)
        try:
            return real_probe(*args, **kwargs)
        finally:
            probing.pop()

    def bad_in_the_probe_pass(task, output, target):
        loss = real_loss(task, output, target)
        return loss + bad if task.name == "Beta" and probing else loss

    monkeypatch.setattr(trainer, "probe_losses", probe)
    monkeypatch.setattr(trainer, "per_sample_loss", bad_in_the_probe_pass)
    with pytest.raises(trainer.NonFiniteLoss) as caught:
        train(only_alpha_trains(omniglot_tiny, tmp_path / "run", "probe"), progress=False)

    message = " ".join(str(caught.value).split())
    assert f"task Beta became {bad}" in message and "epoch 2" in message
    assert "probe pass" in message
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1


class PoisonGradient(torch.autograd.Function):
    """The identity forward (the loss stays finite); the backward turns the gradient `bad`."""

    @staticmethod
    def forward(ctx, x, bad):
        ctx.bad = bad
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, ctx.bad), None


@BAD_VALUES
def test_a_non_finite_gradient_stops_the_run_before_the_weights_change(
        omniglot_tiny, tmp_path, monkeypatch, bad):
    where = track_steps(monkeypatch)
    real_loss = trainer.per_sample_loss
    poisoned: list[int] = []

    def finite_loss_bad_gradient(task, output, target):
        loss = real_loss(task, output, target)
        if (task.name == "Alpha" and torch.is_grad_enabled() and where.get("epoch") == 2
                and where["step"] >= 5):
            poisoned.append(where["step"])
            return PoisonGradient.apply(loss, bad)
        return loss

    monkeypatch.setattr(trainer, "per_sample_loss", finite_loss_bad_gradient)
    # A checkpoint after every step: the one after the bad step must not be written.
    config = tiny_config(omniglot_tiny, tmp_path / "run", epochs=1, batch_size=16,
                         checkpoint_every=1)
    with pytest.raises(trainer.NonFiniteGradient) as caught:
        train(config, progress=False)

    message = " ".join(str(caught.value).split())
    assert "gradient" in message and "epoch 2" in message
    assert named_step(message, poisoned[0]), (poisoned[0], message)
    kept = load_checkpoint(tmp_path / "run")
    assert (kept["epoch"], kept["in_epoch"]["step"]) == (1, poisoned[0])
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_a_checkpoint_with_non_finite_weights_is_never_written(omniglot_tiny, tmp_path):
    run = trainer.build(tiny_config(omniglot_tiny, tmp_path / "run"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trainer.save_checkpoint(run, run_dir, 1)
    with torch.no_grad():
        next(run.model.parameters()).view(-1)[0] = math.inf

    with pytest.raises(trainer.NonFiniteWeights) as caught:
        trainer.save_checkpoint(run, run_dir, 2)

    assert "epoch 2" in str(caught.value) and "kept" in str(caught.value)
    assert load_checkpoint(run_dir)["epoch"] == 1
    assert not (run_dir / trainer.PREVIOUS_CHECKPOINT).exists()  # the good one stays current


def _torchrun_worker(rank: int, port: int, config, out: str, poisoned_task: str) -> None:
    """One of two gloo processes; `poisoned_task`'s loss turns NaN from step 3 of epoch 2 on.
    Writes the error it stopped with and the first step it poisoned."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        where = track_steps(patch)
        real_loss = trainer.per_sample_loss
        poisoned: list[int] = []

        def nan_from_step_3(task, output, target):
            loss = real_loss(task, output, target)
            if task.name == poisoned_task and where.get("epoch") == 2 and where["step"] >= 3:
                poisoned.append(where["step"])
                return loss * math.nan
            return loss

        patch.setattr(trainer, "per_sample_loss", nan_from_step_3)
        try:
            train(config, progress=False)
            message = "finished"
        except trainer.NonFinite as e:
            message = f"{type(e).__name__}: {' '.join(str(e).split())}"
    result = {"message": message, "first": poisoned[0] if poisoned else None}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))


@pytest.mark.parametrize("poisoned_task", ["Alpha", "Beta"], ids=["trained", "dropped"])
def test_under_torchrun_a_non_finite_loss_names_the_step_only_when_it_is_known(
        omniglot_tiny, tmp_path, poisoned_task):
    # Alpha trains: its NaN reaches the averaged gradients, checked at every step on every
    # process, so the step is known. Beta is dropped (no_grad): only the epoch's summed losses
    # show it, at the epoch's end.
    config = only_alpha_trains(omniglot_tiny, tmp_path / "run", encoder_norm="none")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_torchrun_worker, args=(port, config, str(tmp_path), poisoned_task), nprocs=2,
             join=True)

    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    messages = {r["message"] for r in results}
    assert len(messages) == 1, messages  # every process stops, with the same error
    message = messages.pop()
    assert message.startswith("NonFiniteLoss: "), message
    assert f"task {poisoned_task} became nan" in message and "epoch 2" in message
    if poisoned_task == "Alpha":
        first = min(r["first"] for r in results if r["first"] is not None)
        assert named_step(message, first), (first, message)
    else:
        assert "the step is not known under torchrun" in message
        assert not re.search(r"\bstep \d", message)
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1
