"""Data parallel training with two gloo processes on CPU (torchrun's environment, by hand)."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers import tiny_config

from dstcli.errors import ConfigError
from dstcli.train import train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, config, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)

    def keep(run) -> None:
        torch.save({"model": run.model.state_dict(),
                    "gates": [run.scheduler.gates(e) for e in (2, 3)]},
                   Path(out) / f"rank{rank}.pt")

    train(config, progress=False, on_finish=keep)


def epoch_v(run_dir: Path, epoch: int) -> dict[str, float]:
    with open(run_dir / "epochs.csv", newline="") as f:
        return {r["task"]: float(r["V"]) for r in csv.DictReader(f) if int(r["epoch"]) == epoch}


def test_two_processes_agree_with_one(omniglot_tiny, tmp_path):
    # No batch norm: with it each process normalises by its own share's statistics, so only
    # the plain network's V[1] can equal the one-process V[1] exactly.
    options = dict(epochs=1, scheduler="dst", batch_size=16, encoder_norm="none")
    config = tiny_config(omniglot_tiny, tmp_path / "two", **options)
    mp.spawn(_worker, args=(2, _free_port(), config, str(tmp_path)), nprocs=2, join=True)

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for key, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][key]), key
    assert ranks[0]["gates"] == ranks[1]["gates"]
    assert not (tmp_path / "two" / "rank1").exists()
    assert (tmp_path / "two" / "run.json").exists()

    single = train(tiny_config(omniglot_tiny, tmp_path / "one", **options), progress=False)
    one, two = epoch_v(single, 1), epoch_v(tmp_path / "two", 1)
    assert set(one) == set(two)
    for task in one:
        assert two[task] == pytest.approx(one[task], rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("scheduler, reason", [
    ("pcgrad", "gradient surgery"), ("famo", "logits would drift apart"),
    ("dtp", "average only its share's KPIs")])
def test_methods_that_need_the_whole_batch_refuse_several_processes(
        omniglot_tiny, tmp_path, monkeypatch, scheduler, reason):
    # The check runs before the process group is joined, so no second process is needed.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match=f"--scheduler {scheduler} .*{reason}.*one process"):
        train(tiny_config(omniglot_tiny, tmp_path / "run", scheduler=scheduler),
              progress=False)
    assert not (tmp_path / "run").exists()


def test_two_processes_take_the_one_process_step(omniglot_tiny, tmp_path):
    # Each Omniglot sample is labelled for one alphabet only, so a batch's share on one process
    # can hold a task's only labelled sample: the task's loss must still be the mean over the
    # whole batch's labelled rows, or the update differs from one process's.
    options = dict(epochs=1, scheduler="mtl", batch_size=16, encoder_norm="none")
    config = tiny_config(omniglot_tiny, tmp_path / "two", **options)
    mp.spawn(_worker, args=(2, _free_port(), config, str(tmp_path)), nprocs=2, join=True)
    two = torch.load(tmp_path / "rank0.pt", weights_only=False)["model"]

    single = train(tiny_config(omniglot_tiny, tmp_path / "one", **options), progress=False)
    one = torch.load(single / "checkpoint.pt", weights_only=False)["model"]
    for key, value in one.items():
        if value.is_floating_point():
            # Adam moves a weight by about lr = 1e-3 a step; summation order moves it by far
            # less, a different loss normalisation by a sizeable part of a step.
            torch.testing.assert_close(two[key], value, rtol=0, atol=5e-5, msg=key)
