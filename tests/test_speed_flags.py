"""The speed flags: refused with a message naming the flag where they cannot work, bf16
autocast on CPU, and loader workers that change nothing but the speed."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from helpers import tiny_config

from dstcli import train as train_module
from dstcli.errors import ConfigError
from dstcli.train import train


def epoch_v(run_dir: Path, epoch: int) -> dict[str, float]:
    with open(run_dir / "epochs.csv", newline="") as f:
        return {r["task"]: float(r["V"]) for r in csv.DictReader(f) if int(r["epoch"]) == epoch}


def test_fp16_is_refused_with_the_way_out(omniglot_tiny, tmp_path):
    with pytest.raises(ConfigError, match="--amp fp16.*--amp bf16"):
        tiny_config(omniglot_tiny, tmp_path / "run", amp="fp16")
    with pytest.raises(ConfigError, match="--amp 'fp8'"):
        tiny_config(omniglot_tiny, tmp_path / "run", amp="fp8")


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


def test_workers_change_nothing(omniglot_tiny, tmp_path):
    runs = [train(tiny_config(omniglot_tiny, tmp_path / f"w{n}", workers=n), progress=False)
            for n in (0, 2)]
    for epoch in (1, 2):
        assert epoch_v(runs[1], epoch) == epoch_v(runs[0], epoch)
