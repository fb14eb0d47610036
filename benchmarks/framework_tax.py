"""`dst train --scheduler mtl` against a bare PyTorch loop on the same model, batches and data.

    python benchmarks/framework_tax.py --faces 512 --rounds 5

The face network at the `cpu` preset on synthetic AFLW (prepared into benchmarks/work unless
--data names a prepared folder). Each round times one training pass of the trainer's run_epoch
(mtl: every task on, equal weights) and one pass of a plain loop (read the batch, forward,
mean loss per task, sum, backward, Adam step) over the same batches, in turns. Printed: the
median over rounds of trainer / bare. Target: within 5% (<= 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import prepared_faces  # scripts run from benchmarks/, so it is importable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1024, help="synthetic faces to prepare")
    parser.add_argument("--data", type=Path, help="a prepared AFLW folder at the cpu preset")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import torch
    from rich.console import Console

    from dstcli.config import TrainConfig
    from dstcli.data.shards import ShardDataset
    from dstcli.models.multitask import TaskRequest
    from dstcli.tasks import per_sample_loss
    from dstcli.train import build, epoch_batches, run_epoch

    data = prepared_faces(args.faces, args.data)
    config = TrainConfig(app="aflw", data=str(data), out="/tmp/unused", scheduler="mtl",
                         preset="cpu", epochs=1, batch_size=args.batch_size, lr=1e-4,
                         device="cpu").resolved()
    run = build(config)
    dataset = ShardDataset(run.data, "train")
    tasks = {t.name: t for t in run.tasks}
    model, optimizer = run.model, run.optimizer

    def bare(epoch: int) -> None:
        model.train()
        for indices in epoch_batches(len(dataset), config.batch_size, config.seed, epoch):
            batch = dataset.__getitems__(indices)
            requests, targets = {}, {}
            for name in tasks:
                rows = torch.nonzero(batch["Z"][name]).squeeze(1)
                if rows.numel():
                    requests[name] = TaskRequest(rows, True)
                    targets[name] = batch["labels"][name][rows]
            outputs = model(batch["images"], requests)
            loss = sum(per_sample_loss(tasks[t], o, targets[t]).mean()
                       for t, o in outputs.items())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def trainer(epoch: int) -> None:
        run_epoch(run, dataset, epoch, Console(quiet=True), progress=False)

    print(f"data {data}: {len(dataset)} training faces, batch {config.batch_size}, "
          f"{torch.get_num_threads()} threads")
    bare(2)  # warm-up (allocator, first-call costs)
    ratios = []
    for r in range(args.rounds):
        epoch = 3 + r  # the same batches for both in a round
        seconds = {}
        for name, fn in ((("dst", trainer), ("bare", bare)) if r % 2 == 0
                         else (("bare", bare), ("dst", trainer))):
            began = time.perf_counter()
            fn(epoch)
            seconds[name] = time.perf_counter() - began
        ratios.append(seconds["dst"] / seconds["bare"])
        print(f"round {r + 1}: dst {seconds['dst']:.2f} s, bare {seconds['bare']:.2f} s")
    print(f"framework tax: median dst/bare {statistics.median(ratios):.3f} over {len(ratios)} "
          "rounds (target <= 1.05)")


if __name__ == "__main__":
    main()
