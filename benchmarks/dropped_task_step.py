"""Step time with the denoising task dropped, relative to every task on (issue 7, point 4).

    python benchmarks/dropped_task_step.py --faces 2048 --pairs 30

The face network at the `cpu` preset on synthetic AFLW (prepared into benchmarks/work unless
--data names a prepared folder). One training pass alternates the gates step by step: in each
pair of adjacent steps one has every task on and one has the denoising task dropped, in turns
which comes first, so a drift in the machine's speed hits both alike. The trainer's own
run_epoch takes the steps. Printed: the median over pairs of dropped / all-on, with the
dropped loss measured in the same forward (`forward`, the default) and with the dropped task
not computed at all (`--dropped-loss probe`). Target: <= 0.7, probe lower.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import prepared_faces  # scripts run from benchmarks/, so it is importable


def pair_ratios(data: Path, pairs: int, batch: int, dropped_loss: str) -> list[float]:
    from rich.console import Console

    from dstcli.config import TrainConfig
    from dstcli.data.shards import ShardDataset
    from dstcli.schedulers.base import Scheduler
    from dstcli.train import build, run_epoch

    config = TrainConfig(app="aflw", data=str(data), out="/tmp/unused", scheduler="mtl",
                         preset="cpu", epochs=1, batch_size=batch, lr=1e-4,
                         device="cpu").resolved()
    run = build(config)
    names = [t.name for t in run.tasks]
    (denoise,) = [t.name for t in run.tasks if t.kind == "denoise"]

    class Alternating(Scheduler):
        def step_gates(self, epoch: int, step: int) -> dict[str, bool]:
            first = step % 2 == 0
            drop = first if (step // 2) % 2 else not first
            return {t: not (drop and t == denoise) for t in names}

    scheduler = Alternating(run.scheduler.options, run.scheduler.tasks, config.seed)
    scheduler.dropped_loss = dropped_loss
    run.scheduler = scheduler
    dataset = ShardDataset(run.data, "train")
    warm = 2  # pairs
    steps = 2 * (pairs + warm)
    if len(dataset) < steps * batch:
        raise SystemExit(f"{len(dataset)} training faces give fewer than {steps} batches of "
                         f"{batch}; prepare more (--faces) or ask for fewer --pairs")

    class Head:
        """The first `steps` batches' worth of samples."""

        def __init__(self):
            self.data = dataset.data

        def __len__(self):
            return steps * batch

        def __getitems__(self, indices):
            return dataset.__getitems__(indices)

    stamps = [time.perf_counter()]
    run_epoch(run, Head(), 2, Console(quiet=True), progress=False,
              on_step=lambda _: stamps.append(time.perf_counter()))
    seconds = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    ratios = []
    for p in range(warm, pairs + warm):
        a, b = seconds[2 * p], seconds[2 * p + 1]
        on, off = (a, b) if p % 2 == 0 else (b, a)  # first dropped in odd pairs
        ratios.append(off / on)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=2048, help="synthetic faces to prepare")
    parser.add_argument("--data", type=Path, help="a prepared AFLW folder at the cpu preset")
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import torch

    data = prepared_faces(args.faces, args.data)
    print(f"data {data}, {args.pairs} pairs of steps, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    for mode in ("forward", "probe"):
        ratios = pair_ratios(data, args.pairs, args.batch_size, mode)
        print(f"dropped-loss {mode:<8} median step ratio dropped/all-on "
              f"{statistics.median(ratios):.3f}  (pairs {len(ratios)}, "
              f"min {min(ratios):.3f}, max {max(ratios):.3f}; target <= 0.7)")


if __name__ == "__main__":
    main()
