"""The speed flags: refused with a message naming the flag where they cannot work, bf16
autocast on CPU, and loader workers that change nothing but the speed."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from helpers import tiny_config

from dstcli import train as train_module
from dstcli.errors import ConfigError
from dstcli.train import load_checkpoint, train


def epoch_v(run_dir: Path, epoch: int) -> dict[str, float]:
    with open(run_dir / "epochs.csv", newline="") as f:
        return {r["task"]: float(r["V"]) for r in csv.DictReader(f) if int(r["epoch"]) == epoch}


def test_fp16_on_cpu_is_refused_with_the_way_out(omniglot_tiny, tmp_path):
    with pytest.raises(ConfigError, match="--amp fp16 needs a CUDA GPU.*--amp bf16"):
        train(tiny_config(omniglot_tiny, tmp_path / "run", amp="fp16"), progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="--amp 'fp8'"):
        tiny_config(omniglot_tiny, tmp_path / "run", amp="fp8")


@pytest.fixture
def fp16_here(monkeypatch):
    """CPU autocast has float16 kernels and GradScaler runs on CPU: enough to exercise the
    loss-scaling path that --amp fp16 takes on CUDA."""
    monkeypatch.setattr(train_module, "fp16_supported", lambda device: True)


@pytest.mark.parametrize("scheduler", ["gradnorm", "pcgrad"])
def test_fp16_refuses_methods_that_read_gradients(omniglot_tiny, tmp_path, fp16_here,
                                                  scheduler):
    with pytest.raises(ConfigError, match=f"--scheduler {scheduler} reads the gradients"):
        train(tiny_config(omniglot_tiny, tmp_path / "run", amp="fp16", scheduler=scheduler),
              progress=False)


@pytest.mark.parametrize("scheduler", ["mtl", "dst", "uw", "famo"])
def test_fp16_trains_with_loss_scaling_and_resumes(omniglot_tiny, tmp_path, fp16_here,
                                                   monkeypatch, scheduler):
    config = dict(amp="fp16", scheduler=scheduler, epochs=2, batch_size=16)
    whole = train(tiny_config(omniglot_tiny, tmp_path / "whole", **config), progress=False)
    state = load_checkpoint(whole)
    assert state["scaler"]["scale"] > 1  # the gradients were scaled, and the scale is kept
    for epoch in (1, 2, 3):
        values = epoch_v(whole, epoch)
        assert values and all(math.isfinite(v) for v in values.values())

    # Stopped after its second epoch and resumed: the scaler's state comes back with the rest.
    saved = train_module.save_checkpoint

    def save_then_stop(run, run_dir, epoch, *args):
        saved(run, run_dir, epoch, *args)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_stop)
    cut = tiny_config(omniglot_tiny, tmp_path / "cut", **config)
    with pytest.raises(KeyboardInterrupt):
        train(cut, progress=False)
    monkeypatch.setattr(train_module, "save_checkpoint", saved)
    train(cut, resume=True, progress=False)
    resumed = load_checkpoint(tmp_path / "cut")
    assert resumed["scaler"] == state["scaler"]
    assert all(torch.equal(state["model"][k], resumed["model"][k]) for k in state["model"])


def test_compile_without_a_compiler_is_refused(omniglot_tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "c_compiler", lambda: None)
    with pytest.raises(ConfigError, match="--compile on CPU needs a C\\+\\+ compiler"):
        train(tiny_config(omniglot_tiny, tmp_path / "run", compile=True), progress=False)
    assert not (tmp_path / "run").exists()


def test_bf16_trains_on_cpu(omniglot_tiny, tmp_path):
    run_dir = train(tiny_config(omniglot_tiny, tmp_path / "run", amp="bf16",
                                channels_last=True), progress=False)
    for epoch in (1, 2):
        values = epoch_v(run_dir, epoch)
        assert values and all(math.isfinite(v) for v in values.values())


def test_channels_last_on_cpu_measures_the_same_losses(omniglot_tiny, tmp_path):
    plain, nhwc = (train(tiny_config(omniglot_tiny, tmp_path / name, channels_last=flag),
                         progress=False) for name, flag in (("plain", False), ("nhwc", True)))
    # Epoch 1 is the forward-only pass: the same weights in another memory layout.
    a, b = epoch_v(plain, 1), epoch_v(nhwc, 1)
    assert a.keys() == b.keys()
    assert all(math.isclose(a[t], b[t], rel_tol=1e-4) for t in a)


def test_workers_change_nothing(omniglot_tiny, tmp_path):
    runs = [train(tiny_config(omniglot_tiny, tmp_path / f"w{n}", workers=n), progress=False)
            for n in (0, 2)]
    for epoch in (1, 2):
        assert epoch_v(runs[1], epoch) == epoch_v(runs[0], epoch)
