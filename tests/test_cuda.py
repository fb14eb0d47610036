"""The CUDA paths, run where a GPU is: `python -m pytest -q -m cuda` on a GPU machine.

Every test here skips without CUDA (and the two-GPU test without two GPUs), so the CPU suite
stays green; a GPU session runs them as one short check of what the CPU cannot show: training
and evaluation on the device, bf16 and fp16 with loss scaling, channels-last, torch.compile,
pinned memory with loader workers, and nccl across two GPUs.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers import tiny_config

from dstcli.evaluate import evaluate
from dstcli.train import load_checkpoint, train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

FACE_TASKS = {"gender", "spectacles", "landmarks", "pose", "denoising"}


def epoch_v(run_dir: Path, epoch: int) -> dict[str, float]:
    with open(run_dir / "epochs.csv", newline="") as f:
        return {r["task"]: float(r["V"]) for r in csv.DictReader(f) if int(r["epoch"]) == epoch}


def face_config(data: Path, out: Path, **overrides):
    values = dict(app="aflw", scheduler="dst", device="cuda", epochs=2, batch_size=16)
    return tiny_config(data, out, **{**values, **overrides})


@pytest.mark.parametrize("flags", [{}, {"amp": "bf16"}, {"amp": "fp16"},
                                   {"channels_last": True}, {"compile": True}, {"workers": 2}],
                         ids=["plain", "bf16", "fp16", "channels-last", "compile", "workers"])
def test_trains_and_evaluates_on_cuda(faces_tiny, tmp_path, flags):
    if flags.get("amp") == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    if flags.get("compile"):
        import torch._dynamo as dynamo

        if not dynamo.is_dynamo_supported():
            pytest.skip("torch.compile is not supported by this Python and torch")
    run_dir = train(face_config(faces_tiny, tmp_path / "run", **flags), progress=False)

    for epoch in (1, 2, 3):
        values = epoch_v(run_dir, epoch)
        assert set(values) == FACE_TASKS and all(math.isfinite(v) for v in values.values())
    state = load_checkpoint(run_dir)
    assert all(t.device.type == "cpu" for t in state["model"].values())  # loads anywhere
    if flags.get("amp") == "fp16":
        assert state["scaler"]["scale"] > 0
    metrics = evaluate(run_dir)
    assert set(metrics["tasks"]) == FACE_TASKS and math.isfinite(metrics["average_error"])


def test_cuda_measures_the_losses_the_cpu_measures(faces_tiny, tmp_path):
    # Epoch 1 trains nothing: the same initial weights give the same V[1] up to the device's
    # arithmetic (TF32 convolutions among it).
    cpu = train(face_config(faces_tiny, tmp_path / "cpu", device="cpu", epochs=1),
                progress=False)
    gpu = train(face_config(faces_tiny, tmp_path / "gpu", epochs=1), progress=False)
    a, b = epoch_v(cpu, 1), epoch_v(gpu, 1)
    assert a.keys() == b.keys()
    for task in a:
        assert b[task] == pytest.approx(a[task], rel=1e-2), task


def _worker(rank: int, world: int, port: int, config, out: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))

    def keep(run) -> None:
        torch.save({"model": {k: v.cpu() for k, v in run.model.state_dict().items()},
                    "gates": [run.scheduler.gates(e) for e in (2, 3)]},
                   Path(out) / f"rank{rank}.pt")

    train(config, progress=False, on_finish=keep)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_with_nccl_hold_the_same_weights(faces_tiny, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = face_config(faces_tiny, tmp_path / "two", epochs=1)
    mp.spawn(_worker, args=(2, port, config, str(tmp_path)), nprocs=2, join=True)

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for key, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][key]), key
    assert ranks[0]["gates"] == ranks[1]["gates"]
