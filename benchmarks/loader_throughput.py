"""Samples per second of the data loader alone against the `cpu` preset's training.

    python benchmarks/loader_throughput.py --faces 1024 --workers 2

Synthetic AFLW at the `cpu` preset (prepared into benchmarks/work unless --data names a
prepared folder). Side by side in one run: one epoch read by the trainer's loader (`iterate`,
with --workers processes, each opening the HDF5 files itself) and one training epoch of
`mtl` (every task on) with the same loader. Printed: loader samples/s / training samples/s.
Target: at least 5.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import prepared_faces  # scripts run from benchmarks/, so it is importable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1024, help="synthetic faces to prepare")
    parser.add_argument("--data", type=Path, help="a prepared AFLW folder at the cpu preset")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from rich.console import Console

    from dstcli.config import TrainConfig
    from dstcli.data.shards import ShardDataset
    from dstcli.train import build, epoch_batches, iterate, run_epoch

    data = prepared_faces(args.faces, args.data)
    config = TrainConfig(app="aflw", data=str(data), out="/tmp/unused", scheduler="mtl",
                         preset="cpu", epochs=1, batch_size=args.batch_size, lr=1e-4,
                         device="cpu", workers=args.workers).resolved()
    run = build(config)
    dataset = ShardDataset(run.data, "train")
    n = len(dataset)

    began = time.perf_counter()
    seen = 0
    for batch in iterate(dataset, epoch_batches(n, config.batch_size, config.seed, 2),
                         config.workers, pin=False):
        seen += int(batch["images"].shape[0])
    loader = seen / (time.perf_counter() - began)

    began = time.perf_counter()
    run_epoch(run, dataset, 2, Console(quiet=True), progress=False)
    training = n / (time.perf_counter() - began)
    print(f"{n} faces, batch {config.batch_size}, {config.workers} workers: loader "
          f"{loader:.0f} samples/s, training {training:.1f} samples/s")
    print(f"loader / training throughput: {loader / training:.1f} (target >= 5)")


if __name__ == "__main__":
    main()
