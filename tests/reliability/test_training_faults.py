"""Training faults: kill -9 and resume, Ctrl-C, a full disk while checkpointing, a NaN loss.

The kill and the Ctrl-C go to real `python -m dstcli train` processes; the rest run in process
with one function monkeypatched to fail the way the disk or the numbers would.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import tiny_config

import dstcli.train as trainer
from dstcli.errors import DstError
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


def test_a_nan_loss_names_task_epoch_and_step_and_keeps_the_last_checkpoint(
        omniglot_tiny, tmp_path, monkeypatch):
    real_loss = trainer.per_sample_loss
    steps = {"n": 0}

    def nan_in_epoch_2(task, output, target):
        loss = real_loss(task, output, target)
        if task.name == "Beta" and torch.is_grad_enabled():
            steps["n"] += 1
            if steps["n"] > 3:  # epoch 1 only measures, without grad: this is epoch 2
                return loss * float("nan")
        return loss

    monkeypatch.setattr(trainer, "per_sample_loss", nan_in_epoch_2)
    config = tiny_config(omniglot_tiny, tmp_path / "run", epochs=1, batch_size=16)
    with pytest.raises(trainer.NonFiniteLoss) as caught:
        train(config, progress=False)

    message = str(caught.value)
    assert "task Beta" in message and "epoch 2" in message and "step" in message
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1
